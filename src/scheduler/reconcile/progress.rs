//! The second decision of a pass: once the tasks' plan is carried out ([`Done`]), what the
//! service's deployments become ([`progress`]): an older deployment with no task left goes
//! INACTIVE, failures count towards the circuit breaker, which (or a deployment alarm)
//! fails the PRIMARY deployment and may roll it back; a blue/green deployment moves through
//! its lifecycle stages; the PRIMARY completes once steady (after its bake time), and the
//! service says it reached a steady state. Pure like [`super::reconcile`]: the rows it
//! returns are saved, the trip and the completion carried out, by `super::super`.

use super::Snapshot;
use crate::ecs::deployments::{self, Tripped};
use crate::store::{
    BlueGreenRecord, DeploymentRow, DeploymentStatus, LifecycleStage, RolloutState,
    ServiceDeploymentStatus,
};
use std::collections::HashMap;

/// The service's deployments and what their rules read, as the pass finds them after the
/// tasks' plan is carried out.
#[derive(Debug, Clone, Default)]
pub struct Deployments {
    /// The service's deployments (PRIMARY and ACTIVE ones).
    pub rows: Vec<DeploymentRow>,
    /// Per deployment, its tasks that never reached RUNNING (seen by an earlier serve too).
    pub never_ran: HashMap<String, i64>,
    /// `deploymentCircuitBreaker`, when enabled: its `rollback`.
    pub breaker: Option<bool>,
    /// `alarms`, when enabled with names and CloudWatch is there.
    pub alarms: Option<Alarms>,
    /// The missing alarms the last event named (the event is written when they change).
    pub missing_said: Vec<String>,
    /// The service said it reached a steady state and has not changed since.
    pub steady_said: bool,
    /// Blue/green: `bakeTimeInMinutes` in this box's milliseconds.
    pub bake_time_ms: i64,
    /// Blue/green: the production traffic's steps in thousandths, and the wait after each
    /// (`deployments::production_steps`).
    pub steps: Vec<i64>,
    pub step_wait_ms: i64,
}

/// The deployment alarms as CloudWatch has them now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alarms {
    pub rollback: bool,
    /// Those that went into ALARM since the PRIMARY deployment was created.
    pub fired: Vec<String>,
    /// Those CloudWatch does not know.
    pub missing: Vec<String>,
    /// The longest Period × EvaluationPeriods among them, in milliseconds.
    pub window_ms: i64,
}

/// What carrying out the tasks' plan did.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// Tasks whose stop was asked (those beginning to drain included).
    pub stopped: Vec<String>,
    pub started: Vec<String>,
    /// Failures this pass by deployment: the gone tasks that failed, the UNHEALTHY tasks
    /// stopped, the launches that failed.
    pub failed: HashMap<String, i64>,
    /// Blue/green: the listener rules are where the PRIMARY deployment's stage says.
    pub routed: bool,
    /// Blue/green: the plan's `green_ready`.
    pub green_ready: bool,
}

/// A deployment the circuit breaker or its alarms failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub deployment: String,
    pub rollback: bool,
    pub why: Tripped,
}

/// What the deployments become.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// The deployments after this pass (a row that differs from the one read is saved).
    pub rows: Vec<DeploymentRow>,
    /// Failed now (`deployments::trip` carries it out): nothing below applies this pass.
    pub trip: Option<Trip>,
    /// This deployment COMPLETED (`deployments::completed` finishes the one it rolled
    /// back).
    pub completed: Option<String>,
    /// Service events, in order.
    pub events: Vec<String>,
    pub missing_said: Vec<String>,
    pub steady_said: bool,
    /// The service reached a steady state this pass (its throttling warning is reset).
    pub steady_now: bool,
}

