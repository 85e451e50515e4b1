//! What one run of a scaling policy decides: a pure function of the policy, the alarm that
//! ran it, the scalable target, the service's current desired count, the target's last
//! scaling times and the clock. [`super::scaling`] only carries the decision out.
//!
//! Ref: Application Auto Scaling User Guide, "Target tracking scaling policies" (scale out
//! proportionally, scale in conservatively), "Step scaling policies" (step bounds relative
//! to the alarm threshold; adjustment types), "Define cooldown periods" and the model's
//! `Cooldown` / `ScaleOutCooldown` / `ScaleInCooldown` (ECS's default 300 s): "While the
//! scale-out cooldown period is in effect, the capacity added by the initiating scale-out
//! activity is calculated as part of the desired capacity for the next scale-out activity"
//! (a larger scale-out goes through, counting what was added); "scale-in activities are
//! blocked until the cooldown period has expired. However, if another alarm triggers a
//! scale-out activity during the cooldown period after a scale-in activity, Application
//! Auto Scaling scales out the target immediately. In this case, the cooldown period for
//! the scale-in activity stops"; "Suspend and resume scaling" (`SuspendedState`); the
//! model's `DisableScaleIn` ("the target tracking scaling policy won't remove capacity").

use super::{LastScaled, Millis, NotScaledReason, Policy, ScalableTarget, StepScaling};
use crate::cloudwatch::alarms::Alarm;

/// Which way a policy run moves the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
}

/// The clock a decision is taken at: the time, and the box's metric period (cooldowns
/// scale with it, [`super::scaled_secs`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Millis,
    pub period_secs: i64,
}

impl Clock {
    /// A cooldown AWS gives in seconds (for its one-minute period), in milliseconds here.
    fn cooldown_ms(&self, aws_secs: i64) -> Millis {
        super::scaled_to(aws_secs, self.period_secs) * 1000
    }
}

/// Why a run that would change the count does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// `DynamicScalingOutSuspended` / `DynamicScalingInSuspended`.
    Suspended,
    /// Within the cooldown of the last change the same way, until this time.
    Cooldown { until: Millis },
}

/// What a policy run does.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing: the reason goes to serve's log.
    Skip(&'static str),
    /// A not scaled activity: the computed count is the current one or past a bound.
    NotScaled(NotScaledReason),
    Held(Direction, Held),
    /// Set the desired count to `want`; `starts_cooldown` is false for a scale-out within
    /// the scale-out cooldown (counted from the scale-out that started it).
    Scale {
        want: i64,
        dir: Direction,
        starts_cooldown: bool,
    },
}

/// One run: the policy, the alarm whose state ran it, and what the target is now.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub policy: &'a Policy,
    pub alarm: &'a Alarm,
    pub target: &'a ScalableTarget,
    pub current: i64,
    pub last: LastScaled,
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
pub fn not_scaled_reason(target: &ScalableTarget, current: i64, want: i64) -> NotScaledReason {
    let reason = |code: &str| NotScaledReason {
        code: code.into(),
        max_capacity: None,
        min_capacity: None,
        current_capacity: None,
    };
    if want > current {
        NotScaledReason {
            max_capacity: Some(target.max_capacity),
            ..reason("AlreadyAtMaxCapacity")
        }
    } else if want < current {
        NotScaledReason {
            min_capacity: Some(target.min_capacity),
            ..reason("AlreadyAtMinCapacity")
        }
    } else {
        NotScaledReason {
            current_capacity: Some(current),
            ..reason("AlreadyAtDesiredCapacity")
        }
    }
}

