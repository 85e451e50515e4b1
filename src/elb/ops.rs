//! The ELBv2 operations this host answers, each reading its members from the form
//! (`query::Params`) and writing its result shape (`query::Xml`), with ELB's defaults,
//! bounds and error codes (the botocore model's documentation of each member, and
//! API_CreateTargetGroup / API_CreateLoadBalancer / API_CreateListener).

use super::checks::{
    ArnKind, actions, arn_form, group, lb, page, tags, validation, write_attributes,
};
use super::error::{ElbError, ElbResult};
use super::model::{HealthCheck, LbType, Listener, LoadBalancer, Tag, Target, TargetGroup};
use super::query::{Params, Xml};
use super::{Elb, Health, State, random_hex, setting_ops};
use std::time::Instant;

/// The operations, in the order docs/load-balancing.md lists them, with what each does here.
pub const OPERATIONS: &[(&str, &str)] = &[
    (
        "CreateLoadBalancer",
        "`application` and `network`; `Subnets`/`SubnetMappings`, `SecurityGroups`, `IpAddressType` and `Tags` kept (subnets are not checked: no VPC here); `gateway` refused",
    ),
    (
        "DescribeLoadBalancers",
        "by `LoadBalancerArns` or `Names`; `Marker`/`PageSize`",
    ),
    (
        "DeleteLoadBalancer",
        "its listeners too; a load balancer that does not exist is a success, as on AWS",
    ),
    (
        "CreateTargetGroup",
        "target types `ip` and `instance`, protocols HTTP and TCP; every health-check member with ELB's defaults and bounds",
    ),
    (
        "DescribeTargetGroups",
        "by `TargetGroupArns`, `Names` or `LoadBalancerArn`; `Marker`/`PageSize`",
    ),
    ("ModifyTargetGroup", "every health-check member"),
    (
        "DeleteTargetGroup",
        "refused (ResourceInUse) while a listener forwards to it",
    ),
    (
        "DescribeTargetGroupAttributes",
        "every attribute ELB lists for the group's protocol, with ELB's defaults",
    ),
    (
        "ModifyTargetGroupAttributes",
        "`deregistration_delay.timeout_seconds` (0-3600), `stickiness.*` (`lb_cookie`, `app_cookie`, `source_ip`), `slow_start.duration_seconds`, `load_balancing.algorithm.*`, `proxy_protocol_v2.enabled`, `target_group_health.unhealthy_state_routing.*`, `target_health_state.unhealthy.connection_termination.enabled` and `deregistration_delay.connection_termination.enabled` applied; slow start with `least_outstanding_requests` or `weighted_random` refused (InvalidConfigurationRequest, as ELB); `preserve_client_ip.enabled`, `target_group_health.dns_failover.*` and `target_health_state.unhealthy.draining_interval_seconds` stored and returned, not applied (said in serve's log: \"Target group attributes\"); the others stored and returned",
    ),
    ("RegisterTargets", "`Id` (an IP address for `ip`), `Port`"),
    (
        "DeregisterTargets",
        "a target of a group in use drains for the deregistration delay",
    ),
    (
        "DescribeTargetHealth",
        "initial, healthy, unhealthy, unused, draining with ELB's reason codes; `Include` `AnomalyDetection` (or `All`): each target's `AnomalyDetection` in HTTP groups, mitigated in `weighted_random` groups with anomaly mitigation (\"Routing algorithms\")",
    ),
    (
        "CreateListener",
        "HTTP on application, TCP on network load balancers; default actions `forward` (one target group or `ForwardConfig` with weights), `fixed-response`, `redirect` (application); authenticate actions refused (HTTPS only); `SslPolicy`, `Certificates`, `AlpnPolicy` and `MutualAuthentication` refused (UnsupportedProtocol: HTTPS and TLS listeners only), as ModifyListener refuses them",
    ),
    (
        "DescribeListeners",
        "by `LoadBalancerArn` or `ListenerArns`",
    ),
    (
        "ModifyListener",
        "`Port`, `Protocol` (HTTP or TCP as the load balancer's type), `DefaultActions`; TLS members refused",
    ),
    ("DeleteListener", "its rules too"),
    (
        "CreateRule",
        "HTTP listeners; conditions `host-header`, `path-pattern`, `http-header`, `query-string`, `http-request-method`, `source-ip` (`Values` or the `*Config` forms; `RegexValues` and `Transforms` refused); the listener's actions; applied to traffic",
    ),
    (
        "DescribeRules",
        "by `ListenerArn` (by priority, then the default rule: `IsDefault`, priority `default`) or `RuleArns`; `Marker`/`PageSize`",
    ),
    (
        "ModifyRule",
        "conditions and actions; the default rule's actions are its listener's default actions",
    ),
    (
        "DeleteRule",
        "the default rule cannot be deleted (OperationNotPermitted)",
    ),
    (
        "SetRulePriorities",
        "all or nothing; PriorityInUse when two rules of a listener would share one",
    ),
    (
        "DescribeLoadBalancerAttributes",
        "every attribute ELB lists for the load balancer's type, with ELB's defaults",
    ),
    (
        "ModifyLoadBalancerAttributes",
        "`deletion_protection.enabled` applied (DeleteLoadBalancer is then OperationNotPermitted); `idle_timeout.timeout_seconds`, `client_keep_alive.seconds` and the `routing.http.*` header attributes (`xff_header_processing.mode`, `xff_client_port.enabled`, `preserve_host_header.enabled`, `drop_invalid_header_fields.enabled`) and `routing.http.desync_mitigation_mode` applied (\"HTTP listeners\"); values checked as ELB's API reference lists them (ValidationError); access and connection logs refused (no S3 here); the others (zonal shift, WAF fail-open, TLS headers, IPv6, cross-zone, HTTP/2, DNS client routing) stored and returned, not applied (said in serve's log when set to other than their default: \"load balancer attribute stored and returned, not applied here\")",
    ),
    (
        "SetSecurityGroups",
        "kept and returned, not applied (no VPC security groups here); a network load balancer created without security groups, or left with none, refused (InvalidConfigurationRequest, as ELB); `EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic` kept (network load balancers)",
    ),
    (
        "SetSubnets",
        "`Subnets`/`SubnetMappings` kept as the load balancer's zones (subnets are not checked: no VPC here); `IpAddressType` as SetIpAddressType; `EnablePrefixForIpv6SourceNat` `on` refused (UDP listeners only)",
    ),
    (
        "SetIpAddressType",
        "`ipv4`, `dualstack`, `dualstack-without-public-ipv4` (application only) kept and returned, not applied (the listeners answer at one IPv4 address)",
    ),
    (
        "DescribeCapacityReservation",
        "no capacity is reserved on one box: no `MinimumLoadBalancerCapacity`, no zone state (as for a load balancer without a reservation)",
    ),
    (
        "DescribeListenerAttributes",
        "TCP listeners: `tcp.idle_timeout.seconds` (350); HTTP listeners: `routing.http.response.server.enabled` (true) and the `routing.http.response.*.header_value` headers (none)",
    ),
    (
        "ModifyListenerAttributes",
        "the keys of the listener's protocol, stored and returned, not applied (the proxy's idle timeout and headers are not changed by them); another protocol's key refused (InvalidConfigurationRequest), an unknown one (ValidationError); `tcp.idle_timeout.seconds` 60-6000",
    ),
    (
        "AddTags",
        "load balancers, target groups, listeners and rules, by ARN; at most 50 tags a resource",
    ),
    ("RemoveTags", ""),
    ("DescribeTags", "up to 20 resources"),
];

