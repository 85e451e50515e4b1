//! CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup, DeleteTargetGroup and a
//! group's attributes: its health check, its defaults and bounds, what of it applies here.

use super::*;

/// Health-check members from `p` over `base` (CreateTargetGroup's defaults or the
/// group's current settings), checked against ELB's bounds.
pub(super) fn health_check(
    p: &Params,
    protocol: &str,
    base: &HealthCheck,
) -> ElbResult<HealthCheck> {
    let hc_protocol = p
        .str("HealthCheckProtocol")
        .unwrap_or(&base.protocol)
        .to_string();
    match (protocol, hc_protocol.as_str()) {
        (_, "HTTP") | ("TCP", "TCP") => {}
        ("HTTP", "TCP") => {
            return Err(validation(
                "Health check protocol 'TCP' is not supported for target groups with the protocol 'HTTP'",
            ));
        }
        (_, "HTTPS") => {
            return Err(ElbError::InvalidConfigurationRequest(
                "HTTPS health checks are not served by minifargate (no TLS to targets); use HTTP"
                    .into(),
            ));
        }
        (_, other) => {
            return Err(validation(format!(
                "Health check protocol '{other}' is not supported"
            )));
        }
    }
    let http = hc_protocol == "HTTP";
    let port = p.str("HealthCheckPort").unwrap_or(&base.port).to_string();
    if port != "traffic-port" && !port.parse::<u16>().is_ok_and(|n| n >= 1) {
        return Err(validation(format!(
            "Health check port '{port}' must be 'traffic-port' or a port number from 1 to 65535"
        )));
    }
    if let Some(false) = p.bool("HealthCheckEnabled")? {
        return Err(ElbError::InvalidConfigurationRequest(
            "Health checks cannot be disabled for target groups with target type 'instance' or 'ip'".into(),
        ));
    }
    let interval = p
        .int("HealthCheckIntervalSeconds", 5, 300)?
        .unwrap_or(base.interval);
    let timeout = p
        .int("HealthCheckTimeoutSeconds", 2, 120)?
        .unwrap_or(base.timeout);
    if timeout >= interval {
        return Err(validation(
            "Health check timeout must be smaller than the interval",
        ));
    }
    let healthy = p
        .int("HealthyThresholdCount", 2, 10)?
        .unwrap_or(base.healthy);
    let unhealthy = p
        .int("UnhealthyThresholdCount", 2, 10)?
        .unwrap_or(base.unhealthy);
    let path = match p.str("HealthCheckPath") {
        Some(_) if !http => {
            return Err(validation(
                "A health check path cannot be set for TCP health checks",
            ));
        }
        Some(path) if !path.starts_with('/') || path.len() > 1024 => {
            return Err(validation(format!(
                "Health check path '{path}' must begin with '/' and be at most 1024 characters"
            )));
        }
        Some(path) => Some(path.to_string()),
        None if http => Some(base.path.clone().unwrap_or_else(|| "/".into())),
        None => None,
    };
    // ALB: 200-499, default 200; an HTTP check of a TCP group (NLB): 200-599, default 200-399.
    let (max, default) = if protocol == "HTTP" {
        (499, "200")
    } else {
        (599, "200-399")
    };
    let matcher = match p.sub("Matcher").str("HttpCode") {
        Some(_) if !http => {
            return Err(validation("A matcher cannot be set for TCP health checks"));
        }
        Some(code) => {
            check_codes(code, max)?;
            Some(code.to_string())
        }
        None if http => Some(base.matcher.clone().unwrap_or_else(|| default.into())),
        None => None,
    };
    if p.sub("Matcher").str("GrpcCode").is_some() {
        return Err(validation(
            "A gRPC matcher is only valid for target groups with protocol version GRPC",
        ));
    }
    Ok(HealthCheck {
        protocol: hc_protocol,
        port,
        enabled: true,
        path,
        interval,
        timeout,
        healthy,
        unhealthy,
        matcher,
    })
}

/// A matcher's codes: `200`, `200,202`, `200-299`, each within 200..=max.
pub fn check_codes(codes: &str, max: u16) -> ElbResult<()> {
    let bad = || {
        validation(format!(
            "Health check matcher HTTP code '{codes}' must be codes or ranges of codes from 200 to {max} (for example 200,202 or 200-299)"
        ))
    };
    for part in codes.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo < 200 || hi > max || lo > hi {
            return Err(bad());
        }
    }
    Ok(())
}

/// Whether HTTP status `code` is one of a matcher's codes.
pub fn code_matches(codes: &str, code: u16) -> bool {
    codes.split(',').any(|part| {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        matches!((lo.trim().parse::<u16>(), hi.trim().parse::<u16>()), (Ok(lo), Ok(hi)) if lo <= code && code <= hi)
    })
}

