//! The lifecycle of one task, run by its supervisor: network, pulls, task cgroup, rootfs,
//! containers in dependsOn order, essential exits, stop in reverse order, teardown.
//!
//! Every transition is written to the store as it happens. Teardown runs every step and
//! records every error (in the supervisor log and the task's warnings).

use crate::errors::error_chain;
use crate::store::{
    ContainerRow, DesiredStatus, HealthStatus, LastStatus, SharedStore, StopCode, TaskRow,
};
use crate::supervisor::health::{self, Check, Health};
use crate::supervisor::isolation::network::{Attachment, TaskNetwork};
use crate::supervisor::isolation::resources;
use crate::supervisor::isolation::volumes::TaskVolumes;
use crate::supervisor::machine::{self, Action, Machine, RestartRule, Status};
use crate::supervisor::spec::{self, ImageDefaults};
use crate::task::{PullPolicy, TaskPaths, cut_reason, reason, runtime_id};
use crate::taskdef::model::{ContainerCondition, ContainerDefinition, NetworkMode, TaskDefinition};
use rootfs_cache::ImageRecord;
use runtime::{Container, Runtime, Signal, TaskLimits};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

mod cgroup_ahead;
mod images;
mod persist;
mod provision;
mod steps;
mod teardown;
mod wiring;

use runtime::Steps;

pub(crate) use cgroup_ahead::CgroupAhead;
pub use images::{EarlyChecks, images_to_check_ahead};
use steps::SpecStepError;
use teardown::delete_when_free;
pub use teardown::remove_scratch;

/// Something the executor reacts to.
#[derive(Debug)]
pub enum Event {
    /// A container's main process exited (`Container::wait` has its status).
    Exited { idx: usize },
    /// A health check of a container finished.
    Health { idx: usize, ok: bool },
    /// stop-task, Ctrl-C of an attached run-task. `force`: SIGKILL without waiting.
    Stop {
        stop_code: StopCode,
        reason: String,
        force: bool,
    },
}

/// Why a container did not start (`Executor::start`).
enum NotStarted {
    /// The container fails with this reason.
    Container(String),
    /// The container fails, and the task with it: the network's wiring failed.
    Task(String),
}

/// Where the executor finds images and configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// `--run-root`: where the other tasks' run dirs are, for [`Executor::finish_dead_tasks`].
    pub run_root: PathBuf,
    pub config: Option<PathBuf>,
    pub pull: PullPolicy,
    pub region: String,
    /// `--secrets-file`: secrets from this local file instead of SSM / Secrets Manager.
    pub secrets_file: Option<PathBuf>,
    /// `--task-credentials host`: a task without a role gets the host's identity.
    pub host_credentials: bool,
    /// `--execution-credentials host`: pulls, secrets and environment files with the
    /// host's credentials even when the task has an execution role.
    pub host_execution_credentials: bool,
    /// `--userns`: whether the task gets a user namespace of its own (`crate::supervisor::isolation::userns`).
    pub userns: crate::supervisor::isolation::userns::Mode,
}

struct Slot {
    def: ContainerDefinition,
    row: ContainerRow,
    /// The container, from its create until teardown deletes it (or a restart replaces it).
    container: Option<Arc<Container>>,
    /// The exit code and reason of its last exit, until the machine says what it means.
    exit: Option<(i32, Option<String>)>,
    image: Option<ImageRecord>,
    mounted: bool,
    health: Option<Health>,
    /// The awslogs driver of the running container, if it uses awslogs.
    awslogs: Option<Arc<crate::supervisor::logs::awslogs::Awslogs>>,
    /// The awsfirelens driver of the running container, if it routes its logs.
    firelens: Option<Arc<crate::supervisor::logs::firelens::Sink>>,
}

