//! Carrying out scaling policies: after each alarm evaluation, every alarm whose actions
//! for its state (`AlarmActions` in ALARM, `OKActions` in OK, `InsufficientDataActions`
//! in INSUFFICIENT_DATA) name a policy here runs it, when it enters the state and then
//! once a period while it stays there. Ref: CloudWatch User Guide, "Alarm actions": "Most
//! actions can be set for the transition into each of the 3 states. Except for Auto
//! Scaling actions, the actions happen only on state transitions, and are not performed
//! again if the condition persists". The new
//! capacity ([`target_tracking_capacity`], [`step_capacity`]) is a pure function of the
//! policy, the alarm's datapoints and the current desiredCount; it is clamped to the
//! target's min and max, held back by the cooldowns and `SuspendedState`, and applied
//! through UpdateService's own path (the service scheduler then starts or stops tasks).
//!
//! Ref: Application Auto Scaling User Guide, "Target tracking scaling policies" (scale
//! out proportionally, scale in conservatively; cooldowns, ECS's default 300 s), "Step
//! scaling policies" (step bounds relative to the alarm threshold; adjustment types);
//! "Scaling activities" (the Description, Cause and StatusMessage texts).

use super::{Activity, AutoScaling, Millis, Policy, ScalableTarget, ScheduledAction, secs};
use crate::cloudwatch::CloudWatch;
use crate::cloudwatch::alarms::Alarm;
use crate::ecs::Ecs;
use serde_json::json;

/// Which way a policy run moves the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
}

/// Target tracking: the capacity that brings `metric` back to `target` with `current`
/// tasks (the metric taken to scale inversely with capacity), rounded up; `high` says
/// which alarm fired (a scale-out never lowers, a scale-in never raises).
pub fn target_tracking_capacity(current: i64, metric: f64, target: f64, high: bool) -> i64 {
    let want = ((current.max(1) as f64) * metric / target).ceil() as i64;
    if high {
        want.max(current)
    } else {
        want.min(current)
    }
}

/// Why a policy that computed capacity `want` leaves `current` as it is: the bound
/// that held it (the guide's codes), or the algorithm's own answer.
pub fn not_scaled_reason(
    target: &ScalableTarget,
    current: i64,
    want: i64,
) -> super::NotScaledReason {
    let reason = |code: &str| super::NotScaledReason {
        code: code.into(),
        max_capacity: None,
        min_capacity: None,
        current_capacity: None,
    };
    if want > current {
        super::NotScaledReason {
            max_capacity: Some(target.max_capacity),
            ..reason("AlreadyAtMaxCapacity")
        }
    } else if want < current {
        super::NotScaledReason {
            min_capacity: Some(target.min_capacity),
            ..reason("AlreadyAtMinCapacity")
        }
    } else {
        super::NotScaledReason {
            current_capacity: Some(current),
            ..reason("AlreadyAtDesiredCapacity")
        }
    }
}

/// Step scaling: the step whose bounds (relative to `threshold`) hold `value`, applied to
/// `current` as `AdjustmentType` says; None when no step holds it.
pub fn step_capacity(
    cfg: &super::StepScaling,
    current: i64,
    value: f64,
    threshold: f64,
) -> Option<i64> {
    let d = value - threshold;
    // Ref: above the threshold the lower bound is inclusive and the upper exclusive;
    // below it, the other way round.
    let step = cfg.step_adjustments.iter().find(|s| {
        let lo = s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY);
        let hi = s.metric_interval_upper_bound.unwrap_or(f64::INFINITY);
        if d >= 0.0 {
            lo <= d && d < hi
        } else {
            lo < d && d <= hi
        }
    })?;
    let adj = step.scaling_adjustment;
    Some(match cfg.adjustment_type.as_deref() {
        Some("ExactCapacity") => adj,
        Some("PercentChangeInCapacity") => {
            // Ref: a change between 0 and 1 is 1, between -1 and 0 is -1, else rounded
            // toward zero; MinAdjustmentMagnitude is its least size.
            let raw = current as f64 * adj as f64 / 100.0;
            let mut change = if raw > 0.0 && raw < 1.0 {
                1
            } else if raw < 0.0 && raw > -1.0 {
                -1
            } else {
                raw.trunc() as i64
            };
            if let Some(m) = cfg.min_adjustment_magnitude
                && change != 0
                && change.abs() < m
            {
                change = m * change.signum();
            }
            current + change
        }
        _ => current + adj,
    })
}

/// The alarm's datapoints, newest first, from its `StateReasonData`.
fn datapoints(a: &Alarm) -> Vec<f64> {
    a.state_reason_data
        .as_deref()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| {
            v["recentDatapoints"]
                .as_array()
                .map(|p| p.iter().filter_map(|x| x.as_f64()).collect())
        })
        .unwrap_or_default()
}

