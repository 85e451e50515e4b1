//! CreateListener, DescribeListeners and DeleteListener: what a load balancer listens on
//! and what its listeners do by default.

use super::*;

pub(super) fn create_listener(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
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
    super::super::rule_ops::no_tls_members(p)?;
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

pub(super) fn describe_listeners(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn delete_listener(s: &mut State, p: &Params) -> ElbResult<Xml> {
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
