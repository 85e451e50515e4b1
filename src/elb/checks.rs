//! What the operations share (`ops`, `rule_ops`): ELB's validation error, tags, pages,
//! the lookups of a load balancer and a target group, and the actions of a listener or a
//! rule read and checked as ELB checks them.

use super::State;
use super::error::{ElbError, ElbResult};
use super::model::{Action, LbType, Listener, LoadBalancer, Tag, TargetGroup, WeightedGroup};
use super::query::{Params, Xml};

pub(super) fn validation(msg: impl Into<String>) -> ElbError {
    ElbError::Validation(msg.into())
}

pub(super) fn tags(p: &Params) -> ElbResult<Vec<Tag>> {
    let mut out: Vec<Tag> = Vec::new();
    for t in p.structs("Tags") {
        let key = t.required("Key")?.to_string();
        if out.iter().any(|o| o.key == key) {
            return Err(ElbError::Validation(format!("Duplicate tag key '{key}'")));
        }
        out.push(Tag {
            key,
            value: t.str("Value").unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// One page of `items`: `Marker` is the index to start at, `PageSize` 1-400 (default:
/// all, as ELB answers up to 400 without one).
pub(super) fn page<T: Clone>(items: Vec<T>, p: &Params) -> ElbResult<(Vec<T>, Option<String>)> {
    let size = p.int("PageSize", 1, 400)?.unwrap_or(400) as usize;
    let start = match p.str("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| validation(format!("Marker '{m}' is not valid")))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).unwrap_or(&[]).to_vec(), next))
}

/// The kinds of ARN an ELBv2 request names, with the resource part of each:
/// `loadbalancer/<type>/<name>/<id>`, `targetgroup/<name>/<id>`,
/// `listener/<type>/<lb name>/<lb id>/<id>`.
#[derive(Debug, Clone, Copy)]
pub(super) enum ArnKind {
    LoadBalancer,
    TargetGroup,
    Listener,
}

/// Checks that `arn` has the form of an ELBv2 ARN of `kind`. Ref: ELB answers a string
/// that is not one with `ValidationError` (HTTP 400), "'<arn>' is not a valid load
/// balancer ARN" (… "target group ARN", "listener ARN"), as its users quote it
/// (aws/aws-cli#3673, aws/aws-cli#3260, hashicorp/terraform#18060), never with the
/// resource's NotFound code, which is for a well-formed ARN that names nothing.
pub(super) fn arn_form(arn: &str, kind: ArnKind) -> ElbResult<()> {
    let (prefix, segments, what) = match kind {
        ArnKind::LoadBalancer => ("loadbalancer", 3, "load balancer"),
        ArnKind::TargetGroup => ("targetgroup", 2, "target group"),
        ArnKind::Listener => ("listener", 4, "listener"),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(),
        ["arn", partition, "elasticloadbalancing", region, account, resource]
            if !partition.is_empty() && !region.is_empty() && !account.is_empty()
                && resource.split('/').next() == Some(prefix)
                && resource.split('/').count() == segments + 1
                && resource.split('/').all(|x| !x.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(validation(format!("'{arn}' is not a valid {what} ARN")))
    }
}

pub(super) fn group<'a>(s: &'a State, arn: &str) -> ElbResult<&'a TargetGroup> {
    arn_form(arn, ArnKind::TargetGroup)?;
    s.groups
        .get(arn)
        .ok_or_else(|| ElbError::TargetGroupNotFound(format!("Target groups '{arn}' not found")))
}

pub(super) fn lb<'a>(s: &'a State, arn: &str) -> ElbResult<&'a LoadBalancer> {
    arn_form(arn, ArnKind::LoadBalancer)?;
    s.lbs
        .get(arn)
        .ok_or_else(|| ElbError::LoadBalancerNotFound(format!("Load balancer '{arn}' not found")))
}

/// `Attributes`: each key and its value, in key order (a load balancer's, a target
/// group's or a listener's).
pub(super) fn write_attributes(x: &mut Xml, attrs: &std::collections::BTreeMap<String, String>) {
    let attrs: Vec<(&String, &String)> = attrs.iter().collect();
    x.list("Attributes", &attrs, |x, (k, v)| {
        x.leaf("Key", k).leaf("Value", v);
    });
}

pub(super) fn listener<'a>(s: &'a State, arn: &str) -> ElbResult<&'a Listener> {
    s.listeners
        .get(arn)
        .ok_or_else(|| ElbError::ListenerNotFound(format!("Listener '{arn}' not found")))
}