/// Runs ELBv2 action `op` with the request's members.
pub fn call(elb: &Elb, op: &str, p: &Params) -> ElbResult<Xml> {
    let out = dispatch(elb, op, p);
    if out.is_ok() && !op.starts_with("Describe") {
        elb.changed();
    }
    out
}

fn dispatch(elb: &Elb, op: &str, p: &Params) -> ElbResult<Xml> {
    match op {
        "CreateLoadBalancer" => elb.write(|s| create_load_balancer(elb, s, p)),
        "DescribeLoadBalancers" => elb.with(|s| describe_load_balancers(s, p)),
        "DeleteLoadBalancer" => elb.write(|s| delete_load_balancer(s, p)),
        "CreateTargetGroup" => elb.write(|s| create_target_group(elb, s, p)),
        "DescribeTargetGroups" => elb.with(|s| describe_target_groups(s, p)),
        "ModifyTargetGroup" => elb.write(|s| modify_target_group(s, p)),
        "DeleteTargetGroup" => elb.write(|s| delete_target_group(s, p)),
        "DescribeTargetGroupAttributes" => elb.with(|s| describe_attributes(s, p)),
        "ModifyTargetGroupAttributes" => elb.write(|s| modify_attributes(s, p)),
        "RegisterTargets" => elb.write(|s| register_targets(s, p)),
        "DeregisterTargets" => elb.write(|s| deregister_targets(s, p)),
        "DescribeTargetHealth" => elb.with(|s| describe_target_health(s, p)),
        "CreateListener" => elb.write(|s| create_listener(elb, s, p)),
        "DescribeListeners" => elb.with(|s| describe_listeners(s, p)),
        "ModifyListener" => elb.write(|s| super::rule_ops::modify_listener(s, p)),
        "DeleteListener" => elb.write(|s| delete_listener(s, p)),
        "CreateRule" => elb.write(|s| super::rule_ops::create_rule(elb, s, p)),
        "DescribeRules" => elb.with(|s| super::rule_ops::describe_rules(s, p)),
        "ModifyRule" => elb.write(|s| super::rule_ops::modify_rule(s, p)),
        "DeleteRule" => elb.write(|s| super::rule_ops::delete_rule(s, p)),
        "SetRulePriorities" => elb.write(|s| super::rule_ops::set_rule_priorities(s, p)),
        "DescribeLoadBalancerAttributes" => elb.with(|s| describe_lb_attributes(s, p)),
        "ModifyLoadBalancerAttributes" => elb.write(|s| modify_lb_attributes(s, p)),
        "SetSecurityGroups" => elb.write(|s| setting_ops::set_security_groups(s, p)),
        "SetSubnets" => elb.write(|s| setting_ops::set_subnets(s, p)),
        "SetIpAddressType" => elb.write(|s| setting_ops::set_ip_address_type(s, p)),
        "DescribeCapacityReservation" => {
            elb.with(|s| setting_ops::describe_capacity_reservation(s, p))
        }
        "DescribeListenerAttributes" => {
            elb.with(|s| setting_ops::describe_listener_attributes(s, p))
        }
        "ModifyListenerAttributes" => elb.write(|s| setting_ops::modify_listener_attributes(s, p)),
        "AddTags" => elb.write(|s| add_tags(s, p)),
        "RemoveTags" => elb.write(|s| remove_tags(s, p)),
        "DescribeTags" => elb.with(|s| describe_tags(s, p)),
        _ => Err(ElbError::InvalidAction(format!(
            "{op} is not an Elastic Load Balancing v2 action served by minifargate (it serves {}; see docs/load-balancing.md)",
            OPERATIONS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// ELB's rule for load balancer and target group names: 1-32 alphanumerics or hyphens,
/// not beginning or ending with a hyphen.
fn check_name(what: &str, name: &str) -> ElbResult<()> {
    if name.is_empty() || name.len() > 32 {
        return Err(validation(format!(
            "{what} name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(validation(format!(
            "{what} name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!(
            "{what} name '{name}' cannot begin or end with '-' character"
        )));
    }
    Ok(())
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Route 53's hosted zone of ELB's DNS names in the region (the AWS General Reference's
/// "Elastic Load Balancing endpoints and quotas"); a region not listed gets us-east-1's.
fn hosted_zone(kind: LbType, region: &str) -> &'static str {
    match (kind, region) {
        (LbType::Application, "us-east-2") => "Z3AADJGX6KTTL2",
        (LbType::Application, "us-west-2") => "Z1H1FL5HABSF5",
        (LbType::Application, "eu-west-1") => "Z32O12XQLNTSW2",
        (LbType::Application, _) => "Z35SXDOTRQ7X7K",
        (LbType::Network, "us-east-2") => "ZLMOA37VPKANP",
        (LbType::Network, "us-west-2") => "Z18D5FSROUN65G",
        (LbType::Network, "eu-west-1") => "Z2IFOLAFXWLO4F",
        (LbType::Network, _) => "Z26RNL4JYFTOTI",
    }
}

fn create_load_balancer(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
    let name = p.required("Name")?;
    check_name("Load balancer", name)?;
    if name.starts_with("internal-") {
        return Err(validation(format!(
            "Load balancer name '{name}' cannot begin with 'internal-'"
        )));
    }
    let kind = match p.str("Type").unwrap_or("application") {
        "application" => LbType::Application,
        "network" => LbType::Network,
        "gateway" => {
            return Err(ElbError::OperationNotPermitted(
                "Gateway Load Balancers (GENEVE) are not served by minifargate: it serves application and network load balancers".into(),
            ));
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [application, network, gateway]"
            )));
        }
    };
    let scheme = p.str("Scheme").unwrap_or("internet-facing");
    if !matches!(scheme, "internet-facing" | "internal") {
        return Err(ElbError::InvalidScheme(format!(
            "Scheme '{scheme}' is not valid: it must be internet-facing or internal"
        )));
    }
    let ip_address_type = p.str("IpAddressType").unwrap_or("ipv4");
    setting_ops::ip_address_type(kind, ip_address_type)?;
    let subnets = setting_ops::subnets(p)?;
    let tags = tags(p)?;
    if s.lbs.values().any(|l| l.name == name) {
        return Err(ElbError::DuplicateLoadBalancerName(
            "A load balancer with the same name already exists".into(),
        ));
    }
    let region = elb.aws.region.clone();
    let id = random_hex(8);
    let arn = format!(
        "arn:aws:elasticloadbalancing:{region}:{}:loadbalancer/{}/{name}/{id}",
        elb.aws.account_id,
        kind.arn_segment()
    );
    let internal = if scheme == "internal" {
        "internal-"
    } else {
        ""
    };
    let dns_name = match kind {
        // my-load-balancer-1234567890.us-west-2.elb.amazonaws.com
        LbType::Application => {
            let n = u64::from_str_radix(&id[..8], 16).unwrap_or(0) % 9_000_000_000 + 1_000_000_000;
            format!("{internal}{name}-{n}.{region}.elb.amazonaws.com")
        }
        // my-network-load-balancer-1234567890abcdef.elb.us-west-2.amazonaws.com
        LbType::Network => format!("{internal}{name}-{id}.elb.{region}.amazonaws.com"),
    };
    let lb = LoadBalancer {
        arn: arn.clone(),
        name: name.to_string(),
        kind,
        scheme: scheme.to_string(),
        dns_name,
        hosted_zone: hosted_zone(kind, &region).to_string(),
        created_ms: now_ms(),
        vpc_id: "vpc-minifargate".to_string(),
        subnets,
        security_groups: p.list("SecurityGroups"),
        ip_address_type: ip_address_type.to_string(),
        tags,
        attributes: Default::default(),
        enforce_private_link: None,
    };
    s.save_lb(&lb)?;
    let mut x = Xml::new();
    x.list("LoadBalancers", std::slice::from_ref(&lb), |x, l| {
        l.write(x, "provisioning")
    });
    s.lbs.insert(arn, lb);
    Ok(x)
}

fn describe_load_balancers(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("LoadBalancerArns");
    let names = p.list("Names");
    if !arns.is_empty() && !names.is_empty() {
        return Err(validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let found: Vec<LoadBalancer> = if !arns.is_empty() {
        for a in &arns {
            arn_form(a, ArnKind::LoadBalancer)?;
        }
        let missing: Vec<&String> = arns.iter().filter(|a| !s.lbs.contains_key(*a)).collect();
        if !missing.is_empty() {
            return Err(ElbError::LoadBalancerNotFound(format!(
                "Load balancers '{missing:?}' not found"
            )));
        }
        arns.iter().map(|a| s.lbs[a].clone()).collect()
    } else if !names.is_empty() {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !s.lbs.values().any(|l| &l.name == *n))
            .collect();
        if !missing.is_empty() {
            return Err(ElbError::LoadBalancerNotFound(format!(
                "Load balancers '{missing:?}' not found"
            )));
        }
        s.lbs
            .values()
            .filter(|l| names.contains(&l.name))
            .cloned()
            .collect()
    } else {
        s.lbs.values().cloned().collect()
    };
    let (items, next) = page(found, p)?;
    let mut x = Xml::new();
    x.list("LoadBalancers", &items, |x, l| l.write(x, "active"))
        .opt("NextMarker", next);
    Ok(x)
}

fn delete_load_balancer(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("LoadBalancerArn")?.to_string();
    if let Some(lb) = s.lbs.get(&arn)
        && lb_attributes(lb)["deletion_protection.enabled"] == "true"
    {
        return Err(ElbError::OperationNotPermitted(format!(
            "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
        )));
    }
    if s.lbs.contains_key(&arn) {
        let listeners: Vec<String> = s
            .listeners
            .values()
            .filter(|l| l.load_balancer_arn == arn)
            .map(|l| l.arn.clone())
            .collect();
        for l in listeners {
            s.delete_listener(&l)?;
        }
        s.delete(&arn)?;
        s.lbs.remove(&arn);
        s.refresh_health();
    }
    Ok(Xml::new())
}

/// Health-check members from `p` over `base` (CreateTargetGroup's defaults or the
/// group's current settings), checked against ELB's bounds.
fn health_check(p: &Params, protocol: &str, base: &HealthCheck) -> ElbResult<HealthCheck> {
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
fn default_attributes(
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

fn create_target_group(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
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

fn describe_target_groups(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

fn modify_target_group(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

fn delete_target_group(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

fn describe_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let g = group(s, p.required("TargetGroupArn")?)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &g.attributes);
    Ok(x)
}

fn modify_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

/// The targets of a Register/Deregister/DescribeTargetHealth request, ports defaulting to
/// the group's.
fn targets(p: &Params, g: &TargetGroup) -> ElbResult<Vec<Target>> {
    targets_known(p, g, None)
}

/// [`targets`]; with `instances`, an instance id must be one of theirs (RegisterTargets:
/// ELB refuses an instance that does not exist).
fn targets_known(
    p: &Params,
    g: &TargetGroup,
    instances: Option<&super::HashMap<String, std::net::IpAddr>>,
) -> ElbResult<Vec<Target>> {
    let mut out = Vec::new();
    for t in p.structs("Targets") {
        let id = t.required("Id")?.to_string();
        let port = t.int("Port", 1, 65535)?.map(|n| n as u16).unwrap_or(g.port);
        // Ref: ELB answers a malformed id with ValidationError, as its users quote it:
        // "The IP address 'affe:affe:affe::affe' is not a valid IPv4 address" for an `ip`
        // group (ansible-collections/community.aws#1441), "Instance ID '10.19.173.98' is
        // not valid" for an `instance` group (kubernetes-sigs/aws-load-balancer-controller
        // #3668, ansible/ansible#30962).
        if g.target_type == "ip" && id.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(validation(format!(
                "The IP address '{id}' is not a valid IPv4 address"
            )));
        }
        if g.target_type == "instance" && !crate::store::instance_id::is_instance_id(&id) {
            return Err(validation(format!("Instance ID '{id}' is not valid")));
        }
        // Ref: ELB's answer for an instance id no instance has, as the AWS Load Balancer
        // Controller's users quote it (kubernetes-sigs/aws-load-balancer-controller#272).
        if g.target_type == "instance" && instances.is_some_and(|known| !known.contains_key(&id)) {
            return Err(ElbError::InvalidTarget(format!(
                "The following instances do not exist: '{id}'"
            )));
        }
        out.push(Target {
            id,
            port,
            availability_zone: t.str("AvailabilityZone").map(str::to_string),
        });
    }
    Ok(out)
}

/// Targets are the same target when their id and port are (the zone is an annotation).
pub(super) fn same(a: &Target, b: &Target) -> bool {
    a.id == b.id && a.port == b.port
}

fn register_targets(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut g = group(s, p.required("TargetGroupArn")?)?.clone();
    let new = targets_known(p, &g, Some(&s.instances))?;
    if new.is_empty() {
        return Err(validation("Targets must not be empty"));
    }
    for t in new {
        s.stop_draining(&g.arn, &t);
        if !g.targets.iter().any(|o| same(o, &t)) {
            g.register(&t);
            g.targets.push(t);
        }
    }
    s.save_group(&g)?;
    s.groups.insert(g.arn.clone(), g);
    s.refresh_health();
    Ok(Xml::new())
}

fn deregister_targets(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut g = group(s, p.required("TargetGroupArn")?)?.clone();
    let gone = targets(p, &g)?;
    if gone.is_empty() {
        return Err(validation("Targets must not be empty"));
    }
    for t in &gone {
        if !g.targets.iter().any(|o| same(o, t)) {
            return Err(ElbError::InvalidTarget(format!(
                "The following targets are not registered: '{}'",
                t.id
            )));
        }
    }
    let in_use = !s.lbs_of_group(&g.arn).is_empty();
    let mut left = Vec::new();
    for t in gone {
        if let Some(i) = g.targets.iter().position(|o| same(o, &t)) {
            g.deregister(&t);
            left.push(g.targets.remove(i));
        }
    }
    s.drain(&g, left, in_use);
    s.save_group(&g)?;
    s.groups.insert(g.arn.clone(), g);
    s.refresh_health();
    Ok(Xml::new())
}

fn describe_target_health(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let g = group(s, p.required("TargetGroupArn")?)?.clone();
    let mut anomalies = false;
    for i in p.list("Include") {
        match i.as_str() {
            "AnomalyDetection" | "All" => anomalies = true,
            other => {
                return Err(validation(format!(
                    "1 validation error detected: Value '[{other}]' at 'include' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [All, AnomalyDetection]]"
                )));
            }
        }
    }
    // Anomaly detection runs for every HTTP group (ALB's; not for TCP ones), in the serve
    // that runs the data plane, once the group has had traffic (`balance::Anomalies`);
    // before, every target is normal.
    let http = g.protocol.starts_with("HTTP");
    let none = super::balance::Anomalies::default();
    let seen = s
        .anomalies
        .get(&g.arn)
        .map(|a| a.read().unwrap_or_else(|p| p.into_inner()));
    let detection = (anomalies && http).then(|| seen.as_deref().unwrap_or(&none));
    let now = Instant::now();
    s.draining.retain(|d| d.until > now);
    let asked = targets(p, &g)?;
    let list: Vec<Target> = if asked.is_empty() {
        let mut all = g.targets.clone();
        for d in s.draining.iter().filter(|d| d.group == g.arn) {
            if !all.iter().any(|t| same(t, &d.target)) {
                all.push(d.target.clone());
            }
        }
        all
    } else {
        asked
            .into_iter()
            .map(|t| {
                g.targets
                    .iter()
                    .chain(s.draining.iter().map(|d| &d.target))
                    .find(|o| same(o, &t))
                    .cloned()
                    .unwrap_or(t)
            })
            .collect()
    };
    let rows: Vec<(Target, Health)> = list
        .into_iter()
        .map(|t| {
            let h = s.health_of(&g, &t, now);
            (t, h)
        })
        .collect();
    let hc_port = |t: &Target| {
        if g.health.port == "traffic-port" {
            t.port.to_string()
        } else {
            g.health.port.clone()
        }
    };
    let mut x = Xml::new();
    x.list("TargetHealthDescriptions", &rows, |x, (t, h)| {
        x.node("Target", |x| {
            x.leaf("Id", &t.id)
                .leaf("Port", t.port)
                .opt("AvailabilityZone", t.availability_zone.as_ref());
        })
        .leaf("HealthCheckPort", hc_port(t))
        .node("TargetHealth", |x| {
            x.leaf("State", h.state)
                .opt("Reason", h.reason)
                .opt("Description", h.description.as_ref());
        });
        if let Some(a) = detection {
            let (anomalous, mitigated) = a.detection(t);
            x.node("AnomalyDetection", |x| {
                x.leaf("Result", if anomalous { "anomalous" } else { "normal" })
                    .leaf("MitigationInEffect", if mitigated { "yes" } else { "no" });
            });
        }
    });
    Ok(x)
}

fn create_listener(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
    let lb_arn = p.required("LoadBalancerArn")?;
    let lb = s
        .lbs
        .get(lb_arn)
        .ok_or_else(|| {
            ElbError::LoadBalancerNotFound(format!("Load balancer '{lb_arn}' not found"))
        })?
        .clone();
    let protocol = p
        .str("Protocol")
        .ok_or_else(|| validation("A listener protocol must be specified"))?;
    match (lb.kind, protocol) {
        (LbType::Application, "HTTP") | (LbType::Network, "TCP") => {}
        (LbType::Application, "HTTPS") | (LbType::Network, "TLS") => {
            return Err(ElbError::UnsupportedProtocol(format!(
                "Protocol '{protocol}' is not served by minifargate (no ACM certificates here): use {}",
                if lb.kind == LbType::Application {
                    "HTTP"
                } else {
                    "TCP"
                }
            )));
        }
        (LbType::Network, "UDP" | "TCP_UDP" | "QUIC" | "TCP_QUIC") => {
            return Err(ElbError::UnsupportedProtocol(format!(
                "Protocol '{protocol}' is not served by minifargate: network load balancers here serve TCP"
            )));
        }
        _ => {
            return Err(ElbError::UnsupportedProtocol(format!(
                "Protocol '{protocol}' is not supported for load balancer type '{}'",
                lb.kind.as_str()
            )));
        }
    }
    let port = p
        .int("Port", 1, 65535)?
        .ok_or_else(|| validation("A listener port must be specified"))? as u16;
    // SslPolicy, AlpnPolicy and MutualAuthentication were dropped here: refused as
    // ModifyListener refuses them (issue 74).
    super::rule_ops::no_tls_members(p)?;
    let default_actions = actions(s, p.structs("DefaultActions"), &lb, protocol)?;
    let tags = tags(p)?;
    if let Some(l) = s
        .listeners
        .values()
        .find(|l| l.load_balancer_arn == lb.arn && l.port == port)
    {
        if l.protocol == protocol && l.default_actions == default_actions {
            let mut x = Xml::new();
            x.list("Listeners", std::slice::from_ref(l), |x, l| l.write(x));
            return Ok(x);
        }
        return Err(ElbError::DuplicateListener(
            "A listener already exists on this port for this load balancer".into(),
        ));
    }
    // arn:…:listener/app/<lb name>/<lb id>/<listener id>
    let lb_tail = lb.arn.split_once(":loadbalancer/").map_or("", |(_, t)| t);
    let arn = format!(
        "arn:aws:elasticloadbalancing:{}:{}:listener/{lb_tail}/{}",
        elb.aws.region,
        elb.aws.account_id,
        random_hex(8)
    );
    let l = Listener {
        arn: arn.clone(),
        load_balancer_arn: lb.arn.clone(),
        port,
        protocol: protocol.to_string(),
        default_actions,
        tags,
        attributes: Default::default(),
    };
    s.save_listener(&l)?;
    let mut x = Xml::new();
    x.list("Listeners", std::slice::from_ref(&l), |x, l| l.write(x));
    s.listeners.insert(arn, l);
    s.refresh_health();
    Ok(x)
}

fn describe_listeners(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ListenerArns");
    let lb = p.str("LoadBalancerArn");
    let found: Vec<Listener> = match (lb, arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation(
                "Listener ARNs and a load balancer ARN cannot be specified at the same time",
            ));
        }
        (Some(lb), true) => {
            arn_form(lb, ArnKind::LoadBalancer)?;
            if !s.lbs.contains_key(lb) {
                return Err(ElbError::LoadBalancerNotFound(format!(
                    "Load balancer '{lb}' not found"
                )));
            }
            s.listeners
                .values()
                .filter(|l| l.load_balancer_arn == lb)
                .cloned()
                .collect()
        }
        (None, false) => {
            for a in &arns {
                arn_form(a, ArnKind::Listener)?;
            }
            if let Some(a) = arns.iter().find(|a| !s.listeners.contains_key(*a)) {
                return Err(ElbError::ListenerNotFound(format!(
                    "One or more listeners not found ('{a}')"
                )));
            }
            arns.iter().map(|a| s.listeners[a].clone()).collect()
        }
        (None, true) => {
            return Err(validation(
                "You must specify either listener ARNs or a load balancer ARN",
            ));
        }
    };
    let (items, next) = page(found, p)?;
    let mut x = Xml::new();
    x.list("Listeners", &items, |x, l| l.write(x))
        .opt("NextMarker", next);
    Ok(x)
}

fn delete_listener(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("ListenerArn")?.to_string();
    if !s.listeners.contains_key(&arn) {
        return Err(ElbError::ListenerNotFound(format!(
            "Listener '{arn}' not found"
        )));
    }
    s.delete_listener(&arn)?;
    s.refresh_health();
    Ok(Xml::new())
}

/// A load balancer's attributes: ELB's defaults for its type (the model's
/// `LoadBalancerAttribute.Key` documentation), with those set over them.
pub fn lb_attributes(lb: &LoadBalancer) -> std::collections::BTreeMap<String, String> {
    let internal = if lb.scheme == "internal" {
        "true"
    } else {
        "false"
    };
    let mut a: Vec<(&str, &str)> = vec![
        ("deletion_protection.enabled", "false"),
        ("access_logs.s3.enabled", "false"),
        ("access_logs.s3.bucket", ""),
        ("access_logs.s3.prefix", ""),
        ("ipv6.deny_all_igw_traffic", internal),
        ("zonal_shift.config.enabled", "false"),
    ];
    match lb.kind {
        LbType::Application => a.extend([
            ("load_balancing.cross_zone.enabled", "true"),
            ("idle_timeout.timeout_seconds", "60"),
            ("client_keep_alive.seconds", "3600"),
            ("connection_logs.s3.enabled", "false"),
            ("connection_logs.s3.bucket", ""),
            ("connection_logs.s3.prefix", ""),
            ("routing.http.desync_mitigation_mode", "defensive"),
            ("routing.http.drop_invalid_header_fields.enabled", "false"),
            ("routing.http.preserve_host_header.enabled", "false"),
            (
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
                "false",
            ),
            ("routing.http.xff_client_port.enabled", "false"),
            ("routing.http.xff_header_processing.mode", "append"),
            ("routing.http2.enabled", "true"),
            ("waf.fail_open.enabled", "false"),
        ]),
        LbType::Network => a.extend([
            ("load_balancing.cross_zone.enabled", "false"),
            ("dns_record.client_routing_policy", "any_availability_zone"),
        ]),
    }
    let mut out: std::collections::BTreeMap<String, String> = a
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(lb.attributes.clone());
    out
}

fn describe_lb_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let lb = lb(s, p.required("LoadBalancerArn")?)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &lb_attributes(lb));
    Ok(x)
}

/// The load balancer attributes serve applies ("HTTP listeners" in docs/load-balancing.md);
/// access and connection logs are refused when enabled (`checks::lb_attribute`: no S3
/// here); the others are kept, returned and said not applied in serve's log.
const LB_APPLIED: &[&str] = &[
    "deletion_protection.enabled",
    "idle_timeout.timeout_seconds",
    "client_keep_alive.seconds",
    "routing.http.desync_mitigation_mode",
    "routing.http.drop_invalid_header_fields.enabled",
    "routing.http.preserve_host_header.enabled",
    "routing.http.xff_client_port.enabled",
    "routing.http.xff_header_processing.mode",
];

fn modify_lb_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut lb = lb(s, p.required("LoadBalancerArn")?)?.clone();
    let known = lb_attributes(&lb);
    let defaults = lb_attributes(&LoadBalancer {
        attributes: Default::default(),
        ..lb.clone()
    });
    let attrs = p.structs("Attributes");
    if attrs.is_empty() {
        return Err(validation("Attributes must not be empty"));
    }
    for a in attrs {
        let key = a.required("Key")?;
        let value = a.str("Value").unwrap_or("");
        if !known.contains_key(key) {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "Key {key} not valid for a load balancer of type '{}'",
                lb.kind.as_str()
            )));
        }
        super::checks::lb_attribute(lb.kind, key, value)?;
        if !LB_APPLIED.contains(&key)
            && !key.contains("_logs.")
            && defaults.get(key).map(String::as_str) != Some(value)
        {
            tracing::warn!(load_balancer = %lb.name, attribute = key, value,
                "load balancer attribute stored and returned, not applied here (docs/load-balancing.md)");
        }
        lb.attributes.insert(key.to_string(), value.to_string());
    }
    s.save_lb(&lb)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &lb_attributes(&lb));
    s.lbs.insert(lb.arn.clone(), lb);
    Ok(x)
}