impl AutoScaling {
    /// Runs the policies the alarms name among the actions of their state (after an
    /// evaluation at `now`).
    pub fn run_alarm_actions(&self, ecs: &Ecs, cw: &CloudWatch, now: Millis) {
        let firing: Vec<Alarm> = cw
            .alarms
            .all()
            .into_iter()
            .filter(|a| a.actions_enabled && !a.actions_of_state().is_empty())
            .collect();
        let mut fired = self.fired.lock().unwrap_or_else(|p| p.into_inner());
        fired.retain(|name, _| firing.iter().any(|a| a.alarm_name == *name));
        for a in firing {
            let policies: Vec<Policy> = {
                let s = self.lock();
                s.policies
                    .values()
                    .filter(|p| a.actions_of_state().contains(&p.policy_arn))
                    .cloned()
                    .collect()
            };
            if policies.is_empty() {
                continue;
            }
            // Once on entering the state, then once a period while it stays.
            let entered = (a.state_transitioned_timestamp * 1000.0) as Millis;
            let due = match fired.get(&a.alarm_name) {
                Some(last) => *last < entered || now - *last >= a.evaluation_period() * 1000,
                None => true,
            };
            if !due {
                continue;
            }
            fired.insert(a.alarm_name.clone(), now);
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
        let points = datapoints(a);
        let Some(latest) = points.first().copied() else {
            // INSUFFICIENT_DATA without data: no value to scale on (said in the log;
            // docs/scaling.md).
            tracing::info!(policy = %p.policy_name, alarm = %a.alarm_name, state = %a.state_value,
                "Application Auto Scaling: the alarm has no datapoint; the policy is not run");
            return;
        };
        let last = self
            .lock()
            .last_scaled
            .get(&p.resource_id)
            .copied()
            .unwrap_or_default();
        let (want, out_cooldown, in_cooldown) =
            if let Some(tt) = &p.target_tracking_scaling_policy_configuration {
                let high = a.alarm_name.contains("-AlarmHigh-");
                if !high && tt.disable_scale_in == Some(true) {
                    return;
                }
                (
                    target_tracking_capacity(current, latest, tt.target_value, high),
                    super::scaled_secs(tt.scale_out_cooldown.unwrap_or(300)),
                    super::scaled_secs(tt.scale_in_cooldown.unwrap_or(300)),
                )
            } else if let Some(step) = &p.step_scaling_policy_configuration {
                let value = match step.metric_aggregation_type.as_deref() {
                    Some("Minimum") => points.iter().copied().fold(f64::INFINITY, f64::min),
                    Some("Maximum") => points.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    _ => points.iter().sum::<f64>() / points.len() as f64,
                };
                let Some(want) = step_capacity(step, current, value, a.threshold) else {
                    return;
                };
                let c = super::scaled_secs(step.cooldown.unwrap_or(300));
                (want, c, c)
            } else {
                return;
            };
        let cause = format!(
            "monitor alarm {} in state {} triggered policy {}",
            a.alarm_name, a.state_value, p.policy_name
        );
        let clamped = want.clamp(target.min_capacity, target.max_capacity);
        if clamped == current {
            let entered = (a.state_transitioned_timestamp * 1000.0) as Millis;
            let reason = not_scaled_reason(&target, current, want);
            self.not_scaled(&target, reason, cause, entered, now);
            return;
        }
        let want = clamped;
        let dir = if want > current {
            Direction::Out
        } else {
            Direction::In
        };
        let s = target.suspended_state;
        let (suspended, since, cooldown) = match dir {
            Direction::Out => (s.dynamic_scaling_out_suspended, last.out, out_cooldown),
            Direction::In => (s.dynamic_scaling_in_suspended, last.r#in, in_cooldown),
        };
        if suspended || since.is_some_and(|t| now - t < cooldown * 1000) {
            return;
        }
        tracing::info!(resource = %p.resource_id, policy = %p.policy_name, alarm = %a.alarm_name, desired = want, "Application Auto Scaling: scaling activity");
        self.scale(ecs, &target, want, dir, cause, now);
    }

    fn scale(
        &self,
        ecs: &Ecs,
        target: &ScalableTarget,
        want: i64,
        dir: Direction,
        cause: String,
        now: Millis,
    ) {
        if self.set_desired(ecs, target, want, cause, now) {
            let mut s = self.lock();
            let last = s.last_scaled.entry(target.resource_id.clone()).or_default();
            match dir {
                Direction::Out => last.out = Some(now),
                Direction::In => last.r#in = Some(now),
            }
            if let Err(e) = self.save(&s) {
                tracing::warn!(error = %e, "Application Auto Scaling: saving the last scaling time failed");
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

    /// Runs the scheduled actions due at `now`: the target's min and max become the
    /// action's, and a desired count outside them is moved inside (Application Auto
    /// Scaling User Guide, "Scheduled scaling").
    pub fn run_scheduled(&self, ecs: &Ecs, now: Millis) {
        let due: Vec<(String, ScheduledAction)> = {
            let s = self.lock();
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
        };
        for (key, a) in due {
            let target = {
                let mut s = self.lock();
                s.scheduled_since.insert(key, now);
                let Some(t) = s.targets.get_mut(&a.resource_id) else {
                    continue;
                };
                if t.suspended_state.scheduled_scaling_suspended {
                    let _ = self.save(&s);
                    continue;
                }
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
                let t = t.clone();
                if let Err(e) = self.save(&s) {
                    tracing::warn!(error = %e, "Application Auto Scaling: saving a scheduled action's run failed");
                }
                t
            };
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
    use crate::autoscaling::{StepAdjustment, StepScaling};

    /// The reason of a run that leaves the count as it is, with the capacity AWS names.
    #[test]
    fn a_run_held_by_a_bound_says_which() {
        let target = ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: "service/default/web".into(),
            scalable_dimension: "ecs:service:DesiredCount".into(),
            min_capacity: 1,
            max_capacity: 4,
            role_arn: String::new(),
            creation_time: 0.0,
            suspended_state: Default::default(),
            scalable_target_arn: String::new(),
        };
        let r = not_scaled_reason(&target, 4, 6);
        assert_eq!(
            (r.code.as_str(), r.max_capacity, r.min_capacity),
            ("AlreadyAtMaxCapacity", Some(4), None)
        );
        let r = not_scaled_reason(&target, 1, 0);
        assert_eq!(
            (r.code.as_str(), r.min_capacity),
            ("AlreadyAtMinCapacity", Some(1))
        );
        let r = not_scaled_reason(&target, 2, 2);
        assert_eq!(
            (r.code.as_str(), r.current_capacity),
            ("AlreadyAtDesiredCapacity", Some(2))
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"Code": "AlreadyAtDesiredCapacity", "CurrentCapacity": 2})
        );
    }

    #[test]
    fn target_tracking_scales_out_in_proportion_and_in_no_lower_than_needed() {
        // 1 task at 100 % for a 50 % target: 2 tasks.
        assert_eq!(target_tracking_capacity(1, 100.0, 50.0, true), 2);
        assert_eq!(target_tracking_capacity(3, 70.0, 50.0, true), 5);
        // A high alarm never scales in; a low one never out.
        assert_eq!(target_tracking_capacity(4, 40.0, 50.0, true), 4);
        assert_eq!(target_tracking_capacity(4, 20.0, 50.0, false), 2);
        assert_eq!(target_tracking_capacity(4, 0.0, 50.0, false), 0);
        assert_eq!(target_tracking_capacity(2, 60.0, 50.0, false), 2);
    }

    #[test]
    fn steps_apply_by_the_breach_and_the_adjustment_type() {
        let cfg = |t: &str, mag| StepScaling {
            adjustment_type: Some(t.into()),
            step_adjustments: vec![
                StepAdjustment {
                    metric_interval_lower_bound: Some(0.0),
                    metric_interval_upper_bound: Some(20.0),
                    scaling_adjustment: 1,
                },
                StepAdjustment {
                    metric_interval_lower_bound: Some(20.0),
                    metric_interval_upper_bound: None,
                    scaling_adjustment: 50,
                },
            ],
            min_adjustment_magnitude: mag,
            cooldown: None,
            metric_aggregation_type: None,
        };
        let c = cfg("ChangeInCapacity", None);
        assert_eq!(step_capacity(&c, 2, 60.0, 50.0), Some(3));
        assert_eq!(step_capacity(&c, 2, 70.0, 50.0), Some(52));
        assert_eq!(step_capacity(&c, 2, 40.0, 50.0), None);
        // 50 % of 3 is 1.5: rounded toward zero; of 1 is 0.5: 1.
        let p = cfg("PercentChangeInCapacity", None);
        assert_eq!(step_capacity(&p, 3, 80.0, 50.0), Some(4));
        assert_eq!(step_capacity(&p, 1, 80.0, 50.0), Some(2));
        let p = cfg("PercentChangeInCapacity", Some(3));
        assert_eq!(step_capacity(&p, 3, 80.0, 50.0), Some(6));
        assert_eq!(
            step_capacity(&cfg("ExactCapacity", None), 7, 55.0, 50.0),
            Some(1)
        );
    }
}
