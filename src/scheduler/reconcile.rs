//! What the service scheduler decides for one service in one pass, as pure functions:
//! [`reconcile`] takes a [`Snapshot`] (the service's spec and deployments as they bear on
//! this pass, its tasks with their health, draining and protection, their load balancers'
//! target states, the throttle and the tasks gone since the last pass, where blue/green
//! traffic goes, now) and returns a [`Plan`] (events, listener-rule moves, tasks to stop
//! with ECS's reasons, tasks to start, ...); [`balance`] decides load balancing before it,
//! [`progress::progress`] the deployments' states after the plan is carried out. `super`
//! reads and does. No store, no clock, no I/O here: each rule is a table test (the rule ->
//! test list is at the top of `reconcile/tests.rs`).
//!
//! Here: retiring a deleted (DRAINING) service, throttling (`throttle.rs`), replacing
//! tasks UNHEALTHY in their containers' or their target groups' health checks (after the
//! health check grace period), the rolling update within minimumHealthyPercent /
//! maximumPercent (scale in, launch, stopping the older deployments' tasks, tasks on
//! DRAINING instances), task scale-in protection, blue/green's hold on blue, its green
//! readiness and its listener rules (`traffic.rs`). Load-balancer registration and
//! draining: `balance.rs`; the circuit breaker, deployment alarms, blue/green stages, bake
//! time, completion and the steady state: `progress.rs`.

mod balance;
pub mod progress;
mod throttle;
mod traffic;

use crate::store::{LifecycleStage, RolloutState};
pub use balance::{LbTask, LbView, balance};
use std::collections::HashMap;
use std::time::Instant;
pub use throttle::{Gone, THROTTLE_WARN_AT, Throttle, UNABLE_EVENT};
pub use traffic::{Routing, RuleMove};

/// One service as one pass of the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The service's name (the events name it).
    pub service: String,
    /// DeleteService made it DRAINING: every task stops, and it goes INACTIVE once none is
    /// left.
    pub deleted: bool,
    pub desired: i64,
    /// `deploymentConfiguration.maximumPercent` and `minimumHealthyPercent` applied to
    /// `desired` (`DeploymentConfiguration::bounds`).
    pub max_total: i64,
    pub min_healthy: i64,
    /// `healthCheckGracePeriodSeconds`.
    pub grace_s: Option<i64>,
    pub primary: Primary,
    /// Blue/green (LINEAR, CANARY): whether the service deploys so, and where its traffic
    /// goes (`None`: no rule to point, as the service is deleted or settled or this host
    /// has no load balancers).
    pub blue_green: bool,
    pub routing: Option<Routing>,
    /// Whether the service has load balancers this host applies (serve's ELB and
    /// `loadBalancers` naming a target group and a port).
    pub load_balanced: bool,
    /// The service's recent failures and launch backoff (ECS's service throttling), as the
    /// last pass left them.
    pub throttle: Throttle,
    /// The tasks seen at the last pass that are gone from `tasks` now.
    pub gone: Vec<Gone>,
    pub now: Instant,
    pub now_ms: i64,
    /// The service's tasks that are not STOPPED.
    pub tasks: Vec<TaskState>,
}

/// The service's PRIMARY deployment.
#[derive(Debug, Clone)]
pub struct Primary {
    pub id: String,
    pub rollout_state: RolloutState,
    /// Its blue/green lifecycle stage, once it has one.
    pub stage: Option<LifecycleStage>,
}

/// A task of the service that is not STOPPED.
#[derive(Debug, Clone, Default)]
pub struct TaskState {
    pub id: String,
    /// `startedBy`: the deployment that started it.
    pub deployment: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    /// lastStatus RUNNING.
    pub running: bool,
    /// desiredStatus is not STOPPED, and no stop of it is under way (asked, or draining
    /// from its target groups).
    pub active: bool,
    /// RUNNING, with an essential container UNHEALTHY (the grace period not applied yet).
    pub containers_unhealthy: bool,
    /// On a DRAINING container instance: replaced like an older deployment's task.
    pub on_draining_instance: bool,
    /// UpdateTaskProtection's `expirationDate` (ms).
    pub protected_until: Option<i64>,
    /// Registered in its target groups by the scheduler: each group of its deployment's
    /// side and the health of its target there; `None` while not registered.
    pub targets: Option<Vec<TargetState>>,
}

/// A task's target in one target group.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetState {
    pub group: String,
    /// The `containerPort` of the service's `loadBalancers` entry.
    pub port: u16,
    /// The target's `TargetHealth.State`; `None` when the group does not know it.
    pub state: Option<&'static str>,
    /// `TargetHealth.Description`.
    pub description: Option<String>,
}

