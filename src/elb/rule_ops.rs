//! The rule operations (CreateRule, DescribeRules, ModifyRule, DeleteRule,
//! SetRulePriorities) and ModifyListener, with ELB's checks and error codes
//! (API_CreateRule, API_SetRulePriorities, API_ModifyListener). The conditions and the
//! redirect/fixed-response settings are `super::rules`; the actions `super::ops::actions`.

use super::checks::{actions, lb, listener, page, tags, validation};
use super::error::{ElbError, ElbResult};
use super::model::{LbType, Listener, LoadBalancer};
use super::model::{Rule, write_default};
use super::query::{Params, Xml};
use super::rules::{self, Condition};
use super::{Elb, State, random_hex};

/// ELB's quota of rules per application load balancer, default rules not counted
/// (load-balancer-limits.html, "Rules per Application Load Balancer").
pub const MAX_RULES_PER_LB: usize = 100;

/// The listener whose default rule is `arn`, if it is one.
fn default_rule_of<'a>(s: &'a State, arn: &str) -> Option<&'a Listener> {
    s.listeners
        .values()
        .find(|l| rules::default_rule_arn(&l.arn) == arn)
}

fn rule_not_found(arn: &str) -> ElbError {
    ElbError::RuleNotFound(format!("One or more rules not found ('{arn}')"))
}

fn conditions(p: &Params) -> ElbResult<Vec<Condition>> {
    let mut out = Vec::new();
    for c in p.structs("Conditions") {
        out.push(Condition::parse(&c)?);
    }
    rules::check_rule(&out)?;
    Ok(out)
}

/// `Transforms` (host header and URL rewrites) are not served: refused saying so.
fn no_transforms(p: &Params) -> ElbResult<()> {
    if !p.structs("Transforms").is_empty() {
        return Err(ElbError::InvalidConfigurationRequest(
            "Transforms (host header and URL rewrites) are not served by minifargate".into(),
        ));
    }
    Ok(())
}

/// The listener's load balancer, refusing listeners that have no rules (TCP).
fn lb_with_rules(s: &State, l: &Listener) -> ElbResult<LoadBalancer> {
    let lb = lb(s, &l.load_balancer_arn)?.clone();
    if lb.kind != LbType::Application {
        return Err(ElbError::UnsupportedProtocol(format!(
            "Listener protocol '{}' does not support rules: rules are for the HTTP listeners of application load balancers",
            l.protocol
        )));
    }
    Ok(lb)
}

fn priority_in_use(priority: i64) -> ElbError {
    ElbError::PriorityInUse(format!("Priority '{priority}' is currently in use"))
}

fn write_rules(x: &mut Xml, rules: &[Rule]) {
    x.list("Rules", rules, |x, r| r.write(x));
}

pub(super) fn create_rule(elb: &Elb, s: &mut State, p: &Params) -> ElbResult<Xml> {
    let l = listener(s, p.required("ListenerArn")?)?.clone();
    let lb = lb_with_rules(s, &l)?;
    let priority = p
        .int("Priority", 1, 50000)?
        .ok_or_else(|| validation("A rule priority must be specified"))?;
    no_transforms(p)?;
    let conditions = conditions(p)?;
    let actions = actions(s, p.structs("Actions"), &lb, &l.protocol)?;
    let tags = tags(p)?;
    if s.rules
        .values()
        .any(|r| r.listener_arn == l.arn && r.priority == priority)
    {
        return Err(priority_in_use(priority));
    }
    let on_lb = s
        .rules
        .values()
        .filter(|r| {
            s.listeners
                .get(&r.listener_arn)
                .is_some_and(|x| x.load_balancer_arn == lb.arn)
        })
        .count();
    if on_lb >= MAX_RULES_PER_LB {
        return Err(ElbError::TooManyRules(format!(
            "The load balancer has the maximum of {MAX_RULES_PER_LB} rules (default rules not counted)"
        )));
    }
    // arn:…:listener-rule/app/<lb name>/<lb id>/<listener id>/<rule id>
    let tail = l.arn.split_once(":listener/").map_or("", |(_, t)| t);
    let arn = format!(
        "arn:aws:elasticloadbalancing:{}:{}:listener-rule/{tail}/{}",
        elb.aws.region,
        elb.aws.account_id,
        random_hex(8)
    );
    let rule = Rule {
        arn: arn.clone(),
        listener_arn: l.arn.clone(),
        priority,
        conditions,
        actions,
        tags,
    };
    s.save_rule(&rule)?;
    let mut x = Xml::new();
    write_rules(&mut x, std::slice::from_ref(&rule));
    s.rules.insert(arn, rule);
    s.refresh_health();
    Ok(x)
}

