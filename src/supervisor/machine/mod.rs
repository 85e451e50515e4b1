//! The rules of a task's container life cycle, as a pure state machine: which container
//! starts when (dependsOn), what an exit means (essential, restartPolicy), when the task
//! stops and with which stop code and reason, and how its containers are stopped
//! (dependents first, SIGTERM, SIGKILL after stopTimeout).
//!
//! No I/O, no clock, no threads: the executor (`crate::supervisor::executor`) feeds it
//! [`Event`]s with the time since an origin of its choosing, takes [`Action`]s from
//! [`Machine::poll`] one at a time and does the kernel work they ask for; what it does
//! (a container started, or failed to) comes back as the next event. Every action a
//! start asks for (`Start`, `Restart`) is answered before the next `poll`.
//!
//! Refs: ecs.json `ContainerDependency`, `ContainerDefinition.startTimeout`,
//! `stopTimeout`, `essential`, `ContainerRestartPolicy`; the ECS developer guide
//! "Container dependency" and "Restart individual containers in Amazon ECS tasks with
//! container restart policies"; amazon-ecs-agent agent/engine/dependencygraph/graph.go
//! for the reasons a dependency cannot be resolved.

use crate::store::StopCode;
use crate::task::stop::ESSENTIAL_EXITED_REASON;
use crate::taskdef::model::{ContainerCondition, RestartPolicy};
use std::collections::VecDeque;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// ECS default `stopTimeout` (Fargate and ECS_CONTAINER_STOP_TIMEOUT): 30 s.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// ECS default `restartAttemptPeriod`.
pub const DEFAULT_ATTEMPT_PERIOD: Duration = Duration::from_secs(300);

/// How long a container that was sent SIGKILL is waited for before the stop moves on to
/// the next container (with a task warning, [`Action::Abandon`]).
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// How often containers waiting for their dependencies are looked at again (a dependency's
/// `startTimeout` is noticed this late at most).
pub const DEPENDENCY_POLL: Duration = Duration::from_millis(100);

/// A container's `restartPolicy`, when enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartRule {
    pub ignored_exit_codes: Vec<i64>,
    /// The container must have run this long since its last start to be restarted.
    pub attempt_period: Duration,
}

impl RestartRule {
    /// The policy of a container definition (`None`: no restarts); `period_override`
    /// replaces every `restartAttemptPeriod` (`crate::supervisor::restart::period_override`).
    pub fn from_policy(
        policy: Option<&RestartPolicy>,
        period_override: Option<Duration>,
    ) -> Option<RestartRule> {
        let p = policy.filter(|p| p.enabled == Some(true))?;
        Some(RestartRule {
            ignored_exit_codes: p.ignored_exit_codes.clone().unwrap_or_default(),
            attempt_period: period_override.unwrap_or_else(|| {
                p.restart_attempt_period
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or(DEFAULT_ATTEMPT_PERIOD)
            }),
        })
    }
}

/// Why an exited container is not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRestart {
    /// No restartPolicy, or not enabled.
    Disabled,
    /// The task is stopping.
    Stopping,
    /// Its exit code is in `ignoredExitCodes`.
    Ignored,
    /// It ran less than `restartAttemptPeriod` since its last start.
    TooSoon,
    /// Its exit status is unknown (waiting for it failed).
    NoStatus,
}

/// One container of the task, as the rules see it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub essential: bool,
    /// (index of the dependency, condition), the dependency's index into the slots.
    pub depends_on: Vec<(usize, ContainerCondition)>,
    pub restart: Option<RestartRule>,
    /// `startTimeout`: how long containers that depend on this one wait for it.
    pub start_timeout: Option<Duration>,
    /// `stopTimeout` (or [`DEFAULT_STOP_TIMEOUT`]).
    pub stop_timeout: Duration,
    pub has_health_check: bool,
}

impl Slot {
    /// An essential container without dependencies, restart policy or health check.
    // A query the executor has no use for yet (the unit tests do).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new(name: impl Into<String>) -> Slot {
        Slot {
            name: name.into(),
            essential: true,
            depends_on: Vec::new(),
            restart: None,
            start_timeout: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            has_health_check: false,
        }
    }
}

