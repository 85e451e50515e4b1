//! Carrying out scaling policies: after each alarm evaluation, every alarm whose actions
//! for its state (`AlarmActions` in ALARM, `OKActions` in OK, `InsufficientDataActions`
//! in INSUFFICIENT_DATA) name a policy here runs it, when it enters the state and then
//! once a period while it stays there. Ref: CloudWatch User Guide, "Alarm actions": "Most
//! actions can be set for the transition into each of the 3 states. Except for Auto
//! Scaling actions, the actions happen only on state transitions, and are not performed
//! again if the condition persists". What a run does is decided by
//! [`decision::decide`] (capacity, bounds, cooldowns, `SuspendedState`, `DisableScaleIn`)
//! and applied here through UpdateService's own path (the service scheduler then starts or
//! stops tasks); "Scaling activities" gives the Description, Cause and StatusMessage texts.

use super::decision::{self, Clock, Decision};
use super::{Activity, AutoScaling, Millis, Policy, Saved, ScalableTarget, ScheduledAction, secs};
use crate::cloudwatch::CloudWatch;
use crate::cloudwatch::alarms::Alarm;
use crate::ecs::Ecs;
use serde_json::json;

/// The alarms due to run the policies their state's actions name at `now`, each with
/// those policies: once on entering the state, then once a period while it stays
/// (`fired`: when each alarm last ran them).
fn due_alarms(s: &Saved, alarms: Vec<Alarm>, now: Millis) -> Vec<(Alarm, Vec<Policy>)> {
    let mut out = Vec::new();
    for a in alarms {
        if !a.actions_enabled || a.actions_of_state().is_empty() {
            continue;
        }
        let policies: Vec<Policy> = s
            .policies
            .values()
            .filter(|p| a.actions_of_state().contains(&p.policy_arn))
            .cloned()
            .collect();
        if policies.is_empty() {
            continue;
        }
        let entered = (a.state_transitioned_timestamp * 1000.0) as Millis;
        let due = match s.fired.get(&a.alarm_name) {
            Some(last) => *last < entered || now - *last >= a.evaluation_period() * 1000,
            None => true,
        };
        if due {
            out.push((a, policies));
        }
    }
    out
}

/// The scheduled actions due at `now` (by key): the schedule's first run after the
/// action's last run (or put) is at or before `now`, within its end time.
fn due_scheduled(s: &Saved, now: Millis) -> Vec<(String, ScheduledAction)> {
    s.scheduled
        .iter()
        .filter_map(|(k, a)| {
            let since = *s.scheduled_since.get(k)?;
            let tz = super::schedule::time_zone(a.timezone.as_deref()).ok()?;
            let sched = super::schedule::Schedule::parse(&a.schedule).ok()?;
            let start = a.start_time.map(|t| (t * 1000.0) as Millis);
            let from = start.map_or(since, |st| since.max(st - 1));
            let next = sched.next_after(&tz, from, start.unwrap_or(since))?;
            let ended = a.end_time.is_some_and(|e| next > (e * 1000.0) as Millis);
            (next <= now && !ended).then(|| (k.clone(), a.clone()))
        })
        .collect()
}

impl AutoScaling {
    /// Whether [`Self::tick`] at `now` has anything to run (a scheduled action due, an
    /// alarm due to run a policy): in a cluster, the leader takes the control plane's
    /// write lock only then.
    pub fn due(&self, cw: &CloudWatch, now: Millis) -> bool {
        let alarms = cw.alarms.all();
        let s = self.lock();
        !due_scheduled(&s, now).is_empty() || !due_alarms(&s, alarms, now).is_empty()
    }

    /// Runs the policies the alarms name among the actions of their state (after an
    /// evaluation at `now`).
    pub fn run_alarm_actions(&self, ecs: &Ecs, cw: &CloudWatch, now: Millis) {
        let alarms = cw.alarms.all();
        let due = {
            let mut s = self.lock();
            let before = s.fired.len();
            s.fired
                .retain(|name, _| alarms.iter().any(|a| a.alarm_name == *name));
            let due = due_alarms(&s, alarms, now);
            for (a, _) in &due {
                s.fired.insert(a.alarm_name.clone(), now);
            }
            if (!due.is_empty() || s.fired.len() != before)
                && let Err(e) = self.save(&s)
            {
                tracing::warn!(error = %e, "Application Auto Scaling: saving when the alarms ran their policies failed");
            }
            due
        };
        for (a, policies) in due {
            for p in policies {
                self.run_policy(ecs, &p, &a, now);
            }
        }
    }