/// A rule or a default rule, as DescribeRules lists them.
enum Listed {
    Rule(Rule),
    Default(String, Vec<super::model::Action>),
}

pub(super) fn describe_rules(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("RuleArns");
    let found: Vec<Listed> = match (p.str("ListenerArn"), arns.is_empty()) {
        (Some(_), false) => {
            return Err(validation(
                "Rule ARNs and a listener ARN cannot be specified at the same time",
            ));
        }
        (None, true) => {
            return Err(validation(
                "You must specify either rule ARNs or a listener ARN",
            ));
        }
        (Some(arn), true) => {
            let l = listener(s, arn)?;
            let mut rs: Vec<Rule> = s
                .rules
                .values()
                .filter(|r| r.listener_arn == l.arn)
                .cloned()
                .collect();
            rs.sort_by_key(|r| r.priority);
            let mut out: Vec<Listed> = rs.into_iter().map(Listed::Rule).collect();
            out.push(Listed::Default(l.arn.clone(), l.default_actions.clone()));
            out
        }
        (None, false) => {
            let mut out = Vec::new();
            for a in &arns {
                if let Some(r) = s.rules.get(a) {
                    out.push(Listed::Rule(r.clone()));
                } else if let Some(l) = default_rule_of(s, a) {
                    out.push(Listed::Default(l.arn.clone(), l.default_actions.clone()));
                } else {
                    return Err(rule_not_found(a));
                }
            }
            out
        }
    };
    let (items, next) = page_of(found, p)?;
    let mut x = Xml::new();
    x.list("Rules", &items, |x, r| match r {
        Listed::Rule(r) => r.write(x),
        Listed::Default(l, a) => write_default(x, l, a),
    })
    .opt("NextMarker", next);
    Ok(x)
}

/// `page` for items that are not `Clone` (a page of indices, then the items).
fn page_of<T>(items: Vec<T>, p: &Params) -> ElbResult<(Vec<T>, Option<String>)> {
    let idx: Vec<usize> = (0..items.len()).collect();
    let (keep, next) = page(idx, p)?;
    let keep: std::collections::BTreeSet<usize> = keep.into_iter().collect();
    let items = items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, t)| t)
        .collect();
    Ok((items, next))
}

pub(super) fn modify_rule(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("RuleArn")?;
    no_transforms(p)?;
    let given_conditions = !p.structs("Conditions").is_empty();
    let given_actions = !p.structs("Actions").is_empty();
    if let Some(l) = default_rule_of(s, arn).cloned() {
        // The default rule is the listener's default actions; it has no conditions.
        if given_conditions {
            return Err(ElbError::OperationNotPermitted(
                "The default rule cannot have conditions".into(),
            ));
        }
        let mut l = l;
        if given_actions {
            let lb = lb(s, &l.load_balancer_arn)?.clone();
            l.default_actions = actions(s, p.structs("Actions"), &lb, &l.protocol)?;
            s.save_listener(&l)?;
        }
        let mut x = Xml::new();
        x.node("Rules", |x| {
            x.node("member", |x| write_default(x, &l.arn, &l.default_actions));
        });
        s.listeners.insert(l.arn.clone(), l);
        s.refresh_health();
        return Ok(x);
    }
    let mut rule = s
        .rules
        .get(arn)
        .cloned()
        .ok_or_else(|| rule_not_found(arn))?;
    let l = listener(s, &rule.listener_arn)?.clone();
    let lb = lb_with_rules(s, &l)?;
    if given_conditions {
        rule.conditions = conditions(p)?;
    }
    if given_actions {
        rule.actions = actions(s, p.structs("Actions"), &lb, &l.protocol)?;
    }
    s.save_rule(&rule)?;
    let mut x = Xml::new();
    write_rules(&mut x, std::slice::from_ref(&rule));
    s.rules.insert(rule.arn.clone(), rule);
    s.refresh_health();
    Ok(x)
}

pub(super) fn delete_rule(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arn = p.required("RuleArn")?.to_string();
    if default_rule_of(s, &arn).is_some() {
        return Err(ElbError::OperationNotPermitted(
            "Default rule cannot be deleted".into(),
        ));
    }
    if !s.rules.contains_key(&arn) {
        return Err(rule_not_found(&arn));
    }
    s.delete(&arn)?;
    s.rules.remove(&arn);
    s.refresh_health();
    Ok(Xml::new())
}