/// Where a container is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started yet: the task is provisioning or it waits for its dependencies.
    Pending,
    /// Asked to start ([`Action::Start`], [`Action::Restart`]), not yet answered.
    Starting,
    /// Running since this time.
    Running { since: Duration },
    /// Ran and exited with this code (255 when its status is unknown).
    Exited { code: i32 },
    /// Never started and never will.
    Failed,
}

/// What happened, as the executor tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The task's resources are ready: containers may start (dependencies are waited for
    /// from now on).
    Provisioned,
    /// The task's resources could not be made: no container runs, `reason` is theirs and
    /// the task's.
    ProvisionFailed { reason: String },
    /// Container `idx` runs (after [`Action::Start`] or [`Action::Restart`]).
    Started { idx: usize },
    /// Container `idx` could not be prepared, created or started: it never will.
    StartFailed { idx: usize, reason: String },
    /// Container `idx`'s main process exited (`None`: with an unknown status).
    Exited { idx: usize, code: Option<i32> },
    /// Container `idx`'s health check says HEALTHY (`true`) or no longer does.
    Health { idx: usize, healthy: bool },
    /// StopTask, SIGTERM to the supervisor, Ctrl-C. `force`: SIGKILL without waiting.
    StopRequested {
        code: StopCode,
        reason: String,
        force: bool,
    },
}

/// What the executor is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start container `idx`; answer with `Started` or `StartFailed`.
    Start(usize),
    /// restartPolicy: delete the exited container `idx` and start it again on the same
    /// rootfs and network; answer with `Started` or `StartFailed`.
    Restart(usize),
    /// Container `idx` never runs (again): STOPPED with `reason`.
    Fail { idx: usize, reason: String },
    /// Container `idx` exited for good: record its exit.
    Exited(usize),
    /// The task stops: desired STOPPED, with this stop code and reason (the first only).
    StopTask { code: StopCode, reason: String },
    /// Every container has started (or will never start): the task is RUNNING.
    TaskRunning,
    /// The containers are stopped from now on.
    BeginStop,
    /// Send container `idx` SIGTERM (its stop begins).
    Term(usize),
    /// Send container `idx` SIGKILL (its stop begins here when the stop is forced).
    Kill(usize),
    /// Container `idx` did not exit [`KILL_GRACE`] after SIGKILL: the stop moves on.
    Abandon(usize),
    /// Container `idx`'s stop is over (it exited, or was abandoned).
    Stopped(usize),
    /// Container `idx` never ran: STOPPED without a reason of its own.
    NeverRan(usize),
    /// Every container is stopped: tear the task down.
    Done,
}

/// Whether a container may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Wait,
    /// It never will; the reason.
    Never(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Provisioning,
    Running,
    Stopping,
    Done,
}

/// The container being stopped.
#[derive(Debug, Clone, Copy)]
struct Target {
    idx: usize,
    /// SIGKILL at this time.
    deadline: Duration,
    killed_at: Option<Duration>,
}

/// The task's containers and the rules between them. See the module doc.
#[derive(Debug, Clone)]
pub struct Machine {
    slots: Vec<Slot>,
    status: Vec<Status>,
    healthy: Vec<bool>,
    restarts: Vec<u32>,
    /// Start order: every container after its dependencies.
    order: Vec<usize>,
    phase: Phase,
    provisioned_at: Duration,
    stop: Option<(StopCode, String)>,
    force: bool,
    /// `TaskRunning` was given.
    running: bool,
    /// A container waits for its dependencies.
    waiting: bool,
    queue: VecDeque<Action>,
    /// Containers still to stop, in stop order.
    to_stop: VecDeque<usize>,
    target: Option<Target>,
}

