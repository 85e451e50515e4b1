//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer and a load balancer's
//! attributes: what a load balancer is, where it answers, and what of it applies here.

use super::*;

/// Route 53's hosted zone of ELB's DNS names in the region (the AWS General Reference's
/// "Elastic Load Balancing endpoints and quotas"); a region not listed gets us-east-1's.
pub(super) fn hosted_zone(kind: LbType, region: &str) -> &'static str {
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

pub(super) fn create_load_balancer(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn describe_load_balancers(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn delete_load_balancer(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn describe_lb_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let lb = lb(s, p.required("LoadBalancerArn")?)?;
    let mut x = Xml::new();
    write_attributes(&mut x, &lb_attributes(lb));
    Ok(x)
}

/// The load balancer attributes serve applies ("HTTP listeners" in docs/load-balancing.md);
/// access and connection logs are refused when enabled (`checks::lb_attribute`: no S3
/// here); the others are kept, returned and said not applied in serve's log.
pub(super) const LB_APPLIED: &[&str] = &[
    "deletion_protection.enabled",
    "idle_timeout.timeout_seconds",
    "client_keep_alive.seconds",
    "routing.http.desync_mitigation_mode",
    "routing.http.drop_invalid_header_fields.enabled",
    "routing.http.preserve_host_header.enabled",
    "routing.http.xff_client_port.enabled",
    "routing.http.xff_header_processing.mode",
];

pub(super) fn modify_lb_attributes(s: &mut State, p: &Params) -> ElbResult<Xml> {
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
        super::super::checks::lb_attribute(lb.kind, key, value)?;
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