/// Target group attributes ModifyTargetGroupAttributes stores and returns and nothing here
/// reads (by key prefix): the values that say what happens here anyway, and the reason
/// serve's log gives when another is set (Terraform sends every attribute with its
/// default: a value that asks for nothing is not worth a line); the docs' table
/// (docs/load-balancing.md, "Target group attributes") says the same.
pub const NOT_APPLIED: &[(&str, &[&str], &str)] = &[
    (
        "preserve_client_ip.enabled",
        &["false"],
        "a TCP listener's connections to its targets are serve's own, so a target sees \
         serve's address, never the client's (`proxy_protocol_v2.enabled` tells it the \
         client's)",
    ),
    (
        "target_group_health.dns_failover.",
        &["1", "off"],
        "a load balancer's name resolves to its one address on the box: there is no zone \
         to fail over from",
    ),
    (
        "target_health_state.unhealthy.draining_interval_seconds",
        &["0"],
        "a TCP connection to a target that turns unhealthy is cut at once (connection \
         termination on) or lasts until either side closes it (off): no unhealthy.draining \
         state is waited in",
    ),
];

/// The attributes of a new group of `protocol` and `target_type`, with ELB's defaults (API
/// TargetGroupAttribute).
pub(super) fn default_attributes(
    protocol: &str,
    target_type: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut a: Vec<(&str, &str)> = vec![
        ("deregistration_delay.timeout_seconds", "300"),
        ("stickiness.enabled", "false"),
        (
            "load_balancing.cross_zone.enabled",
            "use_load_balancer_configuration",
        ),
        (
            "target_group_health.dns_failover.minimum_healthy_targets.count",
            "1",
        ),
        (
            "target_group_health.dns_failover.minimum_healthy_targets.percentage",
            "off",
        ),
        (
            "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
            "1",
        ),
        (
            "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
            "off",
        ),
    ];
    if protocol == "HTTP" {
        a.extend([
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "86400"),
            ("stickiness.app_cookie.cookie_name", ""),
            ("stickiness.app_cookie.duration_seconds", "86400"),
            ("slow_start.duration_seconds", "0"),
            ("load_balancing.algorithm.type", "round_robin"),
            ("load_balancing.algorithm.anomaly_mitigation", "off"),
        ]);
    } else {
        a.extend([
            ("stickiness.type", "source_ip"),
            (
                "deregistration_delay.connection_termination.enabled",
                "false",
            ),
            // Ref: NLB User Guide, "Edit target group attributes", Client IP preservation:
            // enabled for instance groups, disabled for TCP and TLS ip groups. Stored and
            // returned, not applied: the target sees serve's address either way
            // (docs/load-balancing.md; `NOT_APPLIED`).
            (
                "preserve_client_ip.enabled",
                if target_type == "instance" {
                    "true"
                } else {
                    "false"
                },
            ),
            ("proxy_protocol_v2.enabled", "false"),
            (
                "target_health_state.unhealthy.connection_termination.enabled",
                "true",
            ),
            (
                "target_health_state.unhealthy.draining_interval_seconds",
                "0",
            ),
        ]);
    }
    a.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn create_target_group(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
    let name = p.required("Name")?;
    check_name("Target group", name)?;
    let target_type = p.str("TargetType").unwrap_or("instance");
    match target_type {
        "instance" | "ip" => {}
        "lambda" | "alb" => {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Target type '{target_type}' is not served by minifargate: it serves 'instance' and 'ip'"
            )));
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'targetType' failed to satisfy constraint: Member must satisfy enum value set: [instance, ip, lambda, alb]"
            )));
        }
    }
    let protocol = p
        .str("Protocol")
        .ok_or_else(|| validation("A protocol must be specified"))?;
    match protocol {
        "HTTP" | "TCP" => {}
        "HTTPS" | "TLS" | "UDP" | "TCP_UDP" | "GENEVE" | "QUIC" | "TCP_QUIC" => {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Target group protocol '{protocol}' is not served by minifargate: it serves HTTP and TCP"
            )));
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'protocol' failed to satisfy constraint: Member must satisfy enum value set: [HTTP, HTTPS, TCP, TLS, UDP, TCP_UDP, GENEVE, QUIC, TCP_QUIC]"
            )));
        }
    }
    let port = p
        .int("Port", 1, 65535)?
        .ok_or_else(|| validation("A port must be specified"))? as u16;
    let vpc_id = p
        .str("VpcId")
        .ok_or_else(|| validation("A VPC ID must be specified"))?;
    let protocol_version = match p.str("ProtocolVersion") {
        Some(_) if protocol != "HTTP" => {
            return Err(validation(
                "A protocol version can only be specified for HTTP and HTTPS target groups",
            ));
        }
        Some("HTTP1") | None if protocol == "HTTP" => Some("HTTP1".to_string()),
        Some(v @ ("HTTP2" | "GRPC")) => {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Protocol version '{v}' is not served by minifargate: targets are sent HTTP/1.1 (HTTP1)"
            )));
        }
        Some(v) if protocol == "HTTP" => {
            return Err(validation(format!(
                "Protocol version '{v}' is not valid: it must be HTTP1, HTTP2 or GRPC"
            )));
        }
        _ => None,
    };
    let ip_address_type = p.str("IpAddressType").unwrap_or("ipv4");
    if ip_address_type != "ipv4" {
        return Err(ElbError::InvalidConfigurationRequest(format!(
            "IP address type '{ip_address_type}' is not served by minifargate: task addresses are IPv4"
        )));
    }
    // API_CreateTargetGroup's defaults: HTTP groups check HTTP, TCP groups TCP; every
    // protocol here: interval 30, healthy 5, unhealthy 2; timeout 6 for HTTP, 10 for TCP.
    let base = HealthCheck {
        protocol: if protocol == "HTTP" { "HTTP" } else { "TCP" }.to_string(),
        port: "traffic-port".into(),
        enabled: true,
        path: None,
        interval: 30,
        timeout: if protocol == "HTTP" { 6 } else { 10 },
        healthy: 5,
        unhealthy: 2,
        matcher: None,
    };
    let health = health_check(p, protocol, &base)?;
    let tags = tags(p)?;
    if let Some(g) = s.groups.values().find(|g| g.name == name) {
        // ELB answers the existing group when every setting is the same.
        if g.protocol == protocol && g.port == port && g.vpc_id == vpc_id && g.health == health {
            let mut x = Xml::new();
            let lbs = s.lbs_of_group(&g.arn);
            x.list("TargetGroups", std::slice::from_ref(g), |x, g| {
                g.write(x, &lbs)
            });
            return Ok(x);
        }
        return Err(ElbError::DuplicateTargetGroupName(
            "A target group with the same name exists, but with different settings".into(),
        ));
    }
    let arn = format!(
        "arn:aws:elasticloadbalancing:{}:{}:targetgroup/{name}/{}",
        elb.aws.region,
        elb.aws.account_id,
        random_hex(8)
    );
    let g = TargetGroup {
        arn: arn.clone(),
        name: name.to_string(),
        protocol: protocol.to_string(),
        port,
        vpc_id: vpc_id.to_string(),
        target_type: target_type.to_string(),
        protocol_version,
        ip_address_type: ip_address_type.to_string(),
        health,
        attributes: default_attributes(protocol, target_type),
        targets: Vec::new(),
        tags,
        registrations: Default::default(),
        registered: 0,
    };
    s.save_group(&g)?;
    let mut x = Xml::new();
    x.list("TargetGroups", std::slice::from_ref(&g), |x, g| {
        g.write(x, &[])
    });
    s.groups.insert(arn, g);
    Ok(x)
}