pub struct Executor {
    store: SharedStore,
    task: TaskRow,
    slots: Vec<Slot>,
    /// The life cycle rules (`crate::supervisor::machine`); times are since `epoch`.
    machine: Machine,
    epoch: Instant,
    /// When the stop of the container being stopped began (µs), for its `stop` phase.
    stop_t0: Option<i64>,
    paths: TaskPaths,
    opts: Options,
    events: Receiver<Event>,
    tx: Sender<Event>,
    rt: Option<Runtime>,
    net: Box<dyn TaskNetwork>,
    /// The network namespace made while the supervisor waited for its task, if it was
    /// (`crate::supervisor::isolation::netns_ahead`): the network step pins it.
    netns_ahead: Option<crate::supervisor::isolation::netns_ahead::Ahead>,
    attachment: Option<Attachment>,
    /// The network's wiring and the metadata endpoint's start, on a thread beside the
    /// launch until the first container starts (`wiring`).
    wiring: Option<wiring::Beside>,
    task_cgroup: bool,
    /// The task's cgroups being made beside the first steps (`cgroup_ahead`).
    cgroup_ahead: Option<cgroup_ahead::CgroupAhead>,
    /// Their first stage, made while the supervisor waited for its task, until
    /// `prepare_task_cgroup` hands it to the second (`cgroup_ahead`).
    early_cgroups: Option<cgroup_ahead::CgroupAhead>,
    warnings: Vec<String>,
    /// The host ids of the task's user namespace, when it has one (`crate::supervisor::isolation::userns`).
    userns: Option<runtime::IdRange>,
    volumes: TaskVolumes,
    /// The task's own filesystem for writable layers and volumes (`crate::supervisor::isolation::ephemeral`),
    /// when this host enforces ephemeralStorage.
    ephemeral: Option<crate::supervisor::isolation::ephemeral::Ephemeral>,
    /// Secrets, the metadata and credentials endpoint (`crate::supervisor::endpoints::metadata`).
    inside: crate::supervisor::endpoints::metadata::Inside,
    /// Pays the cgroup migration lock's grace period ahead of the first container's
    /// migration (`runtime::MigrationWarmer`); dropped once that container is created.
    warmer: Option<runtime::MigrationWarmer>,
    /// When the last event was handled; idle for `idle_release_after` after it, a
    /// running task's supervisor gives memory back (`release_idle_memory`) once.
    last_event: Instant,
    released: bool,
    /// [`idle_release_after`]: 250 ms or the configured override.
    idle_release_after: Duration,
    /// Launch phases ([`Executor::phase`]) not yet written: they go into the store with the
    /// next save of the task or a container, in its transaction.
    phases: Vec<Phase>,
    /// Saves wait ([`Executor::drive`]): while it does the machine's bookkeeping actions
    /// (exits, the stop, the end), which come in bursts, the task's and containers' rows
    /// are written together, in one transaction, before anything slow or blocking.
    defer_saves: bool,
    /// The task's row has changes not yet written (with `defer_saves`).
    task_dirty: bool,
    /// The containers whose rows have changes not yet written (with `defer_saves`).
    containers_dirty: Vec<usize>,
    /// `default`'s registry checks asked from the start, beside the network
    /// (`images::EarlyChecks`); taken by the pulls.
    early_checks: Option<images::EarlyChecks>,
    /// The checks started while the supervisor waited for the task, if they were
    /// (`images::images_to_check_ahead`); taken by `start_early_checks`.
    early_checks_ahead: Option<images::EarlyChecks>,
    /// The image cache, once opened (its set-up is ~30 system calls; once per task).
    image_store: Option<rootfs_cache::Store>,
    /// The task's `pidMode` / `ipcMode` and what they share (`crate::supervisor::isolation::namespaces`).
    namespaces: crate::supervisor::isolation::namespaces::TaskNamespaces,
    /// The task's FireLens plan and files, when it has a log router (`crate::supervisor::logs::firelens`).
    firelens: Option<(
        crate::supervisor::logs::firelens::Plan,
        crate::supervisor::logs::firelens::Files,
    )>,
}

/// A launch phase of the task (`container` empty) or of a container, in µs.
struct Phase {
    container: String,
    phase: &'static str,
    start: i64,
    end: i64,
}

/// Quiet time after which a running task's supervisor releases what it no longer uses
/// (the setup code's pages, caches). Every event (an exit, a health check, a stop)
/// re-arms it. Short, so that what a task costs the host from its first second on is the
/// idle footprint, not setup's (docs/benchmarks.md, "Supervisor memory": 15 MiB RSS for
/// 5 s before): a task that ends within it never pays for the release, and one that
/// lives longer pays 1-2 ms of CPU for it once, plus the minor faults of the code it runs
/// again (teardown, health checks), read back from the page cache.
/// 250 ms unless `MINIFARGATE_IDLE_RELEASE_MS` says otherwise (benchmarks compare values;
/// src/config.rs).
fn idle_release_after() -> Duration {
    crate::config::get().idle_release
}

/// The START dependency the agent gives every awsfirelens container on the log router,
/// unless the router depends on others or the container already names it (`deps[i]`:
/// container i's dependencies).
/// Ref: agent/api/task/task.go addFirelensContainerDependency.
fn firelens_dependencies(
    defs: &[ContainerDefinition],
    deps: &mut [Vec<(usize, ContainerCondition)>],
) {
    let Some(router) = defs.iter().position(|d| d.firelens_configuration.is_some()) else {
        return;
    };
    if defs[router]
        .depends_on
        .as_ref()
        .is_some_and(|d| !d.is_empty())
    {
        tracing::warn!(container = %defs[router].name_str(), "not adding container dependency to let firelens container start first since it has dependency on other containers");
        return;
    }
    for (idx, def) in defs.iter().enumerate() {
        if idx != router
            && crate::supervisor::logs::firelens::uses_awsfirelens(def)
            && !deps[idx].iter().any(|(d, _)| *d == router)
        {
            deps[idx].push((router, ContainerCondition::Start));
        }
    }
}