/// Why the plan stops a task (what the applier counts when the stop is asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The service was deleted.
    Deleted,
    /// An essential container is UNHEALTHY: a failure of its deployment, replaced.
    Unhealthy,
    /// Its target group finds it unhealthy: replaced.
    LbUnhealthy,
    /// More of the PRIMARY deployment's tasks run than desired.
    ScaleIn,
    /// A task of an older deployment (or on a DRAINING instance) the rollout replaces;
    /// stopped after the launch.
    Retire,
}

/// A task the plan stops, with the stoppedReason ECS gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task: String,
    pub deployment: Option<String>,
    pub reason: String,
    pub why: Why,
    /// Blue/green: asked only once every listener rule is where the plan's `rules` say (a
    /// shift that fails keeps the task, which a rule may still send traffic to).
    pub after_routing: bool,
}

/// What one pass does for a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Blue/green: the listener rules, pointed before any task stops.
    pub rules: Vec<RuleMove>,
    /// Service events to write before any task is stopped or started (throttling, health
    /// failures).
    pub events: Vec<String>,
    /// The gone tasks that failed (stopped on their own), and their count by deployment
    /// (the circuit breaker's).
    pub failed_tasks: Vec<String>,
    pub failed: HashMap<String, i64>,
    /// The throttle after this pass's failures.
    pub throttle: Throttle,
    /// Tasks to stop, in order: those of [`Why::Retire`] after the launch, the others
    /// before it.
    pub stops: Vec<Stop>,
    /// How many tasks of the PRIMARY deployment to start now (RunTask's batch, at most 10).
    pub launch: i64,
    /// How many it wants in all (more than `launch`: the next pass runs at once).
    pub wanted: i64,
    /// A launch was due but waits for the backoff.
    pub throttled: bool,
    /// Tasks kept for their scale-in protection that would have stopped.
    pub protected: usize,
    /// The deleted service has no task left: it and its deployments go INACTIVE.
    pub inactive: bool,
    /// Blue/green: the PRIMARY (green) deployment runs `desired` tasks, healthy (or unused)
    /// in each of their target groups.
    pub green_ready: bool,
}

/// stoppedReason of a task replaced for failing its health checks (ECS's string).
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";

/// The stoppedReason ECS gives the tasks its scheduler stops.
pub fn scaling_reason(deployment: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment})")
}

/// Whether a task that started at `started_at_ms` is still in the service's health check
/// grace period. Ref: ecs.json `CreateServiceRequest.healthCheckGracePeriodSeconds` ("the
/// period of time, in seconds, that the Amazon ECS service scheduler ignores unhealthy
/// Elastic Load Balancing, VPC Lattice, and container health checks after a task has first
/// started"; default 0).
pub fn in_grace_period(started_at_ms: Option<i64>, grace_s: Option<i64>, now: i64) -> bool {
    let grace_ms = grace_s.unwrap_or(0).max(0).saturating_mul(1000);
    match started_at_ms {
        Some(t) => now.saturating_sub(t) < grace_ms,
        None => grace_ms > 0,
    }
}

/// Whether task `t` is RUNNING and UNHEALTHY in its containers past the grace period:
/// within healthCheckGracePeriodSeconds of its start, an UNHEALTHY task counts as neither
/// failed nor replaced.
fn unhealthy_now(s: &Snapshot, t: &TaskState) -> bool {
    t.running && t.containers_unhealthy && !in_grace_period(t.started_at, s.grace_s, s.now_ms)
}

/// The decision of one pass for one service.
pub fn reconcile(s: &Snapshot) -> Plan {
    let mut r = Rollout::new(s);
    r.count_failures();
    r.plan.rules = s.routing.as_ref().map(traffic::moves).unwrap_or_default();
    if s.deleted {
        r.retire_service();
        return r.plan;
    }
    r.replace_unhealthy();
    r.replace_lb_unhealthy();
    r.scale_in();
    r.launch();
    r.retire_older();
    r.plan.green_ready = r.green_ready();
    r.plan
}

/// The plan under construction, and what each task is to it so far.
struct Rollout<'a> {
    s: &'a Snapshot,
    /// Per task: still active (no stop planned or under way).
    active: Vec<bool>,
    /// Per task: UNHEALTHY in its containers, past the grace period.
    unhealthy: Vec<bool>,
    plan: Plan,
}

impl<'a> Rollout<'a> {
    fn new(s: &'a Snapshot) -> Self {
        let unhealthy = s.tasks.iter().map(|t| unhealthy_now(s, t)).collect();
        Rollout {
            s,
            active: s.tasks.iter().map(|t| t.active).collect(),
            unhealthy,
            plan: Plan {
                throttle: s.throttle.clone(),
                ..Plan::default()
            },
        }
    }