    fn run_policy(&self, ecs: &Ecs, p: &Policy, a: &Alarm, now: Millis) {
        let Some(target) = self.lock().targets.get(&p.resource_id).cloned() else {
            return;
        };
        let Some((cluster, service)) = p
            .resource_id
            .strip_prefix("service/")
            .and_then(|r| r.split_once('/'))
        else {
            return;
        };
        let Some(current) = super::ops::desired_count(ecs, cluster, service) else {
            return;
        };
        let last = self
            .lock()
            .last_scaled
            .get(&p.resource_id)
            .copied()
            .unwrap_or_default();
        let run = decision::Run {
            policy: p,
            alarm: a,
            target: &target,
            current,
            last,
        };
        let clock = Clock {
            now,
            period_secs: super::alarm_period(),
        };
        let cause = format!(
            "monitor alarm {} in state {} triggered policy {}",
            a.alarm_name, a.state_value, p.policy_name
        );
        match decision::decide(&run, clock) {
            Decision::Skip(why) => {
                tracing::info!(policy = %p.policy_name, alarm = %a.alarm_name, state = %a.state_value,
                    "Application Auto Scaling: {why}");
            }
            Decision::NotScaled(reason) => {
                let entered = (a.state_transitioned_timestamp * 1000.0) as Millis;
                self.not_scaled(&target, reason, cause, entered, now);
            }
            Decision::Held(dir, held) => {
                tracing::debug!(policy = %p.policy_name, alarm = %a.alarm_name, ?dir, ?held,
                    "Application Auto Scaling: the change is held back");
            }
            Decision::Scale {
                want,
                dir,
                starts_cooldown,
            } => {
                tracing::info!(resource = %p.resource_id, policy = %p.policy_name, alarm = %a.alarm_name, desired = want, "Application Auto Scaling: scaling activity");
                if self.set_desired(ecs, &target, want, cause, now) {
                    let mut s = self.lock();
                    let last = s.last_scaled.entry(target.resource_id.clone()).or_default();
                    *last = last.after(dir, starts_cooldown, current, now);
                    if let Err(e) = self.save(&s) {
                        tracing::warn!(error = %e, "Application Auto Scaling: saving the last scaling time failed");
                    }
                }
            }
        }
    }