/// The tags of the resource `arn` (a load balancer, target group or listener), for
/// changing; the error names the kind the ARN says.
fn tags_of<'a>(s: &'a mut State, arn: &str) -> ElbResult<&'a mut Vec<Tag>> {
    if let Some(l) = s.lbs.get_mut(arn) {
        return Ok(&mut l.tags);
    }
    if let Some(g) = s.groups.get_mut(arn) {
        return Ok(&mut g.tags);
    }
    if let Some(l) = s.listeners.get_mut(arn) {
        return Ok(&mut l.tags);
    }
    if let Some(r) = s.rules.get_mut(arn) {
        return Ok(&mut r.tags);
    }
    Err(if arn.contains(":listener-rule/") {
        ElbError::RuleNotFound(format!("Rule '{arn}' not found"))
    } else if arn.contains(":targetgroup/") {
        ElbError::TargetGroupNotFound(format!("Target groups '{arn}' not found"))
    } else if arn.contains(":listener/") {
        ElbError::ListenerNotFound(format!("Listener '{arn}' not found"))
    } else {
        ElbError::LoadBalancerNotFound(format!("Load balancer '{arn}' not found"))
    })
}

fn save_resource(s: &State, arn: &str) -> ElbResult<()> {
    if let Some(l) = s.lbs.get(arn) {
        s.save_lb(l)
    } else if let Some(g) = s.groups.get(arn) {
        s.save_group(g)
    } else if let Some(l) = s.listeners.get(arn) {
        s.save_listener(l)
    } else if let Some(r) = s.rules.get(arn) {
        s.save_rule(r)
    } else {
        Ok(())
    }
}

