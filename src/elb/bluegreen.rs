//! What ECS's blue/green deployments ask of the load balancers: the check of a service's
//! `advancedConfiguration` (its listener rules exist and forward to its two target
//! groups) and the traffic shift itself, the weights of a listener rule's forward action
//! moved from one target group to the other in one change (`crate::scheduler`).
//! Ref: ECS Developer Guide, "Application Load Balancer resources for blue/green, linear,
//! and canary deployments" and "Migrating from a CodeDeploy blue/green to an Amazon ECS
//! blue/green service deployment".

use super::model::{Action, WeightedGroup};
use super::{Elb, ElbError, ElbResult, State, rules};

/// A service's load balancer with `advancedConfiguration`: its two target groups and its
/// listener rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// `targetGroupArn`.
    pub primary: String,
    /// `advancedConfiguration.alternateTargetGroupArn`.
    pub alternate: String,
    /// `advancedConfiguration.productionListenerRule`.
    pub production: String,
    /// `advancedConfiguration.testListenerRule`.
    pub test: Option<String>,
}

impl State {
    /// The actions of rule `arn`, a listener's rule or its default rule.
    fn actions_of_rule(&self, arn: &str) -> Option<&[Action]> {
        if let Some(r) = self.rules.get(arn) {
            return Some(&r.actions);
        }
        self.listeners
            .values()
            .find(|l| rules::default_rule_arn(&l.arn) == arn)
            .map(|l| l.default_actions.as_slice())
    }
}

/// Checks `p` against the load balancers stored in `store` (what serve's ELB writes
/// through): the two target groups exist and differ; each rule exists, has forward
/// actions only (ECS: "Blue/green deployments are not supported when using Application
/// Load Balancer listeners that have multiple action types configured with non-forward
/// actions") and forwards to one of the two groups ("If you are using test listeners, one
/// target group must be linked to production listener rules and the other target group
/// must be linked to test listener rules": which one changes with each deployment, as the
/// roles alternate); without a test rule the production rule forwards to both ("If you are
/// not using test listeners, both target groups … must be associated with production
/// listener rules"). The error says which member is wrong and why.
pub fn check_pair(store: &crate::store::Store, p: &Pair) -> Result<(), String> {
    let mut s = State::default();
    s.load(store)
        .map_err(|e| format!("the load balancers could not be read: {e:#}"))?;
    for (member, g) in [
        ("targetGroupArn", &p.primary),
        (
            "advancedConfiguration.alternateTargetGroupArn",
            &p.alternate,
        ),
    ] {
        if !s.groups.contains_key(g) {
            return Err(format!("{member} {g}: the target group does not exist"));
        }
    }
    if p.primary == p.alternate {
        return Err(format!(
            "advancedConfiguration.alternateTargetGroupArn {}: must be another target group \
             than targetGroupArn (blue and green each have their own)",
            p.alternate
        ));
    }
    // `all`: the rule forwards to each of `groups`, else to one of them at least.
    let check = |member: &str, rule: &str, all: bool| -> Result<(), String> {
        let Some(actions) = s.actions_of_rule(rule) else {
            return Err(format!(
                "advancedConfiguration.{member} {rule}: the listener rule does not exist \
                 (an Application Load Balancer listener rule's ARN, or a listener's default \
                 rule's)"
            ));
        };
        if let Some(a) = actions.iter().find(|a| a.kind != "forward") {
            return Err(format!(
                "advancedConfiguration.{member} {rule}: the rule has a {} action: blue/green \
                 deployments need rules whose actions are forward actions only",
                a.kind
            ));
        }
        let groups: Vec<&str> = actions.iter().flat_map(Action::groups).collect();
        let pair = [p.primary.as_str(), p.alternate.as_str()];
        if all {
            if let Some(g) = pair.iter().find(|g| !groups.contains(g)) {
                return Err(format!(
                    "advancedConfiguration.{member} {rule}: the rule does not forward to \
                     target group {g} (without a test listener rule, the production rule \
                     forwards to both target groups)"
                ));
            }
        } else if !pair.iter().any(|g| groups.contains(g)) {
            return Err(format!(
                "advancedConfiguration.{member} {rule}: the rule forwards to neither {} nor \
                 {}",
                p.primary, p.alternate
            ));
        }
        Ok(())
    };
    match &p.test {
        Some(t) => {
            check("productionListenerRule", &p.production, false)?;
            check("testListenerRule", t, false)
        }
        None => check("productionListenerRule", &p.production, true),
    }
}

/// The forward action's target groups as a weighted list (a single `TargetGroupArn` is
/// one group of weight 1).
fn weighted(a: &Action) -> Vec<WeightedGroup> {
    match (&a.forward, &a.target_group_arn) {
        (Some(list), _) => list.clone(),
        (None, Some(g)) => vec![WeightedGroup {
            arn: g.clone(),
            weight: Some(1),
        }],
        (None, None) => Vec::new(),
    }
}

