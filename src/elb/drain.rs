//! Deregistered targets draining, and the TCP connections ELB cuts: a deregistered
//! target's at the end of its delay (`deregistration_delay.connection_termination.enabled`),
//! an unhealthy one's at once (`target_health_state.unhealthy.connection_termination.enabled`);
//! the data plane's TCP relay ends through its target's [`super::balance::Load`].

use super::model::{Target, TargetGroup};
use super::{Draining, State, ops};
use std::time::Instant;

impl State {
    /// Targets `left` were deregistered from group `g` (DeregisterTargets, or serve found
    /// them gone from the store: `follow_registrations`): those of a group in use drain for
    /// its `deregistration_delay.timeout_seconds` (no new request or connection, those on
    /// them finish, DescribeTargetHealth lists them `draining`).
    /// Ref: elasticloadbalancing/latest/application/edit-target-group-attributes.html
    /// ("Deregistration delay").
    /// A TCP group's connections to a deregistered target are cut when its delay ends
    /// with `deregistration_delay.connection_termination.enabled` (the model's
    /// TargetGroupAttribute: "Indicates whether the load balancer terminates connections at
    /// the end of the deregistration timeout"; false by default: they last until either
    /// side closes them).
    pub(super) fn drain(&mut self, g: &TargetGroup, left: Vec<Target>, in_use: bool) {
        let delay: u64 = g
            .attributes
            .get("deregistration_delay.timeout_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let until = Instant::now() + std::time::Duration::from_secs(delay);
        let terminate = !g.protocol.starts_with("HTTP")
            && g.attributes
                .get("deregistration_delay.connection_termination.enabled")
                .is_some_and(|v| v == "true");
        let load_of = |s: &Self, t: &Target| s.loads.get(&g.arn).and_then(|m| m.get(t)).cloned();
        if terminate {
            for t in &left {
                if let Some(l) = load_of(self, t) {
                    l.cut_at(until);
                }
            }
        }
        if !in_use || delay == 0 {
            return;
        }
        for t in left {
            self.draining
                .retain(|d| !(d.group == g.arn && ops::same(&d.target, &t)));
            tracing::info!(group = %g.arn, target = %t.id, port = t.port, delay, terminate, "target draining");
            self.draining.push(Draining {
                group: g.arn.clone(),
                load: load_of(self, &t),
                target: t,
                until,
            });
        }
    }

    /// Target `t` registered in group `group` again (RegisterTargets, or found in the
    /// store again): no longer draining, its connections no longer to be cut.
    pub(super) fn stop_draining(&mut self, group: &str, t: &Target) {
        self.draining.retain(|d| {
            let again = d.group == group && ops::same(&d.target, t);
            if let (true, Some(l)) = (again, &d.load) {
                l.keep();
            }
            !again
        });
    }

    /// Target `t` of group `group` turned unhealthy: a TCP group's connections to it are
    /// cut unless `target_health_state.unhealthy.connection_termination.enabled` is false
    /// (the model's TargetGroupAttribute: "Indicates whether the load balancer terminates
    /// connections to unhealthy targets"; true by default).
    pub(super) fn cut_unhealthy(&self, group: &str, t: &Target) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let off = g
            .attributes
            .get("target_health_state.unhealthy.connection_termination.enabled")
            .is_some_and(|v| v == "false");
        if g.protocol.starts_with("HTTP") || off {
            return;
        }
        if let Some(l) = self.loads.get(group).and_then(|m| m.get(t)) {
            tracing::info!(group, target = %t.id, port = t.port, "cutting the connections to an unhealthy target");
            l.cut_at(Instant::now());
        }
    }
}