/// What the deployments become after the pass carried out `done`.
pub fn progress(s: &Snapshot, d: &Deployments, done: &Done) -> Progress {
    let mut p = Progress {
        rows: d.rows.clone(),
        missing_said: d.missing_said.clone(),
        steady_said: d.steady_said,
        ..Progress::default()
    };
    let olds_left = record(s, d, done, &mut p.rows);
    p.trip = trip(s, d, &mut p);
    if p.trip.is_some() {
        return p;
    }
    let changed = !done.stopped.is_empty() || !done.started.is_empty();
    let bake_ms = d.alarms.as_ref().map_or(0, |a| a.window_ms);
    if s.blue_green {
        advance_blue_green(s, d, done, bake_ms.max(d.bake_time_ms), &mut p.rows);
    }
    let steady = !changed && !olds_left && settled(s, done);
    complete(s, steady, bake_ms, &mut p);
    if changed {
        p.steady_said = false;
    } else if steady && !p.steady_said {
        p.steady_said = true;
        p.steady_now = true;
        p.events.push(format!(
            "(service {}) has reached a steady state.",
            s.service
        ));
    }
    p
}

/// Whether the PRIMARY deployment runs the desired count, healthy, and every task of the
/// service runs and stays.
fn settled(s: &Snapshot, done: &Done) -> bool {
    let active = |i: usize| s.tasks[i].active && !done.stopped.contains(&s.tasks[i].id);
    let running = (0..s.tasks.len())
        .filter(|&i| {
            let t = &s.tasks[i];
            active(i)
                && t.running
                && !super::unhealthy_now(s, t)
                && !t.on_draining_instance
                && t.deployment.as_deref() == Some(s.primary.id.as_str())
        })
        .count() as i64;
    running == s.desired && (0..s.tasks.len()).all(|i| active(i) && s.tasks[i].running)
}

/// An older deployment is done once none of its tasks is left (a blue/green rollback then
/// ROLLBACK_SUCCESSFUL); each deployment's failures of this pass count, and `failedTasks`
/// shows at least its tasks that never ran. Returns whether an older deployment still has
/// tasks.
fn record(s: &Snapshot, d: &Deployments, done: &Done, rows: &mut [DeploymentRow]) -> bool {
    let now = s.now_ms;
    let primary = rows
        .iter()
        .find(|r| r.status == DeploymentStatus::Primary)
        .cloned();
    let mut olds_left = false;
    for r in rows.iter_mut() {
        let before = r.clone();
        if r.status == DeploymentStatus::Active {
            if s.tasks
                .iter()
                .any(|t| t.deployment.as_deref() == Some(r.id.as_str()))
            {
                olds_left = true;
            } else {
                r.status = DeploymentStatus::Inactive;
                if let Some(p) = &primary {
                    blue_green_rolled_back(r, p, now);
                }
            }
        }
        // The circuit breaker's count: the failures seen now. `failedTasks` shows it, and
        // at least the tasks that never reached RUNNING.
        if let Some(&seen) = done.failed.get(&r.id) {
            r.sd.failure_count += seen;
        }
        let never_ran = d.never_ran.get(&r.id).copied().unwrap_or(0);
        r.failed_tasks = deployments::failed_tasks(r.sd.failure_count, never_ran);
        if *r != before {
            r.updated_at_ms = now;
        }
    }
    olds_left
}

/// A blue/green rollback `d` whose green tasks are all gone, with the blue deployment
/// `primary` PRIMARY and COMPLETED: ROLLBACK_SUCCESSFUL.
fn blue_green_rolled_back(d: &mut DeploymentRow, primary: &DeploymentRow, now: i64) {
    let ours = d.sd.status == Some(ServiceDeploymentStatus::RollbackInProgress)
        && d.sd.rollback.as_ref().is_some_and(|r| r.by == primary.id)
        && primary.rollout_state == RolloutState::Completed;
    if ours {
        d.sd.status = Some(ServiceDeploymentStatus::RollbackSuccessful);
        d.sd.finished_at_ms = Some(now);
    }
}