pub(super) fn describe_target_groups(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("TargetGroupArns");
    let names = p.list("Names");
    let lb = p.str("LoadBalancerArn");
    if [!arns.is_empty(), !names.is_empty(), lb.is_some()]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        return Err(validation(
            "Only one of load balancer ARN, target group ARNs or names can be specified",
        ));
    }
    let found: Vec<TargetGroup> = if !arns.is_empty() {
        for a in &arns {
            arn_form(a, ArnKind::TargetGroup)?;
        }
        if arns.iter().any(|a| !s.groups.contains_key(a)) {
            return Err(ElbError::TargetGroupNotFound(
                "One or more target groups not found".into(),
            ));
        }
        arns.iter().map(|a| s.groups[a].clone()).collect()
    } else if !names.is_empty() {
        if names
            .iter()
            .any(|n| !s.groups.values().any(|g| &g.name == n))
        {
            return Err(ElbError::TargetGroupNotFound(
                "One or more target groups not found".into(),
            ));
        }
        s.groups
            .values()
            .filter(|g| names.contains(&g.name))
            .cloned()
            .collect()
    } else if let Some(lb) = lb {
        arn_form(lb, ArnKind::LoadBalancer)?;
        if !s.lbs.contains_key(lb) {
            return Err(ElbError::LoadBalancerNotFound(format!(
                "Load balancer '{lb}' not found"
            )));
        }
        s.groups
            .values()
            .filter(|g| s.lbs_of_group(&g.arn).iter().any(|l| l == lb))
            .cloned()
            .collect()
    } else {
        s.groups.values().cloned().collect()
    };
    let (items, next) = page(found, p)?;
    let mut x = Xml::new();
    x.list("TargetGroups", &items, |x, g| {
        g.write(x, &s.lbs_of_group(&g.arn))
    })
    .opt("NextMarker", next);
    Ok(x)
}