/// Step scaling: the step whose bounds (relative to `threshold`) hold `value`, applied to
/// `current` as `AdjustmentType` says; None when no step holds it.
pub fn step_capacity(cfg: &StepScaling, current: i64, value: f64, threshold: f64) -> Option<i64> {
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

/// The alarm's evaluated datapoints, newest first, from its `StateReasonData`.
pub fn datapoints(a: &Alarm) -> Vec<f64> {
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

/// The policy's computation: the capacity it wants from a base capacity, and its
/// scale-out and scale-in cooldowns (AWS seconds).
struct Computed<'a> {
    want_from: Box<dyn Fn(i64) -> Option<i64> + 'a>,
    out_cooldown: i64,
    in_cooldown: i64,
}

fn computation<'a>(run: &Run<'a>, points: &'a [f64]) -> Result<Computed<'a>, &'static str> {
    let p = run.policy;
    if let Some(tt) = &p.target_tracking_scaling_policy_configuration {
        let high = run.alarm.alarm_name.contains("-AlarmHigh-");
        if !high && tt.disable_scale_in == Some(true) {
            return Err("DisableScaleIn: the target tracking policy does not scale in");
        }
        let (latest, target) = (points[0], tt.target_value);
        return Ok(Computed {
            want_from: Box::new(move |base| {
                Some(target_tracking_capacity(base, latest, target, high))
            }),
            out_cooldown: tt.scale_out_cooldown.unwrap_or(300),
            in_cooldown: tt.scale_in_cooldown.unwrap_or(300),
        });
    }
    let Some(step) = &p.step_scaling_policy_configuration else {
        return Err("the policy has no configuration");
    };
    let value = match step.metric_aggregation_type.as_deref() {
        Some("Minimum") => points.iter().copied().fold(f64::INFINITY, f64::min),
        Some("Maximum") => points.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => points.iter().sum::<f64>() / points.len() as f64,
    };
    let threshold = run.alarm.threshold;
    let cooldown = step.cooldown.unwrap_or(300);
    Ok(Computed {
        want_from: Box::new(move |base| step_capacity(step, base, value, threshold)),
        out_cooldown: cooldown,
        in_cooldown: cooldown,
    })
}

/// Decides one run of a policy at `clock`.
pub fn decide(run: &Run, clock: Clock) -> Decision {
    let points = datapoints(run.alarm);
    if points.is_empty() {
        // INSUFFICIENT_DATA without data: no value to scale on (docs/scaling.md).
        return Decision::Skip("the alarm has no datapoint; the policy is not run");
    }
    let c = match computation(run, &points) {
        Ok(c) => c,
        Err(why) => return Decision::Skip(why),
    };
    let (t, current) = (run.target, run.current);
    let Some(want) = (c.want_from)(current) else {
        return Decision::Skip("no step adjustment holds the alarm's value");
    };
    let clamped = want.clamp(t.min_capacity, t.max_capacity);
    if clamped == current {
        return Decision::NotScaled(not_scaled_reason(t, current, want));
    }
    let s = t.suspended_state;
    if clamped > current {
        if s.dynamic_scaling_out_suspended {
            return Decision::Held(Direction::Out, Held::Suspended);
        }
        let until = run
            .last
            .out
            .map(|at| at + clock.cooldown_ms(c.out_cooldown));
        match until {
            Some(until) if clock.now < until => {
                // Within the scale-out cooldown: the capacity the scale-out that started it
                // added counts; only a larger scale-out goes through.
                let base = run.last.out_from.unwrap_or(current);
                let larger = (c.want_from)(base)
                    .map(|w| w.clamp(t.min_capacity, t.max_capacity))
                    .filter(|w| *w > current);
                match larger {
                    Some(want) => Decision::Scale {
                        want,
                        dir: Direction::Out,
                        starts_cooldown: false,
                    },
                    None => Decision::Held(Direction::Out, Held::Cooldown { until }),
                }
            }
            _ => Decision::Scale {
                want: clamped,
                dir: Direction::Out,
                starts_cooldown: true,
            },
        }
    } else {
        if s.dynamic_scaling_in_suspended {
            return Decision::Held(Direction::In, Held::Suspended);
        }
        match run
            .last
            .r#in
            .map(|at| at + clock.cooldown_ms(c.in_cooldown))
        {
            Some(until) if clock.now < until => {
                Decision::Held(Direction::In, Held::Cooldown { until })
            }
            _ => Decision::Scale {
                want: clamped,
                dir: Direction::In,
                starts_cooldown: true,
            },
        }
    }
}