/// ELB's limit of tags on one resource.
const MAX_TAGS: usize = 50;

fn add_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    let new = tags(p)?;
    if arns.is_empty() || new.is_empty() {
        return Err(validation("ResourceArns and Tags must not be empty"));
    }
    for arn in &arns {
        let have = tags_of(s, arn)?;
        let mut next = have.clone();
        for t in &new {
            match next.iter_mut().find(|o| o.key == t.key) {
                Some(o) => o.value = t.value.clone(),
                None => next.push(t.clone()),
            }
        }
        if next.len() > MAX_TAGS {
            return Err(ElbError::TooManyTags(format!(
                "The quota for the number of tags that can be assigned to a load balancer, target group or listener ({MAX_TAGS}) would be exceeded for '{arn}'"
            )));
        }
    }
    for arn in &arns {
        let have = tags_of(s, arn)?;
        for t in &new {
            match have.iter_mut().find(|o| o.key == t.key) {
                Some(o) => o.value = t.value.clone(),
                None => have.push(t.clone()),
            }
        }
        save_resource(s, arn)?;
    }
    Ok(Xml::new())
}

fn remove_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    let keys = p.list("TagKeys");
    if arns.is_empty() {
        return Err(validation("ResourceArns must not be empty"));
    }
    for arn in &arns {
        tags_of(s, arn)?;
    }
    for arn in &arns {
        tags_of(s, arn)?.retain(|t| !keys.contains(&t.key));
        save_resource(s, arn)?;
    }
    Ok(Xml::new())
}