    /// Throttling: each task gone since the last pass that stopped on its own is a failure
    /// of its deployment and backs off the launches; at [`THROTTLE_WARN_AT`] failures in
    /// the window the service says it cannot start tasks consistently (once, until it is
    /// steady again).
    fn count_failures(&mut self) {
        let s = self.s;
        for g in s.gone.iter().filter(|g| g.failed()) {
            if let Some(d) = &g.deployment {
                *self.plan.failed.entry(d.clone()).or_default() += 1;
            }
            self.plan.failed_tasks.push(g.id.clone());
            let n = self.plan.throttle.failed(s.now);
            if n >= THROTTLE_WARN_AT && !self.plan.throttle.warned {
                self.plan.throttle.warned = true;
                let name = &s.service;
                self.plan
                    .events
                    .push(format!("(service {name}) {UNABLE_EVENT}"));
            }
        }
    }

    fn stop(&mut self, i: usize, reason: String, why: Why) {
        let t = &self.s.tasks[i];
        self.active[i] = false;
        self.plan.stops.push(Stop {
            task: t.id.clone(),
            deployment: t.deployment.clone(),
            reason,
            why,
            after_routing: why == Why::Retire && self.s.blue_green,
        });
    }

    /// A task of the PRIMARY deployment, not on a DRAINING instance. Ref:
    /// developerguide/container-instance-draining.html (a task on a DRAINING instance
    /// counts as an older deployment's: its replacement starts first, within
    /// maximumPercent, and it stops as minimumHealthyPercent allows).
    fn is_primary(&self, i: usize) -> bool {
        let t = &self.s.tasks[i];
        !t.on_draining_instance && t.deployment.as_deref() == Some(self.s.primary.id.as_str())
    }

    fn protected(&self, i: usize) -> bool {
        self.s.tasks[i]
            .protected_until
            .is_some_and(|t| t > self.s.now_ms)
    }

    /// Active, RUNNING, not UNHEALTHY in its containers.
    fn serving(&self, i: usize) -> bool {
        self.active[i] && self.s.tasks[i].running && !self.unhealthy[i]
    }

    /// Whether each target of the task is in one of `states` (true without load
    /// balancers; false for a task not registered).
    fn targets_in(&self, i: usize, states: &[&str]) -> bool {
        if !self.s.load_balanced {
            return true;
        }
        self.s.tasks[i].targets.as_ref().is_some_and(|ts| {
            ts.iter()
                .all(|t| t.state.is_some_and(|h| states.contains(&h)))
        })
    }

    /// DeleteService: every task stops; the service is gone once none is left.
    fn retire_service(&mut self) {
        for i in 0..self.s.tasks.len() {
            if self.active[i] {
                let d = self.s.tasks[i]
                    .deployment
                    .clone()
                    .unwrap_or_else(|| self.s.primary.id.clone());
                self.stop(i, scaling_reason(&d), Why::Deleted);
            }
        }
        self.plan.inactive = self.s.tasks.is_empty();
    }

    /// A task whose essential container is UNHEALTHY is replaced. Ref: ecs-reference.md §1
    /// (only a service replaces an unhealthy task).
    fn replace_unhealthy(&mut self) {
        let name = &self.s.service;
        for i in 0..self.s.tasks.len() {
            if self.active[i] && self.unhealthy[i] {
                let id = &self.s.tasks[i].id;
                self.plan.events.push(format!(
                    "(service {name}) (task {id}) failed container health checks."
                ));
                self.stop(i, UNHEALTHY_REASON.to_string(), Why::Unhealthy);
            }
        }
    }

    /// A registered task its target group finds unhealthy is replaced (after the service's
    /// healthCheckGracePeriodSeconds), with ECS's reason.
    fn replace_lb_unhealthy(&mut self) {
        let name = &self.s.service;
        for i in 0..self.s.tasks.len() {
            let t = &self.s.tasks[i];
            if !self.serving(i) || in_grace_period(t.started_at, self.s.grace_s, self.s.now_ms) {
                continue;
            }
            let Some(target) = t
                .targets
                .iter()
                .flatten()
                .find(|x| x.state == Some("unhealthy"))
            else {
                continue;
            };
            self.plan.events.push(format!(
                "(service {name}) (task {}) (port {}) is unhealthy in (target-group {}) due to (reason {}).",
                t.id,
                target.port,
                target.group,
                target.description.as_deref().unwrap_or("Health checks failed")
            ));
            let reason = format!(
                "Task failed ELB health checks in (target-group {})",
                target.group
            );
            self.stop(i, reason, Why::LbUnhealthy);
        }
    }

