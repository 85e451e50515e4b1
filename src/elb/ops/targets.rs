//! RegisterTargets, DeregisterTargets and DescribeTargetHealth: which targets a group
//! has, and how each is.

use super::*;

/// The targets of a Register/Deregister/DescribeTargetHealth request, ports defaulting to
/// the group's.
pub(super) fn targets(p: &Params, g: &TargetGroup) -> ElbResult<Vec<Target>> {
    targets_known(p, g, None)
}

/// [`targets`]; with `instances`, an instance id must be one of theirs (RegisterTargets:
/// ELB refuses an instance that does not exist).
pub(super) fn targets_known(
    p: &Params,
    g: &TargetGroup,
    instances: Option<&super::super::HashMap<String, std::net::IpAddr>>,
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
pub(in crate::elb) fn same(a: &Target, b: &Target) -> bool {
    a.id == b.id && a.port == b.port
}

pub(super) fn register_targets(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn deregister_targets(s: &mut State, p: &Params) -> ElbResult<Xml> {
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

pub(super) fn describe_target_health(s: &mut State, p: &Params) -> ElbResult<Xml> {
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
    let none = super::super::balance::Anomalies::default();
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