pub(super) fn set_rule_priorities(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let pairs = p.structs("RulePriorities");
    if pairs.is_empty() {
        return Err(validation("RulePriorities must not be empty"));
    }
    let mut want: Vec<(String, i64)> = Vec::new();
    for pair in &pairs {
        let arn = pair.required("RuleArn")?.to_string();
        let priority = pair
            .int("Priority", 1, 50000)?
            .ok_or_else(|| validation("A rule priority must be specified"))?;
        if default_rule_of(s, &arn).is_some() {
            return Err(ElbError::OperationNotPermitted(
                "The default rule's priority cannot be set".into(),
            ));
        }
        if !s.rules.contains_key(&arn) {
            return Err(rule_not_found(&arn));
        }
        want.push((arn, priority));
    }
    // Every listener's priorities after the change must be distinct.
    let mut after: std::collections::BTreeMap<&str, (String, i64)> = s
        .rules
        .values()
        .map(|r| (r.arn.as_str(), (r.listener_arn.clone(), r.priority)))
        .collect();
    for (arn, pr) in &want {
        if let Some(e) = after.get_mut(arn.as_str()) {
            e.1 = *pr;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (listener, priority) in after.values() {
        if !seen.insert((listener.clone(), *priority)) {
            return Err(priority_in_use(*priority));
        }
    }
    let mut changed = Vec::new();
    for (arn, priority) in want {
        let mut r = s.rules[&arn].clone();
        r.priority = priority;
        s.save_rule(&r)?;
        s.rules.insert(arn, r.clone());
        changed.push(r);
    }
    let mut x = Xml::new();
    write_rules(&mut x, &changed);
    Ok(x)
}

/// Refuses the members of a listener that are for HTTPS and TLS only (CreateListener and
/// ModifyListener): no certificates here, so no such listener. Ref: CreateListener,
/// `SslPolicy`, `Certificates`, `AlpnPolicy`, `MutualAuthentication` ("[HTTPS and TLS
/// listeners]", "[HTTPS listeners]").
pub(super) fn no_tls_members(p: &Params) -> ElbResult<()> {
    for (member, what) in [
        ("SslPolicy", "A security policy"),
        ("AlpnPolicy", "An ALPN policy"),
        ("Certificates", "Certificates"),
        ("MutualAuthentication", "Mutual authentication"),
    ] {
        let given = p.str(member).is_some()
            || !p.sub(member).is_empty()
            || !p.structs(member).is_empty()
            || !p.list(member).is_empty();
        if given {
            return Err(ElbError::UnsupportedProtocol(format!(
                "{what} ({member}) is only for HTTPS and TLS listeners, which minifargate does not serve (no ACM certificates here)"
            )));
        }
    }
    Ok(())
}

pub(super) fn modify_listener(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let mut l = listener(s, p.required("ListenerArn")?)?.clone();
    let lb = lb(s, &l.load_balancer_arn)?.clone();
    no_tls_members(p)?;
    if let Some(protocol) = p.str("Protocol") {
        match (lb.kind, protocol) {
            (LbType::Application, "HTTP") | (LbType::Network, "TCP") => {}
            (LbType::Application, "HTTPS") | (LbType::Network, "TLS") => {
                return Err(ElbError::UnsupportedProtocol(format!(
                    "Protocol '{protocol}' is not served by minifargate (no ACM certificates here)"
                )));
            }
            _ => {
                return Err(ElbError::UnsupportedProtocol(format!(
                    "Protocol '{protocol}' is not supported for load balancer type '{}'",
                    lb.kind.as_str()
                )));
            }
        }
        l.protocol = protocol.to_string();
    }
    if let Some(port) = p.int("Port", 1, 65535)? {
        let port = port as u16;
        if s.listeners
            .values()
            .any(|o| o.arn != l.arn && o.load_balancer_arn == lb.arn && o.port == port)
        {
            return Err(ElbError::DuplicateListener(
                "A listener already exists on this port for this load balancer".into(),
            ));
        }
        l.port = port;
    }
    let given = p.structs("DefaultActions");
    if !given.is_empty() {
        l.default_actions = actions(s, given, &lb, &l.protocol)?;
    }
    s.save_listener(&l)?;
    let mut x = Xml::new();
    x.list("Listeners", std::slice::from_ref(&l), |x, l| l.write(x));
    s.listeners.insert(l.arn.clone(), l);
    s.refresh_health();
    Ok(x)
}