    /// Scale in: the primary's surplus, tasks not yet RUNNING first, then the newest; a
    /// protected task is kept until its protection lapses (UpdateTaskProtection). Ref:
    /// docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html.
    fn scale_in(&mut self) {
        let tasks = &self.s.tasks;
        let mut surplus: Vec<usize> = (0..tasks.len())
            .filter(|&i| self.active[i] && self.is_primary(i))
            .collect();
        let desired = self.s.desired.max(0) as usize;
        if surplus.len() <= desired {
            return;
        }
        surplus.sort_by_key(|&i| (tasks[i].running, std::cmp::Reverse(tasks[i].created_at)));
        let excess = surplus.len() - desired;
        let (free, protected): (Vec<usize>, Vec<usize>) =
            surplus.iter().partition(|&&i| !self.protected(i));
        self.plan.protected += excess.saturating_sub(free.len()).min(protected.len());
        let reason = scaling_reason(&self.s.primary.id);
        for &i in free.iter().take(excess) {
            self.stop(i, reason.clone(), Why::ScaleIn);
        }
    }

    /// Launch the primary's missing tasks, within maximumPercent, unless throttled or its
    /// deployment failed.
    fn launch(&mut self) {
        let s = self.s;
        let primary_active = (0..s.tasks.len())
            .filter(|&i| self.active[i] && self.is_primary(i))
            .count() as i64;
        // Blue/green: the green tasks start at the full desired count beside the blue ones.
        let room = if s.blue_green {
            i64::MAX
        } else {
            s.max_total - s.tasks.len() as i64
        };
        let wanted = (s.desired - primary_active).min(room);
        self.plan.wanted = wanted;
        // RunTask's batch of at most 10; a service that wants more has the next pass run at
        // once, so a scale-out is bounded by how fast tasks launch, not by the passes' pace.
        let mut n = wanted.min(10);
        // A deployment the circuit breaker failed launches no more tasks.
        if s.primary.rollout_state == RolloutState::Failed {
            n = 0;
        }
        if n > 0 && self.plan.throttle.holds(s.now) {
            self.plan.throttled = true;
            n = 0;
        }
        self.plan.launch = n.max(0);
    }

    /// Blue/green: the blue tasks all stop at the green deployment's CLEAN_UP (or once a
    /// rollback made blue PRIMARY again, the green ones), not before (and never while a
    /// listener rule may still send them traffic: [`Stop::after_routing`]).
    fn holds_older(&self) -> bool {
        let p = &self.s.primary;
        let done = p.rollout_state == RolloutState::Completed
            || (p.rollout_state == RolloutState::InProgress
                && p.stage.is_none_or(|s| s >= LifecycleStage::CleanUp));
        self.s.blue_green && !done
    }

    /// Stop older deployments' tasks while minimumHealthyPercent stays healthy: tasks not
    /// RUNNING at once, RUNNING ones (oldest first) only as the healthy surplus allows.
    /// With load balancers, a task counts as healthy once it is healthy in each of the
    /// service's target groups (ECS: "healthy … and, with a load balancer, passing its
    /// health checks"), so a deployment never takes away the targets serving traffic
    /// before their replacements can.
    fn retire_older(&mut self) {
        let n = self.s.tasks.len();
        let healthy_now: Vec<bool> = (0..n)
            .map(|i| self.serving(i) && self.targets_in(i, &["healthy"]))
            .collect();
        let healthy = healthy_now.iter().filter(|h| **h).count() as i64;
        let mut can_stop = if self.s.blue_green {
            i64::MAX
        } else {
            healthy - self.s.min_healthy
        };
        if self.holds_older() {
            return;
        }
        let tasks = &self.s.tasks;
        let mut old: Vec<usize> = (0..n)
            .filter(|&i| self.active[i] && !self.is_primary(i))
            .collect();
        old.sort_by_key(|&i| (tasks[i].running, tasks[i].created_at));
        for i in old {
            if healthy_now[i] && can_stop <= 0 {
                continue;
            }
            // A protected task of an older deployment stays until its protection lapses.
            if self.protected(i) {
                self.plan.protected += 1;
                continue;
            }
            let d = tasks[i].deployment.clone().unwrap_or_default();
            self.stop(i, scaling_reason(&d), Why::Retire);
            if healthy_now[i] {
                can_stop -= 1;
            }
        }
    }

    /// Green is ready once its tasks run, registered and healthy in each of their target
    /// groups that is in use (a group no rule forwards to yet has no health checks: before
    /// the test traffic shift, the alternate group of a service with a test rule).
    fn green_ready(&self) -> bool {
        let ready = (0..self.s.tasks.len())
            .filter(|&i| {
                self.serving(i) && self.is_primary(i) && self.targets_in(i, &["healthy", "unused"])
            })
            .count() as i64;
        ready >= self.s.desired
    }
}

#[cfg(test)]
mod tests;