fn describe_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    if arns.is_empty() || arns.len() > 20 {
        return Err(validation(
            "ResourceArns must have between 1 and 20 members",
        ));
    }
    let mut rows = Vec::new();
    for arn in arns {
        let tags = tags_of(s, &arn)?.clone();
        rows.push((arn, tags));
    }
    let mut x = Xml::new();
    x.list("TagDescriptions", &rows, |x, (arn, tags)| {
        x.leaf("ResourceArn", arn).list("Tags", tags, |x, t| {
            x.leaf("Key", &t.key).leaf("Value", &t.value);
        });
    });
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_codes_are_single_lists_or_ranges_within_bounds() {
        assert!(check_codes("200", 499).is_ok());
        assert!(check_codes("200,202", 499).is_ok());
        assert!(check_codes("200-299", 499).is_ok());
        assert!(check_codes("200-599", 499).is_err());
        assert!(check_codes("199", 499).is_err());
        assert!(check_codes("abc", 499).is_err());
        assert!(code_matches("200,202", 202));
        assert!(code_matches("200-399", 302));
        assert!(!code_matches("200", 503));
    }

    #[test]
    fn health_check_bounds_are_elb_s() {
        // The AWS CLI checks the model's minimums and maximums itself; SDKs without
        // parameter validation reach these.
        let base = HealthCheck {
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            enabled: true,
            path: None,
            interval: 30,
            timeout: 6,
            healthy: 5,
            unhealthy: 2,
            matcher: None,
        };
        for (k, v) in [
            ("HealthCheckIntervalSeconds", "4"),
            ("HealthCheckIntervalSeconds", "301"),
            ("HealthCheckTimeoutSeconds", "1"),
            ("HealthyThresholdCount", "11"),
            ("UnhealthyThresholdCount", "1"),
            ("HealthCheckPort", "0"),
            ("HealthCheckPath", "health"),
        ] {
            let p = Params::of(&[(k, v)]);
            assert!(
                matches!(
                    health_check(&p, "HTTP", &base),
                    Err(ElbError::Validation(_))
                ),
                "{k}={v}"
            );
        }
        let h = health_check(&Params::of(&[]), "HTTP", &base).unwrap();
        assert_eq!(h.path.as_deref(), Some("/"));
        assert_eq!(h.matcher.as_deref(), Some("200"));
        let tcp = HealthCheck {
            protocol: "TCP".into(),
            timeout: 10,
            ..base
        };
        let h = health_check(&Params::of(&[]), "TCP", &tcp).unwrap();
        assert_eq!((h.path, h.matcher), (None, None));
        let h = health_check(&Params::of(&[("HealthCheckProtocol", "HTTP")]), "TCP", &tcp).unwrap();
        assert_eq!(h.matcher.as_deref(), Some("200-399"));
    }

    #[test]
    fn load_balancing_md_lists_the_operations() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/load-balancing.md")).unwrap();
        let mut want = String::from("| Operation | Notes |\n|---|---|\n");
        for (name, notes) in OPERATIONS {
            want.push_str(&format!("| {name} | {notes} |\n"));
        }
        assert!(
            doc.contains(&want),
            "docs/load-balancing.md's table differs from OPERATIONS; it should be:\n{want}"
        );
    }

    #[test]
    fn names_follow_elb_s_rule() {
        assert!(check_name("Load balancer", "my-lb-1").is_ok());
        assert!(check_name("Load balancer", "-x").is_err());
        assert!(check_name("Load balancer", "a_b").is_err());
        assert!(check_name("Load balancer", &"a".repeat(33)).is_err());
    }
}