impl Machine {
    pub fn new(slots: Vec<Slot>) -> Machine {
        let n = slots.len();
        let order = start_order(
            &slots
                .iter()
                .map(|s| s.depends_on.iter().map(|d| d.0).collect())
                .collect::<Vec<_>>(),
        );
        Machine {
            slots,
            status: vec![Status::Pending; n],
            healthy: vec![false; n],
            restarts: vec![0; n],
            order,
            phase: Phase::Provisioning,
            provisioned_at: Duration::ZERO,
            stop: None,
            force: false,
            running: false,
            waiting: false,
            queue: VecDeque::new(),
            to_stop: VecDeque::new(),
            target: None,
        }
    }

    pub fn status(&self, idx: usize) -> Status {
        self.status[idx]
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The start order (the stop order is its reverse).
    // A query the executor has no use for yet (the unit tests do).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Restarts of container `idx` so far (TMDS v4 `RestartCount`).
    pub fn restart_count(&self, idx: usize) -> u32 {
        self.restarts[idx]
    }

    /// A stop was requested (desired STOPPED).
    pub fn stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// The stop code and reason of the task, once it stops.
    // A query the executor has no use for yet (the unit tests do).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stop_reason(&self) -> Option<&(StopCode, String)> {
        self.stop.as_ref()
    }

    /// Some container has not started yet and may still.
    pub fn any_pending(&self) -> bool {
        self.status.contains(&Status::Pending)
    }