/// The rules' view of the task's containers.
fn machine_slots(
    defs: &[ContainerDefinition],
    rows: &[ContainerRow],
    deps: Vec<Vec<(usize, ContainerCondition)>>,
) -> Vec<machine::Slot> {
    let secs = |t: i64| Duration::from_secs(t.max(0) as u64);
    let period_override = crate::supervisor::restart::period_override();
    defs.iter()
        .zip(rows)
        .zip(deps)
        .map(|((d, row), depends_on)| machine::Slot {
            name: row.name.clone(),
            essential: row.essential,
            depends_on,
            restart: RestartRule::from_policy(d.restart_policy.as_ref(), period_override),
            start_timeout: d.start_timeout.map(secs),
            stop_timeout: d.stop_timeout.map_or(machine::DEFAULT_STOP_TIMEOUT, secs),
            has_health_check: d.health_check.is_some(),
        })
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Executor {
    /// `defs` are the task's container definitions with overrides applied, in the order of
    /// `containers`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: SharedStore,
        task: TaskRow,
        containers: Vec<ContainerRow>,
        def: &TaskDefinition,
        paths: TaskPaths,
        opts: Options,
        net: Box<dyn TaskNetwork>,
        channel: (Sender<Event>, Receiver<Event>),
    ) -> Executor {
        let all = def.container_definitions.clone().unwrap_or_default();
        let index_of = |name: &str| containers.iter().position(|c| c.name == name);
        let defs: Vec<ContainerDefinition> = containers
            .iter()
            .map(|row| {
                all.iter()
                    .find(|d| d.name_str() == row.name)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let mut deps: Vec<Vec<(usize, ContainerCondition)>> = defs
            .iter()
            .map(|d| {
                d.depends_on
                    .iter()
                    .flatten()
                    .filter_map(|dep| {
                        Some((index_of(dep.container_name.as_deref()?)?, dep.condition?))
                    })
                    .collect()
            })
            .collect();
        firelens_dependencies(&defs, &mut deps);
        let machine = Machine::new(machine_slots(&defs, &containers, deps));
        let slots = defs
            .into_iter()
            .zip(&containers)
            .map(|(def, row)| Slot {
                def,
                row: row.clone(),
                container: None,
                exit: None,
                image: None,
                mounted: false,
                health: None,
                awslogs: None,
                firelens: None,
            })
            .collect();
        let warnings = task.warnings.clone();
        Executor {
            store,
            task,
            slots,
            machine,
            epoch: Instant::now(),
            stop_t0: None,
            paths,
            opts,
            events: channel.1,
            tx: channel.0,
            rt: None,
            net,
            netns_ahead: None,
            attachment: None,
            wiring: None,
            task_cgroup: false,
            cgroup_ahead: None,
            early_cgroups: None,
            last_event: Instant::now(),
            released: false,
            idle_release_after: idle_release_after(),
            warnings,
            userns: None,
            volumes: TaskVolumes::default(),
            ephemeral: None,
            inside: Default::default(),
            warmer: None,
            phases: Vec::new(),
            defer_saves: false,
            task_dirty: false,
            containers_dirty: Vec::new(),
            namespaces: Default::default(),
            firelens: None,
            early_checks: None,
            early_checks_ahead: None,
            image_store: None,
        }
    }

    /// The task's runtime; seccomp programs in `<run-root>/seccomp`, compiled once per
    /// profile for every task of the host (runtime's `with_filter_cache`).
    fn new_runtime(&self) -> Result<Runtime, runtime::RuntimeError> {
        Runtime::new(self.paths.runtime_state())
            .map(|rt| rt.with_filter_cache(self.opts.run_root.join("seccomp")))
    }

    /// The task's cgroup limits: task cpu and memory (overrides first), container cpu.
    fn limits(&self, def: &TaskDefinition) -> TaskLimits {
        let mib = |v: Option<&crate::taskdef::model::SizeValue>| {
            v.and_then(|v| crate::taskdef::units::MemoryMib::parse(v.as_str()).ok())
                .map(|m| m.bytes())
        };
        let task_cpu_units = self
            .task
            .cpu
            .as_deref()
            .or(def.cpu.as_ref().map(|c| c.as_str()))
            .and_then(|c| crate::taskdef::units::CpuUnits::parse(c).ok())
            .map(|c| u64::from(c.0));
        let container_cpu_units: Vec<Option<i64>> = self.slots.iter().map(|s| s.def.cpu).collect();
        let memory = self
            .task
            .memory
            .as_deref()
            .and_then(|m| crate::taskdef::units::MemoryMib::parse(m).ok())
            .map(|m| m.bytes())
            .or_else(|| mib(def.memory.as_ref()));
        resources::task_limits(task_cpu_units, &container_cpu_units, memory)
    }

    /// After the task stopped: the store's WAL checkpointed and truncated if it has grown
    /// (`Store::trim_wal`), so that the next process to open the store first has little to
    /// read.
    pub fn trim_store(&self) {
        let _ = self.store.with(|s| Ok(s.trim_wal()));
    }

    /// Runs the task to STOPPED and tears it down (never returns early: teardown always
    /// happens). Returns the containers' scratch directories (upper and work dirs,
    /// unmounted, renamed out of the way) for the caller to delete once it has reported
    /// the task done ([`remove_scratch`]): on this host's ext4, freeing their blocks
    /// waits for a discard each (~1 ms per task).
    #[must_use = "the scratch dirs are to be removed (remove_scratch)"]
    pub fn run(&mut self, network_mode: NetworkMode, def: &TaskDefinition) -> Vec<PathBuf> {
        tracing::info!(task_id = %self.task.id, "task provisioning");
        self.early_checks = self.start_early_checks();
        if self.provision(network_mode, def) {
            self.machine.handle(self.now(), machine::Event::Provisioned);
        } else {
            // No-op when a failure (or a stop-task) already set the reason.
            self.request_stop(StopCode::TaskFailedToStart, "Task failed to start");
        }
        self.drive();
        // A task stopped before its first container started: the wiring ends before
        // teardown removes what it made.
        if let Err(why) = self.join_wiring() {
            tracing::warn!(task_id = %self.task.id, reason = %why, "the task network failed while the task stopped");
            self.warnings.push(format!("network: {why}"));
        }
        let scratch = self.deprovision();
        tracing::info!(task_id = %self.task.id, stop_code = ?self.task.stop_code,
            reason = ?self.task.stopped_reason, "task stopped");
        scratch
    }

    fn stopping(&self) -> bool {
        self.machine.stopping()
    }

    /// The time the machine goes by.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Hands `event` to the machine and does what it calls for at once (a failure's
    /// records, the task's stop).
    fn feed(&mut self, event: machine::Event) {
        self.machine.handle(self.now(), event);
        while let Some(a) = self.machine.queued() {
            self.apply(a);
        }
    }

    /// Stops the task with `code` and `why`, unless it already stops.
    fn request_stop(&mut self, code: StopCode, why: &str) {
        self.feed(machine::Event::StopRequested {
            code,
            reason: why.to_string(),
            force: false,
        });
    }

    /// Container `idx` never runs (again): the task stops if it is essential. While the
    /// network is wired beside, its failure is the reason (`wiring`).
    fn fail_container(&mut self, idx: usize, why: String) {
        match self.join_wiring() {
            Ok(()) => self.feed(machine::Event::StartFailed { idx, reason: why }),
            Err(net) => {
                let net = net.to_string();
                self.feed(machine::Event::StartFailed {
                    idx,
                    reason: net.clone(),
                });
                self.fail_all(&net);
            }
        }
    }

    /// Does what the machine asks for; true once the task is done.
    fn apply(&mut self, action: Action) -> bool {
        // A container's start takes milliseconds: what waits is written before.
        if matches!(action, Action::Start(_) | Action::Restart(_)) {
            self.flush_saves();
        }
        match action {
            Action::Start(idx) => self.start(idx),
            Action::Restart(idx) => self.restart(idx),
            Action::Fail { idx, reason } => self.record_failure(idx, &reason),
            Action::Exited(idx) => self.record_exit(idx),
            Action::StopTask { code, reason } => self.record_stop(code, &reason),
            Action::TaskRunning => {
                self.task.last_status = LastStatus::Running;
                self.task.started_at = Some(now_ms());
                self.save();
                tracing::info!(task_id = %self.task.id, "task running");
                // The idle release counts from here, not from the last event before
                // setup: a task whose containers end at once never pays for it.
                self.last_event = Instant::now();
            }
            Action::BeginStop => {
                if self.task.stopping_at.is_none() {
                    self.task.stopping_at = Some(now_ms());
                }
                self.save();
            }
            Action::Term(idx) => {
                // The stop phase: from SIGTERM (or SIGKILL when forced) until the exit.
                self.stop_t0 = Some(now_us());
                if let Some(c) = &self.slots[idx].container
                    && let Err(e) = c.kill(Signal::SIGTERM)
                {
                    tracing::debug!(error = %e, "SIGTERM failed");
                }
            }
            Action::Kill(idx) => {
                self.stop_t0.get_or_insert_with(now_us);
                tracing::info!(task_id = %self.task.id, container = %self.slots[idx].row.name,
                    "stopTimeout passed: sending SIGKILL");
                if let Some(c) = &self.slots[idx].container
                    && let Err(e) = c.kill(Signal::SIGKILL)
                {
                    tracing::warn!(error = %error_chain(&e), "SIGKILL failed");
                }
            }
            Action::Abandon(idx) => self.warnings.push(format!(
                "container {} did not exit after SIGKILL",
                self.slots[idx].row.name
            )),
            Action::Stopped(idx) => {
                if let Some(t0) = self.stop_t0.take() {
                    self.phases.push(Phase {
                        container: self.slots[idx].row.name.clone(),
                        phase: "stop",
                        start: t0,
                        end: now_us(),
                    });
                }
            }
            Action::NeverRan(idx) => {
                self.slots[idx].row.last_status = LastStatus::Stopped;
                self.save_container(idx);
            }
            Action::Done => {
                self.task.execution_stopped_at = Some(now_ms());
                self.save();
                return true;
            }
        }
        false
    }

    /// Desired STOPPED with the stop code and reason (the machine gives the first only).
    fn record_stop(&mut self, code: StopCode, why: &str) {
        tracing::info!(task_id = %self.task.id, stop_code = %code, reason = why, "stopping task");
        self.task.desired_status = DesiredStatus::Stopped;
        self.task.stop_code = Some(code);
        self.task.stopped_reason = Some(cut_reason(why));
        self.task.stopping_at = Some(now_ms());
        self.save();
    }

    /// Container `idx` never started (or will not again): STOPPED with `why`.
    fn record_failure(&mut self, idx: usize, why: &str) {
        tracing::warn!(task_id = %self.task.id, container = %self.slots[idx].row.name, reason = %why,
            "container failed");
        self.finish_awslogs(idx);
        let row = &mut self.slots[idx].row;
        row.last_status = LastStatus::Stopped;
        row.reason = Some(cut_reason(why));
        self.save_container(idx);
    }

    /// Container `idx` exited for good: its exit code and reason.
    fn record_exit(&mut self, idx: usize) {
        let (code, why) = self.slots[idx].exit.take().unwrap_or((255, None));
        let row = &mut self.slots[idx].row;
        row.exit_code = Some(code.into());
        row.finished_at = Some(now_ms());
        row.last_status = LastStatus::Stopped;
        row.reason = why.map(|w| cut_reason(&w));
        tracing::info!(task_id = %self.task.id, container = %row.name, exit_code = code, "container exited");
        self.save_container(idx);
    }

    fn drain_events(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.handle(ev);
        }
    }

    fn handle(&mut self, ev: Event) {
        self.last_event = Instant::now();
        self.released = false;
        match ev {
            Event::Stop {
                stop_code,
                reason,
                force,
            } => self.feed(machine::Event::StopRequested {
                code: stop_code,
                reason,
                force,
            }),
            Event::Exited { idx } => self.exited(idx),
            Event::Health { idx, ok } => self.health_result(idx, ok),
        }
    }

    fn health_result(&mut self, idx: usize, ok: bool) {
        let running = matches!(self.machine.status(idx), Status::Running { .. });
        let Some(h) = self.slots[idx].health.as_mut() else {
            return;
        };
        if !running {
            h.in_flight = false;
            return;
        }
        if h.record(ok, Instant::now()) {
            let status = h.status;
            tracing::info!(task_id = %self.task.id, container = %self.slots[idx].row.name,
                health = %status, "container health changed");
            self.slots[idx].row.health_status = Some(status);
            if status == HealthStatus::Healthy
                && let Some(started) = self.slots[idx].row.started_at
            {
                self.phase(Some(idx), "healthy", started * 1000);
            }
            self.save_container(idx);
            let healthy = status == HealthStatus::Healthy;
            self.feed(machine::Event::Health { idx, healthy });
        }
    }

    /// Starts the checks that are due; returns how long until the next one.
    fn run_due_checks(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        for idx in 0..self.slots.len() {
            if !matches!(self.machine.status(idx), Status::Running { .. }) {
                continue;
            }
            let Some(container) = self.slots[idx].container.clone() else {
                continue;
            };
            let Some(h) = self.slots[idx].health.as_mut() else {
                continue;
            };
            if h.in_flight {
                continue;
            }
            if h.next <= now {
                h.in_flight = true;
                let tx = self.tx.clone();
                health::run_check(container, &h.check, move |ok| {
                    let _ = tx.send(Event::Health { idx, ok });
                });
            } else {
                let wait = h.next - now;
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        next
    }

    /// Commits what the container's awslogs driver still holds; reports the lines a
    /// non-blocking driver dropped (Docker drops them silently; ECS says nothing either,
    /// here it is a task warning).
    fn finish_awslogs(&mut self, idx: usize) {
        self.finish_firelens(idx);
        let Some(a) = self.slots[idx].awslogs.take() else {
            return;
        };
        a.finish();
        let lost = a.forward_lost.load(std::sync::atomic::Ordering::Relaxed);
        if lost > 0 {
            let name = &self.slots[idx].row.name;
            self.warnings.push(format!(
                "container {name}: {lost} log event(s) could not be forwarded to CloudWatch \
                 Logs (see the supervisor log)"
            ));
        }
        let dropped = a.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            let name = &self.slots[idx].row.name;
            let w = format!(
                "container {name}: awslogs mode non-blocking dropped {dropped} log line(s): its \
                 max-buffer-size ({} bytes) was full",
                a.options().max_buffer
            );
            tracing::warn!(task_id = %self.task.id, container = %name, dropped, "awslogs dropped lines");
            self.warnings.push(w);
        }
    }

    /// Lets the container's awsfirelens driver hand its queued lines to the router;
    /// reports the lines it dropped (a task warning: Docker's async fluentd driver only
    /// logs them).
    fn finish_firelens(&mut self, idx: usize) {
        let Some(f) = self.slots[idx].firelens.take() else {
            return;
        };
        f.finish();
        let dropped = f.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            let name = &self.slots[idx].row.name;
            let w = format!(
                "container {name}: awsfirelens dropped {dropped} log line(s): the log router \
                 did not take them (the driver holds at most {} bytes, log-driver-buffer-limit, \
                 and waits 5 s for the router once the container stops)",
                f.buffer_limit()
            );
            tracing::warn!(task_id = %self.task.id, container = %name, dropped, "awsfirelens dropped lines");
            self.warnings.push(w);
        }
    }

    fn exited(&mut self, idx: usize) {
        if !matches!(self.machine.status(idx), Status::Running { .. }) {
            return;
        }
        let Some(container) = self.slots[idx].container.clone() else {
            return;
        };
        // Exited: this returns at once (once the log copiers have drained the pipes).
        let st = container.wait().map_err(|e| error_chain(&e));
        drop(container);
        self.finish_awslogs(idx);
        let (code, why) = match st {
            Ok(s) => (Some(s.code), resources::exit_reason(&s).map(str::to_string)),
            Err(e) => (None, Some(format!("failed to wait for the container: {e}"))),
        };
        self.slots[idx].exit = Some((code.unwrap_or(255), why));
        self.feed(machine::Event::Exited { idx, code });
    }

    /// restartPolicy: deletes the exited container and starts it again on the same rootfs
    /// and network namespace. Ref: `crate::supervisor::machine`.
    fn restart(&mut self, idx: usize) {
        self.inside.restarted(idx);
        let code = self.slots[idx].exit.take().map_or(255, |e| e.0);
        // warn: a crash loop is what an operator wants to see in the supervisor log.
        tracing::warn!(task_id = %self.task.id, container = %self.slots[idx].row.name, exit_code = code,
            restart_count = self.machine.restart_count(idx), "restarting container (restartPolicy)");
        let deleted = match self.slots[idx].container.take() {
            Some(container) => delete_when_free(container),
            None => Ok(()),
        };
        if let Err(e) = deleted {
            let why = format!(
                "{}: failed to delete the exited container for its restart: {e}",
                reason::CANNOT_START
            );
            return self.fail_container(idx, why);
        }
        let row = &mut self.slots[idx].row;
        row.exit_code = None;
        row.reason = None;
        row.finished_at = None;
        self.start(idx);
    }

    /// Finishes the tasks whose supervisor died (supervisor::reconcile), which may hold what this
    /// task could not get: an address, a host port, a user namespace id range. RunTask does
    /// not walk every running task's supervisor before it starts one (that walk grows with
    /// the number of tasks, docs/benchmarks.md "N idle tasks"), so it is done here, only
    /// when something is short. True when a dead task was finished (worth a second try).
    fn finish_dead_tasks(&self) -> bool {
        let (root, run_root) = (&self.opts.root, &self.opts.run_root);
        match self
            .store
            .with(|s| crate::supervisor::reconcile::reconcile(s, root, run_root))
        {
            Ok(ids) => {
                for id in &ids {
                    tracing::warn!(task_id = %self.task.id, dead_task = %id,
                        "a task whose supervisor had died held what this task needs: it is stopped and cleaned up");
                }
                !ids.is_empty()
            }
            Err(e) => {
                tracing::error!(task_id = %self.task.id, error = %error_chain(&e),
                    "failed to check the other tasks' supervisors");
                false
            }
        }
    }

    /// Every container that has not run gets `why`; the task fails to start with it. While
    /// the network is wired beside, its failure is the reason (`wiring`).
    fn fail_all(&mut self, why: &str) {
        let reason = match self.join_wiring() {
            Err(net) => net.to_string(),
            Ok(()) => why.to_string(),
        };
        self.feed(machine::Event::ProvisionFailed { reason });
    }

    /// Runs the task's containers to their end as the machine says: starts in dependsOn
    /// order, exits, restarts, health checks, then the stop (dependents first, SIGTERM,
    /// SIGKILL after stopTimeout).
    fn drive(&mut self) {
        self.defer_saves = true;
        loop {
            // Events between the actions of one batch wait: a pass over the containers
            // starts what it can before it looks at what they did (the task is RUNNING
            // even if its only container exits at once).
            self.drain_events();
            while let Some(a) = self.machine.poll(self.now()) {
                if self.apply(a) {
                    // What waits is written with DEPROVISIONING, the teardown's first save.
                    self.defer_saves = false;
                    return;
                }
            }
            self.flush_saves();
            let now = self.now();
            let mut timeout = self
                .machine
                .wakeup(now)
                .unwrap_or(Duration::from_secs(3600));
            if self.machine.phase() == machine::Phase::Running {
                if let Some(n) = self.run_due_checks() {
                    timeout = timeout.min(n);
                }
                // Not while a health check runs: its exec clones this process (libcontainer's
                // raw clone3), and a malloc lock held by the trim at that moment would stay
                // held in the child (docs/reliability.md). Its result, an event, re-arms this.
                if !self.released && !self.machine.any_pending() && !self.checking() {
                    match self
                        .idle_release_after
                        .checked_sub(self.last_event.elapsed())
                    {
                        Some(left) if !left.is_zero() => timeout = timeout.min(left),
                        _ => self.release_idle_memory(),
                    }
                }
            }
            match self.events.recv_timeout(timeout) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    /// Whether a health check's exec is in flight.
    fn checking(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.health.as_ref().is_some_and(|h| h.in_flight))
    }

    /// Idle with its containers running: closes the store connection, then releases the
    /// setup code's pages, the unused main-thread stack and free heap (`runtime`).
    fn release_idle_memory(&mut self) {
        self.released = true;
        self.store.close();
        // The executable's pages go once this thread is back waiting for events, so the
        // code it runs on the way there stays released too (`runtime`).
        if let Err(e) = runtime::release_idle_memory_deferred(Duration::from_millis(20)) {
            tracing::debug!(task_id = %self.task.id, error = %e, "failed to release idle memory");
        }
    }

    fn image_defaults(&self, idx: usize) -> ImageDefaults {
        let Some(rec) = &self.slots[idx].image else {
            return ImageDefaults::default();
        };
        let cfg = self.image_store_now().and_then(|s| s.image_config(rec));
        match cfg {
            Ok(cfg) => match cfg.config() {
                Some(c) => ImageDefaults {
                    entrypoint: c.entrypoint().clone().unwrap_or_default(),
                    cmd: c.cmd().clone().unwrap_or_default(),
                    env: c.env().clone().unwrap_or_default(),
                    working_dir: c.working_dir().clone(),
                    user: c.user().clone(),
                    volumes: c.volumes().clone().unwrap_or_default(),
                },
                None => ImageDefaults::default(),
            },
            Err(e) => {
                tracing::warn!(image = %rec.reference, error = %error_chain(&e), "no image config");
                ImageDefaults::default()
            }
        }
    }

    /// Creates and starts container `idx`: its spec, its create, the network's wiring
    /// joined, its start; then it is RUNNING. On a failure the container created is
    /// deleted and the machine told why.
    fn start(&mut self, idx: usize) {
        let rid = runtime_id(&self.task.id, idx);
        let name = self.slots[idx].row.name.clone();
        let started = match self.launch_spec(idx, &name, &rid) {
            Ok(spec) => self.create_and_start(idx, &rid, &spec),
            Err(why) => Err(NotStarted::Container(why)),
        };
        let container = match started {
            Ok(c) => c,
            Err(NotStarted::Container(why)) => return self.fail_container(idx, why),
            Err(NotStarted::Task(why)) => {
                self.fail_container(idx, why.clone());
                return self.fail_all(&why);
            }
        };
        let tx = self.tx.clone();
        container.on_exit(move || {
            let _ = tx.send(Event::Exited { idx });
        });
        self.machine
            .handle(self.now(), machine::Event::Started { idx });
        let slot = &mut self.slots[idx];
        slot.container = Some(container);
        slot.row.runtime_id = Some(rid);
        slot.row.started_at = Some(now_ms());
        slot.row.last_status = LastStatus::Running;
        if let Some(check) = slot.def.health_check.as_ref().and_then(Check::parse) {
            slot.health = Some(Health::new(check, Instant::now()));
            slot.row.health_status = Some(HealthStatus::Unknown);
        }
        tracing::info!(task_id = %self.task.id, container = %name, "container started");
        self.save_container(idx);
    }

    /// Container `idx`'s runtime spec: its definition over its image's defaults, the
    /// ECS environment, its log driver started, FireLens, its secrets, the network's
    /// files and hostname. Err: why it cannot be created (the container's reason).
    fn launch_spec(
        &mut self,
        idx: usize,
        name: &str,
        rid: &str,
    ) -> Result<runtime::ContainerSpec, String> {
        let mut ecs = spec::ecs_env(
            &self.opts.region,
            rid,
            &self.task.launch_type,
            self.inside.base(),
        );
        ecs.extend(self.inside.env());
        // S3 environmentFiles: under `environment` (ECS: "environment … take[s]
        // precedence over the variables contained within an environment file").
        ecs.extend(self.inside.file_env(idx));
        let img = self.image_defaults(idx);
        let mut spec = self
            .container_spec(idx, &img, ecs)
            .map_err(|e| format!("{}: {e}", reason::CANNOT_CREATE))?;
        // The log driver, as Docker initialises it at container create.
        match self.awslogs(idx, name, rid) {
            Ok(Some(a)) => {
                if let runtime::LogConfig::JsonFile { sink, .. } = &mut spec.log {
                    *sink = Some(runtime::SinkRef(a.clone()));
                }
                self.slots[idx].awslogs = Some(a);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("{}: {e}", reason::CANNOT_START)),
        }
        if let Some((plan, files)) = &self.firelens {
            // The router gets its generated configuration and socket directory.
            if idx == plan.router {
                spec.mounts.extend(files.mounts(plan));
                spec.env = spec::merge_env(&[std::mem::take(&mut spec.env), plan.router_env()]);
            }
            // A routed container: its lines go to the router (and its json-file stays, as
            // with every driver here, for `minifargate logs`).
            if let Some(r) = plan.routed.iter().find(|r| r.idx == idx) {
                let sink =
                    crate::supervisor::logs::firelens::Sink::start(plan, r, rid, files.socket());
                if let runtime::LogConfig::JsonFile { sink: s, .. } = &mut spec.log {
                    *s = Some(runtime::SinkRef(sink.clone()));
                }
                spec.env = spec::merge_env(&[std::mem::take(&mut spec.env), plan.env()]);
                self.slots[idx].firelens = Some(sink);
            }
        }
        // `secrets` last: values only the container's environment ever holds.
        spec.env = spec::merge_env(&[std::mem::take(&mut spec.env), self.inside.secrets(idx)]);
        if let Some(a) = &self.attachment {
            spec.mounts
                .extend(a.mounts.get(idx).into_iter().flatten().cloned());
            if a.hostname_fixed || spec.hostname.is_none() {
                spec.hostname = a.hostname.clone().or(spec.hostname.take());
            }
        }
        Ok(spec)
    }

    /// Creates container `idx` from `spec` in the task's network namespace (or, with
    /// disableNetworking, one of its own with loopback up), joins the network's wiring and
    /// starts it. A container created and not started is deleted before the error.
    fn create_and_start(
        &mut self,
        idx: usize,
        rid: &str,
        spec: &runtime::ContainerSpec,
    ) -> Result<Arc<Container>, NotStarted> {
        // disableNetworking: a network namespace of the container's own, loopback only, as
        // Docker's `NetworkDisabled` (ECS passes it through on EC2).
        let no_network = self.slots[idx].def.disable_networking == Some(true);
        let netns = if no_network {
            None
        } else {
            self.attachment.as_ref().and_then(|a| a.netns.clone())
        };
        // A net.* sysctl is written into the namespace at create: its links must be there
        // (eth0's own keys, the defaults eth0 would inherit), as they are under ECS.
        if !no_network
            && spec.sysctls.iter().any(|(k, _)| k.starts_with("net."))
            && let Err(why) = self.join_wiring()
        {
            return Err(NotStarted::Task(why.to_string()));
        }
        let rt = self.rt.as_ref().expect("runtime set in provision");
        let t0 = now_us();
        let created = rt.create(
            rid,
            &self.task.id,
            spec,
            &self.paths.rootfs(idx),
            netns.as_deref(),
        );
        self.phase(Some(idx), "create", t0);
        self.warmer.take();
        let container = match created {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let why = format!("{}: {}", reason::CANNOT_START, error_chain(&e));
                return Err(NotStarted::Container(why));
            }
        };
        if no_network {
            let ns = PathBuf::from(format!("/proc/{}/ns/net", container.pid()));
            if let Err(e) = netns::loopback_up(&ns) {
                let why = format!(
                    "{}: failed to bring up the loopback of a container with disableNetworking: {}",
                    reason::CANNOT_START,
                    error_chain(&e)
                );
                self.discard(container);
                return Err(NotStarted::Container(why));
            }
        }
        // The network's wiring and the endpoint, before any of the task's code runs.
        if let Err(why) = self.join_wiring() {
            let why = why.to_string();
            self.discard(container);
            return Err(NotStarted::Task(why));
        }
        let t0 = now_us();
        let started = container.start();
        self.phase(Some(idx), "start", t0);
        if let Err(e) = started {
            let why = format!("{}: {}", reason::CANNOT_START, error_chain(&e));
            self.discard(container);
            return Err(NotStarted::Container(why));
        }
        Ok(container)
    }

    /// Deletes a container created but not started; a failure is one of the task's
    /// warnings.
    fn discard(&mut self, container: Arc<Container>) {
        if let Ok(c) = Arc::try_unwrap(container)
            && let Err(d) = c.delete()
        {
            self.warnings.push(format!("teardown: {}", error_chain(&d)));
        }
    }

    /// The awslogs driver of container `idx`, started, when it uses awslogs.
    fn awslogs(
        &mut self,
        idx: usize,
        name: &str,
        rid: &str,
    ) -> Result<
        Option<Arc<crate::supervisor::logs::awslogs::Awslogs>>,
        crate::supervisor::logs::awslogs::AwslogsError,
    > {
        use crate::supervisor::logs::awslogs::{Awslogs, Options};
        let Some(o) = Options::of(self.slots[idx].def.log_configuration.as_ref())? else {
            return Ok(None);
        };
        let stream = o.stream_name(name, &self.task.id, rid);
        let forward = if crate::supervisor::logs::forward::enabled() {
            let region = o.region.clone().unwrap_or_else(|| self.opts.region.clone());
            match crate::supervisor::logs::forward::Forwarder::new(
                self.inside.execution.clone(),
                &region,
                &o.group,
                &stream,
                o.create_group,
            ) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.warnings.push(format!(
                        "container {name}: its logs are not forwarded to CloudWatch Logs: {e}"
                    ));
                    None
                }
            }
        } else {
            None
        };
        Awslogs::start(o, self.opts.root.clone(), stream, forward).map(Some)
    }

    /// The runtime spec of container `idx`: its settings, its volumes (filled from the image
    /// when new), and on its first start the warnings about what this host changes.
    fn container_spec(
        &mut self,
        idx: usize,
        img: &ImageDefaults,
        ecs: Vec<String>,
    ) -> Result<runtime::ContainerSpec, SpecStepError> {
        let def = &self.slots[idx].def;
        let name = def.name_str().to_string();
        let wants_init = def
            .linux_parameters
            .as_ref()
            .is_some_and(|l| l.init_process_enabled == Some(true));
        let init = wants_init.then(spec::static_init).flatten();
        let rotation = crate::supervisor::logs::logging::rotation(def.log_configuration.as_ref())
            .map_err(|e| SpecStepError::LogRotation {
            container: name.clone(),
            detail: e.to_string(),
        })?;
        let log = runtime::LogConfig::JsonFile {
            path: self.paths.log(&name),
            rotation,
            sink: None,
        };
        let mut spec = spec::build(def, img, ecs, log, init)
            .map_err(|e| SpecStepError::Settings(e.to_string()))?;
        self.namespaces.apply(&mut spec);
        // `apparmor:unconfined` on a host without AppArmor: nothing to lift (libcontainer
        // would refuse any profile there).
        if spec.security.apparmor_profile.as_deref() == Some("unconfined")
            && !crate::supervisor::support::apparmor_enabled(std::path::Path::new("/sys"))
        {
            spec.security.apparmor_profile = None;
        }
        let defs: Vec<ContainerDefinition> = self.slots.iter().map(|s| s.def.clone()).collect();
        let mut mounts = self
            .volumes
            .mounts(&defs, idx)
            .map_err(|e| SpecStepError::Mounts(e.to_string()))?;
        // linuxParameters.tmpfs after the volumes: a tmpfs inside a volume stays visible.
        mounts.append(&mut spec.mounts);
        spec.mounts = mounts;
        self.volumes
            .populate(&defs[idx], &self.paths.rootfs(idx), &img.volumes)
            .map_err(|e| SpecStepError::Populate(error_chain(&e)))?;
        if self.machine.restart_count(idx) == 0 {
            let host_max = |n: &str| {
                let (_, res) = runtime::oci::rlimit_resource(n)?;
                let max = runtime::oci::HostLimits::max_hard(&runtime::oci::ProcessLimits, res);
                (max != u64::MAX).then_some(max)
            };
            let mut w = spec::host_warnings(idx, &defs[idx], &host_max);
            if wants_init && spec.init.is_none() {
                w.push(format!(
                    "containerDefinitions[{idx}].linuxParameters.initProcessEnabled: no static \
                     init binary on this host (a static minifargate build, or tini-static); \
                     running without an init"
                ));
            }
            if !w.is_empty() {
                for x in &w {
                    tracing::warn!(task_id = %self.task.id, container = %name, "{x}");
                }
                self.warnings.extend(w);
                self.save();
            }
        }
        Ok(spec)
    }
}