    /// Sets the service's desiredCount through UpdateService's path and records the
    /// activity; true when it was set.
    fn set_desired(
        &self,
        ecs: &Ecs,
        target: &ScalableTarget,
        want: i64,
        cause: String,
        now: Millis,
    ) -> bool {
        let Some((cluster, service)) = target
            .resource_id
            .strip_prefix("service/")
            .and_then(|r| r.split_once('/'))
        else {
            return false;
        };
        let req = serde_json::from_value::<crate::ecs::services::UpdateServiceRequest>(
            json!({"cluster": cluster, "service": service, "desiredCount": want}),
        );
        let result = match req {
            Ok(req) => crate::ecs::services::update_service(ecs, req, false)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (status, message) = match &result {
            Ok(()) => (
                "Successful",
                format!(
                    "Successfully set desired count to {want}. Change successfully fulfilled by ecs."
                ),
            ),
            Err(e) => (
                "Failed",
                format!("Failed to set desired count to {want}: {e}"),
            ),
        };
        self.activity(
            target,
            format!("Setting desired count to {want}."),
            cause,
            status,
            message,
            now,
        );
        result.is_ok()
    }

    /// Records a not scaled activity as Application Auto Scaling shows it (User Guide,
    /// "Including not scaled activities": StatusCode Failed, "Attempting to scale due to
    /// alarm triggered", the reason), unless the newest activity of the same cause (alarm
    /// and policy) is this one, recorded since the alarm entered ALARM (`entered`): an
    /// alarm that stays in ALARM at the bound runs its policy every period, and one
    /// activity stands for the run of them (docs/scaling.md).
    fn not_scaled(
        &self,
        target: &ScalableTarget,
        reason: super::NotScaledReason,
        cause: String,
        entered: Millis,
        now: Millis,
    ) {
        let mut s = self.lock();
        let newest = s
            .activities
            .iter()
            .rev()
            .find(|a| a.resource_id == target.resource_id && a.cause == cause);
        if newest.is_some_and(|a| {
            a.not_scaled_reasons.as_deref() == Some(std::slice::from_ref(&reason))
                && a.start_time * 1000.0 >= entered as f64
        }) {
            return;
        }
        Self::record(
            &mut s,
            Activity {
                activity_id: crate::task::new_uuid().unwrap_or_default(),
                service_namespace: target.service_namespace.clone(),
                resource_id: target.resource_id.clone(),
                scalable_dimension: target.scalable_dimension.clone(),
                description: "Attempting to scale due to alarm triggered".into(),
                cause,
                start_time: secs(now),
                end_time: None,
                status_code: "Failed".into(),
                status_message: None,
                not_scaled_reasons: Some(vec![reason]),
            },
        );
        if let Err(e) = self.save(&s) {
            tracing::warn!(error = %e, "Application Auto Scaling: saving an activity failed");
        }
    }

    fn activity(
        &self,
        target: &ScalableTarget,
        description: String,
        cause: String,
        status: &str,
        message: String,
        now: Millis,
    ) {
        let id = crate::task::new_uuid().unwrap_or_default();
        let mut s = self.lock();
        Self::record(
            &mut s,
            Activity {
                activity_id: id,
                service_namespace: target.service_namespace.clone(),
                resource_id: target.resource_id.clone(),
                scalable_dimension: target.scalable_dimension.clone(),
                description,
                cause,
                start_time: secs(now),
                end_time: Some(secs(crate::ecs::now_ms())),
                status_code: status.into(),
                status_message: Some(message),
                not_scaled_reasons: None,
            },
        );
        if let Err(e) = self.save(&s) {
            tracing::warn!(error = %e, "Application Auto Scaling: saving an activity failed");
        }
    }

    /// Takes the scheduled actions due at `now` (each action's next run moves past it),
    /// each with its target as the action leaves it: min and max the action's, or None
    /// when the action changes nothing (`ScheduledScalingSuspended`: the guide's "Suspend
    /// and resume scaling", "scheduled actions ... are suspended"; or no target).
    fn take_due_scheduled(&self, now: Millis) -> Vec<(ScheduledAction, Option<ScalableTarget>)> {
        let due = due_scheduled(&self.lock(), now);
        let mut taken = Vec::new();
        for (key, a) in due {
            let mut s = self.lock();
            s.scheduled_since.insert(key, now);
            let target = s
                .targets
                .get_mut(&a.resource_id)
                .filter(|t| !t.suspended_state.scheduled_scaling_suspended)
                .map(|t| {
                    let act = a.scalable_target_action;
                    t.min_capacity = act.min_capacity.unwrap_or(t.min_capacity);
                    t.max_capacity = act.max_capacity.unwrap_or(t.max_capacity);
                    if t.min_capacity > t.max_capacity {
                        // The other bound was set apart: as AWS, the one the action names wins.
                        if act.min_capacity.is_some() {
                            t.max_capacity = t.min_capacity;
                        } else {
                            t.min_capacity = t.max_capacity;
                        }
                    }
                    t.clone()
                });
            if let Err(e) = self.save(&s) {
                tracing::warn!(error = %e, "Application Auto Scaling: saving a scheduled action's run failed");
            }
            taken.push((a, target));
        }
        taken
    }

    /// Runs the scheduled actions due at `now`: the target's min and max become the
    /// action's, and a desired count outside them is moved inside (Application Auto
    /// Scaling User Guide, "Scheduled scaling").
    pub fn run_scheduled(&self, ecs: &Ecs, now: Millis) {
        for (a, target) in self.take_due_scheduled(now) {
            let Some(target) = target else { continue };
            let (min, max) = (target.min_capacity, target.max_capacity);
            tracing::info!(resource = %a.resource_id, action = %a.scheduled_action_name, min, max, "Application Auto Scaling: scheduled action");
            self.activity(
                &target,
                format!("Setting min capacity to {min} and max capacity to {max}"),
                format!(
                    "scheduled action name {} was triggered",
                    a.scheduled_action_name
                ),
                "Successful",
                format!("Successfully set min capacity to {min} and max capacity to {max}"),
                now,
            );
            let Some((cluster, service)) = a
                .resource_id
                .strip_prefix("service/")
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            let Some(current) = super::ops::desired_count(ecs, cluster, service) else {
                continue;
            };
            if current < min {
                self.set_desired(
                    ecs,
                    &target,
                    min,
                    format!("minimum capacity was set to {min}"),
                    now,
                );
            } else if current > max {
                self.set_desired(
                    ecs,
                    &target,
                    max,
                    format!("maximum capacity was set to {max}"),
                    now,
                );
            }
        }
    }

    /// What runs after each alarm evaluation: the scheduled actions due, then the
    /// policies the alarms' actions name.
    pub fn tick(&self, ecs: &Ecs, cw: &CloudWatch, now: Millis) {
        self.run_scheduled(ecs, now);
        self.run_alarm_actions(ecs, cw, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaling::{ScalableTargetAction, SuspendedState};

    /// In a cluster's rows, when an alarm last ran its policies is the cluster's: the
    /// next leader (another AutoScaling over the same rows) does not run them again within
    /// the alarm's period, and does once it has passed.
    #[test]
    fn a_next_leader_does_not_run_an_alarm_s_policies_again() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs::scratch(dir.path());
        let first = AutoScaling::open_shared(dir.path(), "us-east-1", "000000000000").unwrap();
        let next = AutoScaling::open_shared(dir.path(), "us-east-1", "000000000000").unwrap();
        let cw = CloudWatch {
            metrics: std::sync::Arc::new(crate::cloudwatch::metrics::Metrics::new()),
            alarms: crate::cloudwatch::Alarms::open(None, "us-east-1", "000000000000").unwrap(),
        };
        let t0: Millis = 1_800_000_000_000;
        let arn = "arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:p";
        let policy: Policy = serde_json::from_value(json!({
            "PolicyARN": arn, "PolicyName": "p", "ServiceNamespace": "ecs",
            "ResourceId": "service/default/web", "ScalableDimension": super::super::ECS_DIMENSION,
            "PolicyType": "StepScaling", "Alarms": [], "CreationTime": 0.0}))
        .unwrap();
        {
            let mut s = first.lock();
            s.policies.insert("k".into(), policy);
            first.save(&s).unwrap();
        }
        cw.alarms
            .put(
                serde_json::from_value(json!({
                    "AlarmName": "high", "Namespace": "Shop", "MetricName": "Errors",
                    "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1,
                    "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold",
                    "AlarmActions": [arn]}))
                .unwrap(),
                t0,
            )
            .unwrap();
        cw.alarms
            .set_state("high", "ALARM", "test".into(), None, t0)
            .unwrap();
        assert!(first.due(&cw, t0 + 1_000) && next.due(&cw, t0 + 1_000));
        first.run_alarm_actions(&ecs, &cw, t0 + 1_000);
        assert!(!first.due(&cw, t0 + 2_000));
        assert!(!next.due(&cw, t0 + 2_000), "the run is in the rows");
        assert!(next.due(&cw, t0 + 61_000), "once a period while in ALARM");
    }

    /// A due scheduled action sets its target's bounds, unless ScheduledScalingSuspended;
    /// suspended, the run is skipped (not kept for later), and dynamic suspensions do not
    /// hold it.
    #[test]
    fn scheduled_scaling_suspended_holds_back_a_due_action() {
        let t0: Millis = 1_800_000_000_000;
        for (suspended, applied) in [
            (SuspendedState::default(), true),
            (
                SuspendedState {
                    scheduled_scaling_suspended: true,
                    ..Default::default()
                },
                false,
            ),
            (
                SuspendedState {
                    dynamic_scaling_in_suspended: true,
                    dynamic_scaling_out_suspended: true,
                    ..Default::default()
                },
                true,
            ),
        ] {
            let aas = AutoScaling::open(None, "us-east-1", "000000000000").unwrap();
            {
                let mut s = aas.lock();
                let target = ScalableTarget {
                    service_namespace: "ecs".into(),
                    resource_id: "service/default/web".into(),
                    scalable_dimension: "ecs:service:DesiredCount".into(),
                    min_capacity: 1,
                    max_capacity: 2,
                    role_arn: String::new(),
                    creation_time: 0.0,
                    suspended_state: suspended,
                    scalable_target_arn: String::new(),
                };
                s.targets.insert(target.resource_id.clone(), target);
                let action = ScheduledAction {
                    scheduled_action_name: "morning".into(),
                    scheduled_action_arn: String::new(),
                    service_namespace: "ecs".into(),
                    schedule: "rate(5 minutes)".into(),
                    timezone: None,
                    resource_id: "service/default/web".into(),
                    scalable_dimension: "ecs:service:DesiredCount".into(),
                    start_time: None,
                    end_time: None,
                    scalable_target_action: ScalableTargetAction {
                        min_capacity: Some(3),
                        max_capacity: Some(4),
                    },
                    creation_time: 0.0,
                };
                s.scheduled_since.insert("k".into(), t0);
                s.scheduled.insert("k".into(), action);
            }
            // Not due a minute later; due at five.
            assert!(aas.take_due_scheduled(t0 + 60_000).is_empty());
            let taken = aas.take_due_scheduled(t0 + 300_000);
            assert_eq!(taken.len(), 1, "{suspended:?}");
            assert_eq!(taken[0].1.is_some(), applied, "{suspended:?}");
            let t = aas.lock().targets["service/default/web"].clone();
            let bounds = if applied { (3, 4) } else { (1, 2) };
            assert_eq!((t.min_capacity, t.max_capacity), bounds, "{suspended:?}");
            assert!(aas.take_due_scheduled(t0 + 300_001).is_empty());
        }
    }
}