    /// The dependencies container `idx` still waits for at `now` (empty when it may start
    /// or never will).
    // A query the executor has no use for yet (the unit tests do).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn waiting_for(&self, idx: usize, now: Duration) -> Vec<usize> {
        self.slots[idx]
            .depends_on
            .iter()
            .filter(|&&(d, c)| self.dependency(d, c, now) == Dep::Unmet)
            .map(|&(d, _)| d)
            .collect()
    }

    /// Whether container `idx` may start at `now`.
    pub fn verdict(&self, idx: usize, now: Duration) -> Verdict {
        let mut verdict = Verdict::Ready;
        for &(d, condition) in &self.slots[idx].depends_on {
            match self.dependency(d, condition, now) {
                Dep::Met => {}
                Dep::Unmet => verdict = Verdict::Wait,
                Dep::Never(what) => {
                    return Verdict::Never(format!(
                        "dependency graph: container ordering dependency [{}] for target [{}] \
                         {what}",
                        self.slots[d].name, self.slots[idx].name
                    ));
                }
            }
        }
        verdict
    }

    /// Whether dependency `d` meets `condition` at `now`.
    fn dependency(&self, d: usize, condition: ContainerCondition, now: Duration) -> Dep {
        use ContainerCondition as C;
        use Status as S;
        let dep = &self.slots[d];
        let met = match (condition, self.status[d]) {
            (_, S::Failed) => return Dep::Never("will never start"),
            (C::Start, S::Running { .. } | S::Exited { .. }) => true,
            (C::Complete, S::Exited { .. }) => true,
            (C::Success, S::Exited { code: 0 }) => true,
            (C::Success, S::Exited { .. }) => return Dep::Never("did not exit successfully."),
            (C::Healthy, _) if !dep.has_health_check => {
                return Dep::Never("will never become HEALTHY: it has no healthCheck.");
            }
            (C::Healthy, S::Exited { .. }) => {
                return Dep::Never("exited before it became HEALTHY.");
            }
            (C::Healthy, S::Running { .. }) => self.healthy[d],
            (C::Healthy, S::Pending | S::Starting)
            | (C::Start, S::Pending | S::Starting)
            | (C::Complete | C::Success, S::Pending | S::Starting | S::Running { .. }) => false,
        };
        if met {
            return Dep::Met;
        }
        // startTimeout is the dependency's: how long its dependents wait for it, from the
        // task's containers being allowed to start, or from its own start.
        let waited = match self.status[d] {
            S::Running { since } => now.saturating_sub(since),
            _ => now.saturating_sub(self.provisioned_at),
        };
        if dep.start_timeout.is_some_and(|t| waited >= t) {
            return Dep::Never("has timed out.");
        }
        Dep::Unmet
    }

    /// Whether container `idx`, exited with `code` after running `ran` since its last
    /// start, is restarted.
    pub fn restart_decision(
        &self,
        idx: usize,
        code: Option<i32>,
        ran: Duration,
    ) -> Result<(), NoRestart> {
        let Some(r) = &self.slots[idx].restart else {
            return Err(NoRestart::Disabled);
        };
        if self.stopping() {
            return Err(NoRestart::Stopping);
        }
        let Some(code) = code else {
            return Err(NoRestart::NoStatus);
        };
        if r.ignored_exit_codes.contains(&i64::from(code)) {
            return Err(NoRestart::Ignored);
        }
        if ran < r.attempt_period {
            return Err(NoRestart::TooSoon);
        }
        Ok(())
    }

    /// Takes in what happened at `now`; what it calls for comes out of [`Self::poll`].
    pub fn handle(&mut self, now: Duration, event: Event) {
        match event {
            Event::Provisioned => {
                if self.phase == Phase::Provisioning {
                    self.phase = Phase::Running;
                    self.provisioned_at = now;
                }
            }
            Event::ProvisionFailed { reason } => {
                for idx in 0..self.slots.len() {
                    if self.status[idx] == Status::Pending {
                        self.status[idx] = Status::Failed;
                        self.queue.push_back(Action::Fail {
                            idx,
                            reason: reason.clone(),
                        });
                    }
                }
                self.request_stop(StopCode::TaskFailedToStart, &reason);
            }
            Event::Started { idx } => {
                self.status[idx] = Status::Running { since: now };
                self.healthy[idx] = false;
            }
            Event::StartFailed { idx, reason } => self.fail(idx, reason),
            Event::Exited { idx, code } => self.exited(idx, code, now),
            Event::Health { idx, healthy } => {
                if matches!(self.status[idx], Status::Running { .. }) {
                    self.healthy[idx] = healthy;
                }
            }
            Event::StopRequested {
                code,
                reason,
                force,
            } => match &mut self.target {
                // A forced stop while a container is being stopped hurries that one.
                Some(t) if force => t.deadline = t.deadline.min(now),
                _ => {
                    self.force |= force;
                    self.request_stop(code, &reason);
                }
            },
        }
    }

    /// The next action an event called for (a failure's records, the task's stop), without
    /// looking for more: what the executor does at once after each event.
    pub fn queued(&mut self) -> Option<Action> {
        self.queue.pop_front()
    }

    /// The next thing to do at `now`, or `None` until the next event or [`Self::wakeup`].
    pub fn poll(&mut self, now: Duration) -> Option<Action> {
        if let Some(a) = self.queue.pop_front() {
            return Some(a);
        }
        match self.phase {
            Phase::Provisioning if !self.stopping() => None,
            Phase::Running if !self.stopping() => {
                self.next_start(now).or_else(|| self.queue.pop_front())
            }
            Phase::Provisioning | Phase::Running => {
                self.phase = Phase::Stopping;
                self.to_stop = self.order.iter().rev().copied().collect();
                Some(Action::BeginStop)
            }
            Phase::Stopping => self.next_stop(now),
            Phase::Done => None,
        }
    }

    /// How long after `now` [`Self::poll`] has something to do if no event comes first
    /// (`None`: only an event changes anything).
    pub fn wakeup(&self, now: Duration) -> Option<Duration> {
        match (self.phase, self.target) {
            (Phase::Running, _) if self.waiting && !self.stopping() => Some(DEPENDENCY_POLL),
            (Phase::Stopping, Some(t)) => Some(match t.killed_at {
                None => t.deadline.saturating_sub(now),
                Some(k) => (k + KILL_GRACE).saturating_sub(now),
            }),
            _ => None,
        }
    }

    /// Sets the stop code and reason, the first time only.
    fn request_stop(&mut self, code: StopCode, reason: &str) {
        if self.stop.is_none() {
            self.stop = Some((code, reason.to_string()));
            self.queue.push_back(Action::StopTask {
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Container `idx` never runs (again); an essential one stops the task.
    fn fail(&mut self, idx: usize, reason: String) {
        self.status[idx] = Status::Failed;
        self.queue.push_back(Action::Fail {
            idx,
            reason: reason.clone(),
        });
        if self.slots[idx].essential {
            let code = if self.running {
                StopCode::EssentialContainerExited
            } else {
                StopCode::TaskFailedToStart
            };
            self.request_stop(code, &reason);
        }
    }

    fn exited(&mut self, idx: usize, code: Option<i32>, now: Duration) {
        let Status::Running { since } = self.status[idx] else {
            return;
        };
        if self
            .restart_decision(idx, code, now.saturating_sub(since))
            .is_ok()
        {
            self.restarts[idx] += 1;
            self.status[idx] = Status::Starting;
            self.queue.push_back(Action::Restart(idx));
            return;
        }
        self.status[idx] = Status::Exited {
            code: code.unwrap_or(255),
        };
        self.queue.push_back(Action::Exited(idx));
        if self.slots[idx].essential {
            self.request_stop(StopCode::EssentialContainerExited, ESSENTIAL_EXITED_REASON);
        }
    }

    /// The next container to start or fail in start order; once none is left to start,
    /// the task's RUNNING, and its stop when nothing runs any more.
    fn next_start(&mut self, now: Duration) -> Option<Action> {
        self.waiting = false;
        for i in 0..self.order.len() {
            let idx = self.order[i];
            if self.status[idx] != Status::Pending {
                continue;
            }
            match self.verdict(idx, now) {
                Verdict::Ready => {
                    self.status[idx] = Status::Starting;
                    return Some(Action::Start(idx));
                }
                Verdict::Wait => self.waiting = true,
                Verdict::Never(reason) => {
                    self.fail(idx, reason);
                    return self.queue.pop_front();
                }
            }
        }
        if self.any_pending() {
            return None;
        }
        if !self.running {
            self.running = true;
            return Some(Action::TaskRunning);
        }
        let alive = self
            .status
            .iter()
            .any(|s| matches!(s, Status::Running { .. } | Status::Starting));
        if !alive {
            // Only non-essential containers ran, and all ended: nothing keeps the task.
            self.request_stop(StopCode::EssentialContainerExited, ESSENTIAL_EXITED_REASON);
        }
        None
    }

    /// The stop, one container at a time in reverse start order (dependents first):
    /// SIGTERM, SIGKILL after its stopTimeout (at once when forced); then the containers
    /// that never ran; then `Done`.
    fn next_stop(&mut self, now: Duration) -> Option<Action> {
        loop {
            if let Some(t) = &mut self.target {
                let idx = t.idx;
                if !matches!(self.status[idx], Status::Running { .. }) {
                    self.target = None;
                    return Some(Action::Stopped(idx));
                }
                return match t.killed_at {
                    None if now >= t.deadline => {
                        t.killed_at = Some(now);
                        Some(Action::Kill(idx))
                    }
                    Some(k) if now >= k + KILL_GRACE => {
                        self.target = None;
                        self.queue.push_back(Action::Stopped(idx));
                        Some(Action::Abandon(idx))
                    }
                    _ => None,
                };
            }
            let Some(idx) = self.to_stop.pop_front() else {
                break;
            };
            if !matches!(self.status[idx], Status::Running { .. }) {
                continue;
            }
            let timeout = if self.force {
                Duration::ZERO
            } else {
                self.slots[idx].stop_timeout
            };
            self.target = Some(Target {
                idx,
                deadline: now + timeout,
                killed_at: None,
            });
            if !self.force {
                return Some(Action::Term(idx));
            }
        }
        if let Some(idx) = self.status.iter().position(|s| *s == Status::Pending) {
            self.status[idx] = Status::Failed;
            return Some(Action::NeverRan(idx));
        }
        self.phase = Phase::Done;
        Some(Action::Done)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    Met,
    Unmet,
    Never(&'static str),
}

/// A start order where every container comes after its dependencies (`deps[i]`: indexes
/// of container i's dependencies); definition order among equals. Cycles (which validation
/// rejects) fall back to definition order for the rest.
pub fn start_order(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| d >= n || placed[d]));
        let i = next.unwrap_or_else(|| (0..n).find(|&i| !placed[i]).expect("one left"));
        placed[i] = true;
        order.push(i);
    }
    order
}