/// The circuit breaker, then the deployment alarms: whether the PRIMARY deployment fails
/// now. The breaker trips at its threshold of failed tasks (the `failedTasks` the
/// deployment shows); an alarm fails the deployment once it went into ALARM, while the
/// deployment rolls out and for its bake time after. Ref: developerguide/
/// deployment-alarm-failure.html. A missing alarm is said when the set changes.
fn trip(s: &Snapshot, d: &Deployments, p: &mut Progress) -> Option<Trip> {
    if let Some(rollback) = d.breaker
        && let Some(r) = p
            .rows
            .iter()
            .find(|r| deployments::breaker_trips(r, s.desired))
    {
        return Some(Trip {
            deployment: r.id.clone(),
            rollback,
            why: Tripped::CircuitBreaker,
        });
    }
    let a = d.alarms.as_ref()?;
    let r = p
        .rows
        .iter()
        .find(|r| r.status == DeploymentStatus::Primary)
        .filter(|r| r.rollout_state == RolloutState::InProgress)?;
    if a.missing != p.missing_said {
        if !a.missing.is_empty() {
            p.events.push(format!(
                "(service {}) deployment alarms not found in CloudWatch, not watched: {}.",
                s.service,
                a.missing.join(", ")
            ));
        }
        p.missing_said = a.missing.clone();
    }
    (!a.fired.is_empty()).then(|| Trip {
        deployment: r.id.clone(),
        rollback: a.rollback,
        why: Tripped::Alarms(a.fired.clone()),
    })
}

/// The PRIMARY deployment of a blue/green (LINEAR, CANARY) service moves on to its next
/// lifecycle stage when it is due (`deployments::advance`), once the listener rules are
/// where its stage says (`done.routed`).
fn advance_blue_green(
    s: &Snapshot,
    d: &Deployments,
    done: &Done,
    bake_ms: i64,
    rows: &mut [DeploymentRow],
) {
    let Some(p) = rows
        .iter_mut()
        .find(|r| r.status == DeploymentStatus::Primary)
    else {
        return;
    };
    if p.rollout_state != RolloutState::InProgress || !done.routed {
        return;
    }
    let now = s.now_ms;
    let rec = p.sd.blue_green.unwrap_or(BlueGreenRecord {
        stage: LifecycleStage::PreScaleUp,
        stage_at_ms: now,
        alternate: false,
        production_permille: 0,
        step_at_ms: now,
    });
    let (ready, steps) = (done.green_ready, &d.steps);
    if let Some(next) = deployments::advance(rec, now, ready, bake_ms, steps, d.step_wait_ms) {
        p.sd.blue_green = Some(next);
        p.updated_at_ms = now;
    }
}

/// The steady PRIMARY deployment completes: a blue/green one at the end of CLEAN_UP (its
/// bake time is a stage before), another after its bake time with deployment alarms (the
/// longest Period × EvaluationPeriods of its alarms, from its first steady state: ECS
/// "computes this time period based on the alarm configuration"; this host's reading of
/// it).
fn complete(s: &Snapshot, steady: bool, bake_ms: i64, p: &mut Progress) {
    let now = s.now_ms;
    let Some(r) = p
        .rows
        .iter_mut()
        .find(|r| r.status == DeploymentStatus::Primary)
    else {
        return;
    };
    let bg_done = !s.blue_green
        || r.sd
            .blue_green
            .is_none_or(|b| b.stage == LifecycleStage::CleanUp);
    if !steady || r.rollout_state != RolloutState::InProgress || !bg_done {
        return;
    }
    if !s.blue_green && bake_ms > 0 {
        let since = *r.sd.steady_at_ms.get_or_insert_with(|| {
            r.updated_at_ms = now;
            now
        });
        if now.saturating_sub(since) < bake_ms {
            return;
        }
    }
    r.rollout_state = RolloutState::Completed;
    r.rollout_state_reason = format!("ECS deployment {} completed.", r.id);
    r.sd.finished_at_ms = Some(now);
    r.updated_at_ms = now;
    p.completed = Some(r.id.clone());
    p.events.push(format!(
        "(service {}) (deployment {}) deployment completed.",
        s.service, r.id
    ));
}