/// Forward action `a` with `permille` thousandths of its traffic to `to` and the rest to
/// `from`: both weighted when both are listed or the share is partial (100 and 0 for all
/// of it, else the thousandths: ELB's weights go up to 999), else the one listed renamed.
/// Other groups are left as they are. Whether it changed.
fn shift_action(a: &mut Action, from: &str, to: &str, permille: i64) -> bool {
    let mut list = weighted(a);
    let has = |l: &[WeightedGroup], g: &str| l.iter().any(|w| w.arn == g);
    if from == to || (!has(&list, from) && !has(&list, to)) {
        return false;
    }
    let before = list.clone();
    let (to_w, from_w) = match permille {
        p if p >= 1000 => (100, 0),
        p if p <= 0 => (0, 100),
        p => (p, 1000 - p),
    };
    let both = (has(&list, from) && has(&list, to)) || (0 < permille && permille < 1000);
    if both {
        for (g, w) in [(to, to_w), (from, from_w)] {
            match list.iter_mut().find(|x| x.arn == g) {
                Some(x) => x.weight = Some(w),
                None => list.push(WeightedGroup {
                    arn: g.to_string(),
                    weight: Some(w),
                }),
            }
        }
    } else {
        let (old, new) = if permille >= 1000 {
            (from, to)
        } else {
            (to, from)
        };
        for x in list.iter_mut().filter(|x| x.arn == old) {
            x.arn = new.to_string();
        }
    }
    if list == before {
        return false;
    }
    if a.forward.is_none() && list.len() == 1 {
        a.target_group_arn = Some(list[0].arn.clone());
    } else {
        // ELB: with a ForwardConfig of more than one group, TargetGroupArn is not set.
        a.target_group_arn = None;
        a.forward = Some(list);
    }
    true
}

/// What ECS's service scheduler asks of the load balancers for blue/green deployments.
impl Elb {
    /// Points rule `rule` (a listener rule or a listener's default rule) `permille`
    /// thousandths at target group `to`, the rest at `from`, in one change the data plane
    /// sees at once (new requests go by the new weights; those in flight finish where
    /// they are). Whether it changed; `RuleNotFound` for a rule that is gone.
    pub fn shift_traffic(
        &self,
        rule: &str,
        from: &str,
        to: &str,
        permille: i64,
    ) -> ElbResult<bool> {
        let changed = self.write(|s| {
            if let Some(mut r) = s.rules.get(rule).cloned() {
                let mut changed = false;
                for a in r.actions.iter_mut().filter(|a| a.kind == "forward") {
                    changed |= shift_action(a, from, to, permille);
                }
                if changed {
                    s.save_rule(&r)?;
                    s.rules.insert(r.arn.clone(), r);
                    s.refresh_health();
                }
                return Ok(changed);
            }
            let Some(mut l) = s
                .listeners
                .values()
                .find(|l| rules::default_rule_arn(&l.arn) == rule)
                .cloned()
            else {
                return Err(ElbError::RuleNotFound(format!(
                    "One or more rules not found ('{rule}')"
                )));
            };
            let mut changed = false;
            for a in l.default_actions.iter_mut().filter(|a| a.kind == "forward") {
                changed |= shift_action(a, from, to, permille);
            }
            if changed {
                s.save_listener(&l)?;
                s.listeners.insert(l.arn.clone(), l);
                s.refresh_health();
            }
            Ok(changed)
        })?;
        if changed {
            self.changed();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(groups: &[(&str, Option<i64>)]) -> Action {
        Action {
            kind: "forward".into(),
            order: None,
            target_group_arn: None,
            forward: Some(
                groups
                    .iter()
                    .map(|(g, w)| WeightedGroup {
                        arn: g.to_string(),
                        weight: *w,
                    })
                    .collect(),
            ),
            stickiness: None,
            fixed_response: None,
            redirect: None,
        }
    }

    fn weights(a: &Action) -> Vec<(String, Option<i64>)> {
        weighted(a).into_iter().map(|w| (w.arn, w.weight)).collect()
    }

    #[test]
    fn a_shift_moves_the_weights_of_both_groups_at_once() {
        let mut a = forward(&[("blue", Some(100)), ("green", Some(0))]);
        assert!(shift_action(&mut a, "blue", "green", 1000));
        assert_eq!(
            weights(&a),
            [("blue".into(), Some(0)), ("green".into(), Some(100))]
        );
        assert!(
            !shift_action(&mut a, "blue", "green", 1000),
            "already there"
        );
        assert!(shift_action(&mut a, "green", "blue", 1000));
        assert_eq!(
            weights(&a),
            [("blue".into(), Some(100)), ("green".into(), Some(0))]
        );
        assert!(shift_action(&mut a, "blue", "green", 100));
        assert_eq!(
            weights(&a),
            [("blue".into(), Some(900)), ("green".into(), Some(100))]
        );
        assert!(shift_action(&mut a, "blue", "green", 0), "all back");
        assert_eq!(
            weights(&a),
            [("blue".into(), Some(100)), ("green".into(), Some(0))]
        );
    }

    #[test]
    fn a_rule_forwarding_to_one_group_is_pointed_at_the_other() {
        let mut a = Action {
            target_group_arn: Some("blue".into()),
            forward: None,
            ..forward(&[])
        };
        assert!(shift_action(&mut a, "blue", "green", 1000));
        assert_eq!(a.target_group_arn.as_deref(), Some("green"));
        assert_eq!(a.forward, None);
        assert!(
            !shift_action(&mut a, "x", "y", 1000),
            "neither group: untouched"
        );
        assert!(
            !shift_action(&mut a, "green", "green", 1000),
            "one group: nothing to do"
        );
        // Part of the traffic: both groups, weighted.
        assert!(shift_action(&mut a, "green", "blue", 200));
        assert_eq!(a.target_group_arn, None);
        assert_eq!(
            weights(&a),
            [("green".into(), Some(800)), ("blue".into(), Some(200))]
        );
    }
}