/// A listener's default actions (`DefaultActions`) or a rule's (`Actions`): forward
/// (`TargetGroupArn` or `ForwardConfig` with weights), fixed-response or redirect, in
/// `Order`, the last one ending the request; checked against the listener's protocol and
/// load balancer as ELB checks them.
pub(super) fn actions(
    s: &State,
    given: Vec<Params>,
    lb: &LoadBalancer,
    protocol: &str,
) -> ElbResult<Vec<Action>> {
    if given.is_empty() {
        return Err(validation("At least one action must be specified"));
    }
    let mut out = Vec::new();
    for a in &given {
        let kind = checked_kind(a, lb)?;
        let mut action = Action {
            kind: kind.to_string(),
            order: a.int("Order", 1, 50000)?,
            target_group_arn: None,
            forward: None,
            stickiness: None,
            fixed_response: None,
            redirect: None,
        };
        match kind {
            "forward" => {
                forward_action(s, a, lb, protocol, &mut action)?;
            }
            "fixed-response" => {
                let fc = a.sub("FixedResponseConfig");
                if fc.is_empty() {
                    return Err(validation(
                        "A fixed-response action must have a FixedResponseConfig",
                    ));
                }
                action.fixed_response = Some(super::rules::FixedResponse::parse(&fc)?);
            }
            _ => {
                let rc = a.sub("RedirectConfig");
                if rc.is_empty() {
                    return Err(validation("A redirect action must have a RedirectConfig"));
                }
                action.redirect = Some(super::rules::Redirect::parse(&rc)?);
            }
        }
        out.push(action);
    }
    one_ending_action(&out)?;
    Ok(out)
}

/// An action's `Type`, checked against the load balancer and the configurations given.
fn checked_kind<'a>(a: &'a Params, lb: &LoadBalancer) -> ElbResult<&'a str> {
    let kind = a.required("Type")?;
    match kind {
        "forward" | "fixed-response" | "redirect" => {}
        "authenticate-oidc" | "authenticate-cognito" | "jwt-validation" => {
            return Err(ElbError::InvalidLoadBalancerAction(format!(
                "Action type '{kind}' is supported only on HTTPS listeners, which minifargate does not serve (no ACM certificates here)"
            )));
        }
        other => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [forward, authenticate-oidc, authenticate-cognito, redirect, fixed-response, jwt-validation]"
            )));
        }
    }
    if lb.kind == LbType::Network && kind != "forward" {
        return Err(ElbError::InvalidLoadBalancerAction(format!(
            "Action type '{kind}' is not supported for network load balancers: use forward"
        )));
    }
    for (config, of) in [
        ("ForwardConfig", "forward"),
        ("FixedResponseConfig", "fixed-response"),
        ("RedirectConfig", "redirect"),
        ("AuthenticateOidcConfig", "authenticate-oidc"),
        ("AuthenticateCognitoConfig", "authenticate-cognito"),
        ("JwtValidationConfig", "jwt-validation"),
    ] {
        if of != kind && !a.sub(config).is_empty() {
            return Err(validation(format!(
                "{config} can be specified only for a '{of}' action, not '{kind}'"
            )));
        }
    }
    if kind != "forward" && a.str("TargetGroupArn").is_some() {
        return Err(validation(format!(
            "A target group ARN can be specified only for a forward action, not '{kind}'"
        )));
    }
    Ok(kind)
}