impl LastScaled {
    /// The target's last scaling times after a change from `from` made at `now`: a
    /// scale-out that starts a cooldown starts it from `from`; any scale-out ends the
    /// scale-in cooldown (the guide: it "stops and doesn't complete").
    pub fn after(self, dir: Direction, starts_cooldown: bool, from: i64, now: Millis) -> Self {
        match dir {
            Direction::Out if starts_cooldown => LastScaled {
                out: Some(now),
                out_from: Some(from),
                r#in: None,
            },
            Direction::Out => LastScaled { r#in: None, ..self },
            Direction::In => LastScaled {
                r#in: Some(now),
                ..self
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaling::{StepAdjustment, SuspendedState};
    use serde_json::{Value, json};

    const MIN: Millis = 60_000;

    fn target(min: i64, max: i64, suspended: SuspendedState) -> ScalableTarget {
        ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: "service/default/web".into(),
            scalable_dimension: "ecs:service:DesiredCount".into(),
            min_capacity: min,
            max_capacity: max,
            role_arn: String::new(),
            creation_time: 0.0,
            suspended_state: suspended,
            scalable_target_arn: String::new(),
        }
    }

    /// An alarm in ALARM whose evaluated datapoints are `points` (newest first).
    fn alarm(name: &str, threshold: f64, points: &[f64]) -> Alarm {
        let data = json!({"version": "1.0", "recentDatapoints": points}).to_string();
        serde_json::from_value(json!({
            "AlarmName": name, "AlarmArn": "arn", "AlarmConfigurationUpdatedTimestamp": 0.0,
            "ActionsEnabled": true, "OKActions": [], "AlarmActions": [],
            "InsufficientDataActions": [], "StateValue": "ALARM", "StateReason": "r",
            "StateReasonData": data, "StateUpdatedTimestamp": 0.0,
            "StateTransitionedTimestamp": 0.0, "Dimensions": [], "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1, "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "missing"}))
        .unwrap()
    }

    fn policy(config: (&str, Value)) -> Policy {
        let mut p = json!({"PolicyARN": "arn", "PolicyName": "p", "ServiceNamespace": "ecs",
            "ResourceId": "service/default/web", "ScalableDimension": "ecs:service:DesiredCount",
            "PolicyType": "StepScaling", "Alarms": [], "CreationTime": 0.0});
        p[config.0] = config.1;
        serde_json::from_value(p).unwrap()
    }

    /// A step policy: +`up` above the threshold, -1 below; a 300 s cooldown.
    fn step_policy(up: i64) -> Policy {
        policy((
            "StepScalingPolicyConfiguration",
            json!({"AdjustmentType": "ChangeInCapacity", "Cooldown": 300, "StepAdjustments": [
                {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": up},
                {"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1}]}),
        ))
    }

    fn tracking(extra: Value) -> Policy {
        let mut c = json!({"TargetValue": 50.0, "ScaleOutCooldown": 300, "ScaleInCooldown": 300,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        policy(("TargetTrackingScalingPolicyConfiguration", c))
    }

    fn at(now: Millis) -> Clock {
        Clock {
            now,
            period_secs: 60,
        }
    }

    fn run<'a>(
        p: &'a Policy,
        a: &'a Alarm,
        t: &'a ScalableTarget,
        current: i64,
        last: LastScaled,
    ) -> Run<'a> {
        Run {
            policy: p,
            alarm: a,
            target: t,
            current,
            last,
        }
    }

    fn cooling(dir: Direction, until: Millis) -> Decision {
        Decision::Held(dir, Held::Cooldown { until })
    }

    fn scale(want: i64, dir: Direction, starts_cooldown: bool) -> Decision {
        Decision::Scale {
            want,
            dir,
            starts_cooldown,
        }
    }

    /// The guide's example: +2 starts the scale-out cooldown; within it a step of +3
    /// adds 1 (the 2 added count), a step of +2 again adds nothing; after it, +2 adds 2.
    #[test]
    fn a_scale_out_cooldown_counts_what_its_scale_out_added() {
        let t = target(1, 20, SuspendedState::default());
        let high = alarm("high", 50.0, &[70.0]);
        let (two, three) = (step_policy(2), step_policy(3));
        let t0 = 1_800_000_000_000;
        let first = decide(&run(&two, &high, &t, 4, LastScaled::default()), at(t0));
        assert_eq!(first, scale(6, Direction::Out, true));
        let last = LastScaled::default().after(Direction::Out, true, 4, t0);
        assert_eq!(
            decide(&run(&three, &high, &t, 6, last), at(t0 + MIN)),
            scale(7, Direction::Out, false)
        );
        // The cooldown still counts from the first scale-out, from 4.
        let last = last.after(Direction::Out, false, 6, t0 + MIN);
        assert_eq!(
            decide(&run(&two, &high, &t, 7, last), at(t0 + 2 * MIN)),
            cooling(Direction::Out, t0 + 5 * MIN)
        );
        assert_eq!(
            decide(&run(&two, &high, &t, 7, last), at(t0 + 5 * MIN)),
            scale(9, Direction::Out, true)
        );
        // Target tracking the same way: 2 tasks at 100 % of a 50 % target made 4; at
        // 150 % within the cooldown, 2 × 3 = 6; at 100 % still, nothing more.
        let tt = tracking(json!({}));
        let last = LastScaled::default().after(Direction::Out, true, 2, t0);
        let busier = alarm("x-AlarmHigh-1", 50.0, &[150.0]);
        assert_eq!(
            decide(&run(&tt, &busier, &t, 4, last), at(t0 + MIN)),
            scale(6, Direction::Out, false)
        );
        let same = alarm("x-AlarmHigh-1", 50.0, &[100.0]);
        assert!(matches!(
            decide(&run(&tt, &same, &t, 4, last), at(t0 + MIN)),
            Decision::Held(Direction::Out, Held::Cooldown { .. })
        ));
    }

    /// A scale-in waits out the scale-in cooldown; a scale-out during it goes at once and
    /// ends it, so the next scale-in is not held by the first.
    #[test]
    fn a_scale_in_cooldown_holds_scale_in_only_until_a_scale_out() {
        let t = target(1, 20, SuspendedState::default());
        let (low, high) = (alarm("low", 50.0, &[10.0]), alarm("high", 50.0, &[90.0]));
        let p = step_policy(1);
        let t0 = 1_800_000_000_000;
        let last = LastScaled::default().after(Direction::In, true, 5, t0);
        assert_eq!(
            decide(&run(&p, &low, &t, 4, last), at(t0 + 4 * MIN)),
            cooling(Direction::In, t0 + 5 * MIN)
        );
        assert_eq!(
            decide(&run(&p, &low, &t, 4, last), at(t0 + 5 * MIN)),
            scale(3, Direction::In, true)
        );
        assert_eq!(
            decide(&run(&p, &high, &t, 4, last), at(t0 + MIN)),
            scale(5, Direction::Out, true)
        );
        let last = last.after(Direction::Out, true, 4, t0 + MIN);
        assert_eq!(
            decide(&run(&p, &low, &t, 5, last), at(t0 + 2 * MIN)),
            scale(4, Direction::In, true)
        );
        // Target tracking's own cooldowns: ScaleInCooldown 0 holds nothing.
        let tt = tracking(json!({"ScaleInCooldown": 0}));
        let low = alarm("x-AlarmLow-1", 45.0, &[10.0]);
        let last = LastScaled::default().after(Direction::In, true, 5, t0);
        assert_eq!(
            decide(&run(&tt, &low, &t, 4, last), at(t0 + 1)),
            scale(1, Direction::In, true)
        );
    }

    /// Cooldowns scale with the box's metric period: 300 s are 25 s at 5 s.
    #[test]
    fn cooldowns_last_in_proportion_to_the_metric_period() {
        let t = target(1, 20, SuspendedState::default());
        let low = alarm("low", 50.0, &[10.0]);
        let p = step_policy(1);
        let t0 = 1_800_000_000_000;
        let last = LastScaled::default().after(Direction::In, true, 5, t0);
        let fast = |now| Clock {
            now,
            period_secs: 5,
        };
        assert!(matches!(
            decide(&run(&p, &low, &t, 4, last), fast(t0 + 24_999)),
            Decision::Held(_, Held::Cooldown { .. })
        ));
        assert_eq!(
            decide(&run(&p, &low, &t, 4, last), fast(t0 + 25_000)),
            scale(3, Direction::In, true)
        );
    }

    /// SuspendedState holds back the way it names and only that way; scheduled scaling
    /// suspended leaves dynamic scaling alone.
    #[test]
    fn suspended_dynamic_scaling_holds_its_direction() {
        let (low, high) = (alarm("low", 50.0, &[10.0]), alarm("high", 50.0, &[90.0]));
        let p = step_policy(1);
        let none = LastScaled::default();
        let (out, r#in) = (Direction::Out, Direction::In);
        let suspended = |o: bool, i: bool, sched: bool| SuspendedState {
            dynamic_scaling_out_suspended: o,
            dynamic_scaling_in_suspended: i,
            scheduled_scaling_suspended: sched,
        };
        for (state, up, down) in [
            (
                suspended(true, false, false),
                Decision::Held(out, Held::Suspended),
                scale(3, r#in, true),
            ),
            (
                suspended(false, true, false),
                scale(5, out, true),
                Decision::Held(r#in, Held::Suspended),
            ),
            (
                suspended(false, false, true),
                scale(5, out, true),
                scale(3, r#in, true),
            ),
        ] {
            let t = target(1, 20, state);
            assert_eq!(decide(&run(&p, &high, &t, 4, none), at(0)), up, "{state:?}");
            assert_eq!(
                decide(&run(&p, &low, &t, 4, none), at(0)),
                down,
                "{state:?}"
            );
        }
    }

    /// DisableScaleIn: the policy's low alarm never lowers the count; its high one raises it.
    #[test]
    fn disable_scale_in_keeps_a_target_tracking_policy_from_scaling_in() {
        let t = target(1, 20, SuspendedState::default());
        let low = alarm(
            "TargetTracking-service/default/web-AlarmLow-1",
            45.0,
            &[5.0],
        );
        let high = alarm(
            "TargetTracking-service/default/web-AlarmHigh-1",
            50.0,
            &[100.0],
        );
        let none = LastScaled::default();
        let on = tracking(json!({"DisableScaleIn": true}));
        assert!(matches!(
            decide(&run(&on, &low, &t, 4, none), at(0)),
            Decision::Skip(_)
        ));
        assert_eq!(
            decide(&run(&on, &high, &t, 4, none), at(0)),
            scale(8, Direction::Out, true)
        );
        let off = tracking(json!({"DisableScaleIn": false}));
        assert_eq!(
            decide(&run(&off, &low, &t, 4, none), at(0)),
            scale(1, Direction::In, true)
        );
    }

    /// A run without datapoints, or past a bound, says so rather than scaling.
    #[test]
    fn no_data_and_bounds_are_not_scaled() {
        let t = target(1, 4, SuspendedState::default());
        let p = step_policy(2);
        let none = LastScaled::default();
        assert!(matches!(
            decide(&run(&p, &alarm("empty", 50.0, &[]), &t, 2, none), at(0)),
            Decision::Skip(_)
        ));
        let Decision::NotScaled(r) =
            decide(&run(&p, &alarm("high", 50.0, &[90.0]), &t, 4, none), at(0))
        else {
            panic!("scaled past the maximum");
        };
        assert_eq!(r.code, "AlreadyAtMaxCapacity");
        // Clamped to the bound, not refused: 3 + 2 is 4.
        assert_eq!(
            decide(&run(&p, &alarm("high", 50.0, &[90.0]), &t, 3, none), at(0)),
            scale(4, Direction::Out, true)
        );
    }
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