pub(super) fn modify_target_group(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("TargetGroupArn")?;
    let mut g = group(s, arn)?.clone();
    g.health = health_check(p, &g.protocol, &g.health)?;
    s.save_group(&g)?;
    let mut x = Xml::new();
    let lbs = s.lbs_of_group(&g.arn);
    x.list("TargetGroups", std::slice::from_ref(&g), |x, g| {
        g.write(x, &lbs)
    });
    s.groups.insert(g.arn.clone(), g);
    Ok(x)
}

pub(super) fn delete_target_group(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("TargetGroupArn")?.to_string();
    if !s.lbs_of_group(&arn).is_empty() {
        return Err(ElbError::ResourceInUse(format!(
            "Target group '{arn}' is currently in use by a listener or a rule"
        )));
    }
    if s.groups.contains_key(&arn) {
        s.delete(&arn)?;
        s.groups.remove(&arn);
        s.refresh_health();
    }
    Ok(Xml::new())
}

pub(super) fn describe_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let g = group(s, p.required("TargetGroupArn")?)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &g.attributes);
    Ok(x)
}

pub(super) fn modify_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut g = group(s, p.required("TargetGroupArn")?)?.clone();
    let attrs = p.structs("Attributes");
    if attrs.is_empty() {
        return Err(validation("Attributes must not be empty"));
    }
    for a in attrs {
        let key = a.required("Key")?;
        let value = a.str("Value").unwrap_or("");
        if !g.attributes.contains_key(key) {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "The attribute '{key}' is not supported for target groups with the protocol '{}'",
                g.protocol
            )));
        }
        let int_in = |lo: i64, hi: i64| {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .is_some()
        };
        let ok = match key {
            "deregistration_delay.timeout_seconds" => int_in(0, 3600),
            "slow_start.duration_seconds" => value == "0" || int_in(30, 900),
            "stickiness.lb_cookie.duration_seconds" | "stickiness.app_cookie.duration_seconds" => {
                int_in(1, 604800)
            }
            k if k.ends_with(".enabled") && k != "load_balancing.cross_zone.enabled" => {
                matches!(value, "true" | "false")
            }
            "load_balancing.cross_zone.enabled" => {
                matches!(value, "true" | "false" | "use_load_balancer_configuration")
            }
            "stickiness.type" if g.protocol == "HTTP" => {
                matches!(value, "lb_cookie" | "app_cookie")
            }
            "stickiness.type" => value == "source_ip",
            // The load balancer's own cookies' names are its own (ALB User Guide, "Sticky
            // sessions": AWSALB, AWSALBAPP and AWSALBTG are reserved).
            "stickiness.app_cookie.cookie_name" => !value.starts_with("AWSALB"),
            "load_balancing.algorithm.type" => {
                matches!(
                    value,
                    "round_robin" | "least_outstanding_requests" | "weighted_random"
                )
            }
            // The model's TargetGroupAttribute: counts from 1 (`off` too for DNS
            // failover's), percentages `off` or 1-100.
            "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count" => {
                int_in(1, i64::MAX)
            }
            "target_group_health.dns_failover.minimum_healthy_targets.count" => {
                value == "off" || int_in(1, i64::MAX)
            }
            k if k.starts_with("target_group_health.") && k.ends_with(".percentage") => {
                value == "off" || int_in(1, 100)
            }
            "target_health_state.unhealthy.draining_interval_seconds" => int_in(0, 360_000),
            _ => true,
        };
        if !ok {
            return Err(validation(format!(
                "'{value}' is not a valid value for the attribute '{key}'"
            )));
        }
        if let Some((_, _, why)) = NOT_APPLIED
            .iter()
            .find(|(k, same, _)| key.starts_with(*k) && !same.contains(&value))
        {
            tracing::warn!(target_group = %g.name, attribute = key, value, "target group attribute stored and returned, not applied here: {why}");
        }
        g.attributes.insert(key.to_string(), value.to_string());
    }
    // Slow start goes with round robin only (ALB User Guide, "Routing algorithm": "You
    // cannot enable both least outstanding requests and slow start mode"; ELB's
    // answer names the algorithm).
    let slow = g
        .attributes
        .get("slow_start.duration_seconds")
        .is_some_and(|v| v != "0");
    let algorithm = match g
        .attributes
        .get("load_balancing.algorithm.type")
        .map(String::as_str)
    {
        Some("least_outstanding_requests") => Some("least outstanding requests"),
        Some("weighted_random") => Some("weighted random"),
        _ => None,
    };
    if let (true, Some(algorithm)) = (slow, algorithm) {
        return Err(ElbError::InvalidConfigurationRequest(format!(
            "You cannot enable both slow start and {algorithm} algorithm on a target group"
        )));
    }
    s.save_group(&g)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &g.attributes);
    s.groups.insert(g.arn.clone(), g);
    Ok(x)
}