/// A forward action's target groups (`TargetGroupArn` or `ForwardConfig`, weighted) and
/// stickiness into `action`, each group of the listener's protocol and of no other load
/// balancer.
fn forward_action(
    s: &State,
    a: &Params,
    lb: &LoadBalancer,
    protocol: &str,
    action: &mut Action,
) -> ElbResult<()> {
    let fc = a.sub("ForwardConfig");
    let groups = fc.structs("TargetGroups");
    if !groups.is_empty() {
        if groups.len() > 5 {
            return Err(validation(
                "A forward action can have at most 5 target groups",
            ));
        }
        let mut v: Vec<WeightedGroup> = Vec::new();
        for g in groups {
            let arn = g.required("TargetGroupArn")?.to_string();
            if v.iter().any(|w| w.arn == arn) {
                return Err(validation(format!(
                    "Target group '{arn}' is listed more than once in the forward action"
                )));
            }
            v.push(WeightedGroup {
                arn,
                weight: g.int("Weight", 0, 999)?,
            });
        }
        action.forward = Some(v);
    }
    let st = fc.sub("TargetGroupStickinessConfig");
    if !st.is_empty() {
        let enabled = st.bool("Enabled")?.unwrap_or(false);
        let duration = st.int("DurationSeconds", 1, 604800)?;
        if enabled && duration.is_none() {
            return Err(validation(
                "TargetGroupStickinessConfig.DurationSeconds must be specified when stickiness is enabled",
            ));
        }
        action.stickiness = Some(super::model::GroupStickiness { enabled, duration });
    }
    action.target_group_arn = a.str("TargetGroupArn").map(str::to_string);
    if let (Some(one), Some(groups)) = (&action.target_group_arn, &action.forward)
        && (groups.len() != 1 || &groups[0].arn != one)
    {
        return Err(validation(
            "TargetGroupArn and ForwardConfig can both be given only with the same one target group; for several, use ForwardConfig alone",
        ));
    }
    if action.groups().is_empty() {
        return Err(validation(
            "A target group ARN must be specified for a forward action",
        ));
    }
    if lb.kind == LbType::Network && action.groups().len() > 1 {
        return Err(ElbError::InvalidLoadBalancerAction(
            "A network load balancer's forward action can have only one target group".into(),
        ));
    }
    for arn in action.groups() {
        let g = group(s, arn)?;
        if g.protocol != protocol {
            return Err(ElbError::IncompatibleProtocols(format!(
                "The protocol of the target group '{arn}' ({}) is not compatible with the listener protocol ({protocol})",
                g.protocol
            )));
        }
        // A target group is associated with one load balancer at most (ELB's rule).
        if let Some(other) = s.lbs_of_group(arn).iter().find(|l| **l != lb.arn) {
            return Err(ElbError::TargetGroupAssociationLimit(format!(
                "The following target groups cannot be associated with more than one load balancer: '{arn}' (already with '{other}')"
            )));
        }
    }
    Ok(())
}

/// Several actions: each with an order of its own, and still refused (one of them only
/// can end the request; the others would be authenticate actions).
fn one_ending_action(out: &[Action]) -> ElbResult<()> {
    if out.len() > 1 {
        if out.iter().any(|a| a.order.is_none()) {
            return Err(validation(
                "An order must be specified for each action when there are several",
            ));
        }
        let mut orders: Vec<i64> = out.iter().filter_map(|a| a.order).collect();
        orders.sort();
        orders.dedup();
        if orders.len() != out.len() {
            return Err(ElbError::InvalidLoadBalancerAction(
                "Each action must have a different order".into(),
            ));
        }
        return Err(ElbError::TooManyActions(format!(
            "Only one forward, redirect or fixed-response action can be specified (the others, authenticate actions, need an HTTPS listener); {} were given",
            out.len()
        )));
    }
    Ok(())
}

/// Whether `value` is one ModifyLoadBalancerAttributes takes for attribute `key` (known
/// to a load balancer of `kind`), as ELB's API reference (LoadBalancerAttribute) lists
/// them; what minifargate cannot serve (logs to S3) is refused as such.
pub(super) fn lb_attribute(kind: LbType, key: &str, value: &str) -> ElbResult<()> {
    let boolean = key.ends_with(".enabled") || key == "ipv6.deny_all_igw_traffic";
    if boolean && !matches!(value, "true" | "false") {
        return Err(validation(format!(
            "'{value}' is not a valid value for the attribute '{key}': it must be true or false"
        )));
    }
    if matches!(key, "access_logs.s3.enabled" | "connection_logs.s3.enabled") && value == "true" {
        return Err(ElbError::InvalidConfigurationRequest(format!(
            "{key}: logs to Amazon S3 are not served by minifargate (no S3 here)"
        )));
    }
    let choices: &[&str] = match key {
        "routing.http.xff_header_processing.mode" => &["append", "preserve", "remove"],
        "routing.http.desync_mitigation_mode" => &["monitor", "defensive", "strictest"],
        _ => &[],
    };
    if !choices.is_empty() && !choices.contains(&value) {
        return Err(validation(format!(
            "'{value}' is not a valid value for the attribute '{key}': it must be one of {}",
            choices.join(", ")
        )));
    }
    let seconds = match key {
        "idle_timeout.timeout_seconds" => Some(("idle timeout", 1..=4000)),
        "client_keep_alive.seconds" => Some(("client keep alive", 60..=604_800)),
        _ => None,
    };
    if let Some((what, range)) = seconds
        && !value.parse::<u32>().is_ok_and(|n| range.contains(&n))
    {
        return Err(validation(format!(
            "'{value}' is not a valid {what}: it must be {}-{} seconds",
            range.start(),
            range.end()
        )));
    }
    if key == "load_balancing.cross_zone.enabled" && kind == LbType::Application && value != "true"
    {
        return Err(ElbError::InvalidConfigurationRequest(
            "Cross-zone load balancing cannot be disabled for Application Load Balancers".into(),
        ));
    }
    Ok(())
}
