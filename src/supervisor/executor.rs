//! The lifecycle of one task, run by its supervisor: network, pulls, task cgroup, rootfs,
//! containers in dependsOn order, essential exits, stop in reverse order, teardown.
//!
//! Every transition is written to the store as it happens. Teardown runs every step and
//! records every error (in the supervisor log and the task's warnings).

use crate::error_chain;
use crate::store::{
    ContainerRow, DesiredStatus, HealthStatus, LastStatus, SharedStore, StopCode, Store,
    StoreError, TaskRow,
};
use crate::supervisor::deps::{self, Dep, DepState, Verdict};
use crate::supervisor::health::{self, Check, Health};
use crate::supervisor::isolation::network::{Attachment, TaskNetwork};
use crate::supervisor::isolation::resources;
use crate::supervisor::isolation::volumes::TaskVolumes;
use crate::supervisor::restart::{self, Tracker};
use crate::supervisor::spec::{self, ImageDefaults};
use crate::task::{PullPolicy, TaskPaths, cut_reason, reason, runtime_id, stop};
use crate::taskdef::model::{ContainerDefinition, NetworkMode, TaskDefinition};
use rootfs_cache::{ImageRecord, Puller, RegistryClient};
use runtime::{Container, Runtime, Signal, TaskLimits};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// ECS default `stopTimeout` (Fargate and ECS_CONTAINER_STOP_TIMEOUT): 30 s.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

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

enum State {
    Pending,
    Running {
        since: Instant,
        container: Arc<Container>,
    },
    Exited {
        code: i32,
        container: Option<Arc<Container>>,
    },
    /// Never started (or never will).
    Failed,
}

struct Slot {
    def: ContainerDefinition,
    row: ContainerRow,
    state: State,
    image: Option<ImageRecord>,
    mounted: bool,
    health: Option<Health>,
    /// (index of the dependency, condition)
    deps: Vec<(usize, crate::taskdef::model::ContainerCondition)>,
    restart: Tracker,
    /// The awslogs driver of the running container, if it uses awslogs.
    awslogs: Option<Arc<crate::supervisor::logs::awslogs::Awslogs>>,
    /// The awsfirelens driver of the running container, if it routes its logs.
    firelens: Option<Arc<crate::supervisor::logs::firelens::Sink>>,
}

pub struct Executor {
    store: SharedStore,
    task: TaskRow,
    slots: Vec<Slot>,
    order: Vec<usize>,
    paths: TaskPaths,
    opts: Options,
    events: Receiver<Event>,
    tx: Sender<Event>,
    rt: Option<Runtime>,
    net: Box<dyn TaskNetwork>,
    attachment: Option<Attachment>,
    task_cgroup: bool,
    started: Instant,
    force_stop: bool,
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
    /// [`IDLE_RELEASE_AFTER`], or the environment's override.
    idle_release_after: Duration,
    /// Launch phases ([`Executor::phase`]) not yet written: they go into the store with the
    /// next save of the task or a container, in its transaction.
    phases: Vec<Phase>,
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
/// unless the router depends on others or the container already names it.
/// Ref: agent/api/task/task.go addFirelensContainerDependency.
fn firelens_dependencies(slots: &mut [Slot]) {
    use crate::taskdef::model::ContainerCondition;
    let Some(router) = slots
        .iter()
        .position(|s| s.def.firelens_configuration.is_some())
    else {
        return;
    };
    if slots[router]
        .def
        .depends_on
        .as_ref()
        .is_some_and(|d| !d.is_empty())
    {
        tracing::warn!(container = %slots[router].row.name, "not adding container dependency to let firelens container start first since it has dependency on other containers");
        return;
    }
    for (idx, slot) in slots.iter_mut().enumerate() {
        if idx != router
            && crate::supervisor::logs::firelens::uses_awsfirelens(&slot.def)
            && !slot.deps.iter().any(|(d, _)| *d == router)
        {
            slot.deps.push((router, ContainerCondition::Start));
        }
    }
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
        let defs = def.container_definitions.clone().unwrap_or_default();
        let index_of = |name: &str| containers.iter().position(|c| c.name == name);
        let period_override = restart::period_override();
        let slots: Vec<Slot> = containers
            .iter()
            .map(|row| {
                let d = defs
                    .iter()
                    .find(|d| d.name_str() == row.name)
                    .cloned()
                    .unwrap_or_default();
                let deps = d
                    .depends_on
                    .iter()
                    .flatten()
                    .filter_map(|dep| {
                        Some((index_of(dep.container_name.as_deref()?)?, dep.condition?))
                    })
                    .collect();
                Slot {
                    restart: Tracker::new(d.restart_policy.as_ref(), period_override),
                    def: d,
                    row: row.clone(),
                    state: State::Pending,
                    image: None,
                    mounted: false,
                    health: None,
                    deps,
                    awslogs: None,
                    firelens: None,
                }
            })
            .collect();
        let mut slots = slots;
        firelens_dependencies(&mut slots);
        let order = deps::start_order(
            &slots
                .iter()
                .map(|s| s.deps.iter().map(|d| d.0).collect())
                .collect::<Vec<_>>(),
        );
        let warnings = task.warnings.clone();
        Executor {
            store,
            task,
            slots,
            order,
            paths,
            opts,
            events: channel.1,
            tx: channel.0,
            rt: None,
            net,
            attachment: None,
            task_cgroup: false,
            started: Instant::now(),
            last_event: Instant::now(),
            released: false,
            idle_release_after: idle_release_after(),
            force_stop: false,
            warnings,
            userns: None,
            volumes: TaskVolumes::default(),
            ephemeral: None,
            inside: Default::default(),
            warmer: None,
            phases: Vec::new(),
            namespaces: Default::default(),
            firelens: None,
        }
    }

    /// Creates the task's cgroup now, ahead of `run`, and starts warming the kernel's
    /// cgroup migration lock in it (`runtime::MigrationWarmer`): the ~7 ms grace period
    /// that the first migration after a quiet spell waits for then passes while the
    /// network and the rootfs are set up, instead of inside the first container's create.
    /// The cgroups, the task's and its containers', are made before the warmer starts:
    /// the warmer's first migration holds the kernel's cgroup mutex through the grace
    /// period, and a mkdir would wait for it.
    /// On failure nothing is left; `run` tries again and reports the error.
    pub fn prepare_task_cgroup(&mut self, def: &TaskDefinition) {
        if self.task_cgroup {
            return;
        }
        let Ok(rt) = Runtime::new(self.paths.runtime_state()) else {
            return;
        };
        if rt
            .create_task_cgroup(&self.task.id, &self.limits(def))
            .is_err()
        {
            return;
        }
        self.task_cgroup = true;
        // The containers' cgroup dirs too, before the warmer (see there). On failure each
        // container's create makes its own and reports what failed.
        let ids: Vec<String> = (0..self.slots.len())
            .map(|idx| runtime_id(&self.task.id, idx))
            .collect();
        if let Err(e) = rt.cgroups().precreate_containers(&self.task.id, &ids) {
            tracing::debug!(task_id = %self.task.id, error = %e, "container cgroups not made ahead");
        }
        self.warmer = rt
            .cgroups()
            .warm_migrations(&self.task.id, Duration::from_secs(2));
        self.rt = Some(rt);
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

    /// Runs the task to STOPPED and tears it down (never returns early: teardown always
    /// happens). Returns the containers' scratch directories (upper and work dirs,
    /// unmounted, renamed out of the way) for the caller to delete once it has reported
    /// the task done ([`remove_scratch`]): on this host's ext4, freeing their blocks
    /// waits for a discard each (~1 ms per task).
    #[must_use = "the scratch dirs are to be removed (remove_scratch)"]
    pub fn run(mut self, network_mode: NetworkMode, def: &TaskDefinition) -> Vec<PathBuf> {
        tracing::info!(task_id = %self.task.id, "task provisioning");
        if self.provision(network_mode, def) {
            self.run_containers();
        } else {
            // No-op when a failure (or a stop-task) already set the reason.
            self.request_stop(StopCode::TaskFailedToStart, "Task failed to start");
        }
        self.stop_containers();
        let scratch = self.deprovision();
        tracing::info!(task_id = %self.task.id, stop_code = ?self.task.stop_code,
            reason = ?self.task.stopped_reason, "task stopped");
        scratch
    }

    fn save(&mut self) {
        self.task.warnings.clone_from(&self.warnings);
        let task = &self.task;
        write_with_phases(
            &self.store,
            &mut self.phases,
            &task.id,
            "save the task",
            |s| s.save_task(task),
        );
    }

    fn save_container(&mut self, idx: usize) {
        let row = &self.slots[idx].row;
        write_with_phases(
            &self.store,
            &mut self.phases,
            &self.task.id,
            "save a container",
            |s| s.save_container(row),
        );
    }

    /// Notes that `phase` of container `idx` (the task's when `None`) ran from `start`
    /// (µs) until now, for `run-task --timeline`. Written with the next save (each of
    /// which follows a phase soon): one store transaction fewer per phase.
    fn phase(&mut self, idx: Option<usize>, phase: &'static str, start: i64) {
        let container = idx.map_or(String::new(), |i| self.slots[i].row.name.clone());
        self.phases.push(Phase {
            container,
            phase,
            start,
            end: now_us(),
        });
    }

    fn stopping(&self) -> bool {
        self.task.desired_status == DesiredStatus::Stopped
    }

    /// Sets desired STOPPED with the first stop code and reason only.
    fn request_stop(&mut self, code: StopCode, why: &str) {
        if self.stopping() {
            return;
        }
        tracing::info!(task_id = %self.task.id, stop_code = %code, reason = why, "stopping task");
        self.task.desired_status = DesiredStatus::Stopped;
        self.task.stop_code = Some(code);
        self.task.stopped_reason = Some(cut_reason(why));
        self.task.stopping_at = Some(now_ms());
        self.save();
    }

    /// Marks container `idx` as never started with `why`, and stops the task if it is essential.
    fn fail_container(&mut self, idx: usize, why: String) {
        tracing::warn!(task_id = %self.task.id, container = %self.slots[idx].row.name, reason = %why,
            "container failed");
        self.finish_awslogs(idx);
        let slot = &mut self.slots[idx];
        slot.state = State::Failed;
        slot.row.last_status = LastStatus::Stopped;
        slot.row.reason = Some(cut_reason(&why));
        let essential = slot.row.essential;
        self.save_container(idx);
        if essential {
            let code = if self.task.started_at.is_none() {
                StopCode::TaskFailedToStart
            } else {
                StopCode::EssentialContainerExited
            };
            self.request_stop(code, &why);
        }
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
            } => {
                self.force_stop |= force;
                self.request_stop(stop_code, &reason);
            }
            Event::Exited { idx } => self.exited(idx),
            Event::Health { idx, ok } => self.health_result(idx, ok),
        }
    }

    fn health_result(&mut self, idx: usize, ok: bool) {
        let running = matches!(self.slots[idx].state, State::Running { .. });
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
        }
    }

    /// Starts the checks that are due; returns how long until the next one.
    fn run_due_checks(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Duration> = None;
        for idx in 0..self.slots.len() {
            let State::Running { container, .. } = &self.slots[idx].state else {
                continue;
            };
            let container = container.clone();
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

    /// Generates the log router's configuration into the task's dir (fetching an S3 config
    /// file with the execution identity), as the agent creates its FireLens resource
    /// before the containers. `Err` is the task's stopped reason.
    fn setup_firelens(&mut self, mode: NetworkMode, def: &TaskDefinition) -> Result<(), String> {
        use crate::supervisor::logs::firelens::{self, External, Files, TaskIds};
        let revision = self
            .task
            .task_definition_arn
            .rsplit(':')
            .next()
            .unwrap_or_default();
        let cluster = self
            .task
            .cluster
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let task_definition = format!("{}:{revision}", self.task.family);
        let ids = TaskIds {
            cluster: &cluster,
            task_arn: &self.task.arn,
            task_definition: &task_definition,
            task_id: &self.task.id,
        };
        let init = |e: &dyn std::fmt::Display| {
            format!(
                "{}: unable to initialize firelens resource: {e}",
                reason::RESOURCE_INIT
            )
        };
        let Some(plan) = firelens::plan(def, mode, &ids).map_err(|e| init(&e))? else {
            return Ok(());
        };
        let files = Files::new(self.paths.dir.join("firelens"));
        // Ref: sun_path holds 108 bytes with its NUL (unix(7)); the agent notes the same
        // limit for its data dir (firelens_unix.go createDirectories).
        let sock = files.socket();
        if sock.as_os_str().len() > 107 {
            return Err(init(&format!(
                "the router's socket path {} is longer than a unix socket path can be (107 \
                 bytes): use a shorter --root",
                sock.display()
            )));
        }
        let external = match &plan.external {
            Some(External::S3(o)) => Some(
                firelens::fetch_s3(&mut self.inside.execution, &self.opts.region, o)
                    .map_err(|e| init(&e))?,
            ),
            _ => None,
        };
        let text = plan.render().map_err(|e| init(&e))?;
        files
            .write(
                &text,
                external.as_deref(),
                plan.router_user.as_deref(),
                self.userns,
            )
            .map_err(|e| {
                format!(
                    "{}: unable to generate firelens config file: {}",
                    reason::RESOURCE_INIT,
                    error_chain(&e)
                )
            })?;
        tracing::info!(task_id = %self.task.id, config = %files.config().display(), "firelens config generated");
        self.firelens = Some((plan, files));
        Ok(())
    }

    fn exited(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        let (container, since) = match std::mem::replace(&mut slot.state, State::Failed) {
            State::Running { container, since } => (container, since),
            other => {
                slot.state = other;
                return;
            }
        };
        // Exited: this returns at once (once the log copiers have drained the pipes).
        let st = container.wait().map_err(|e| error_chain(&e));
        self.finish_awslogs(idx);
        let slot = &mut self.slots[idx];
        if let Ok(s) = &st
            && slot
                .restart
                .decide(
                    s.code,
                    since.elapsed(),
                    self.task.desired_status == DesiredStatus::Stopped,
                )
                .is_ok()
        {
            let code = s.code;
            return self.restart(idx, container, code);
        }
        let slot = &mut self.slots[idx];
        let (code, why) = match st {
            Ok(s) => (s.code, resources::exit_reason(&s).map(str::to_string)),
            Err(e) => (255, Some(format!("failed to wait for the container: {e}"))),
        };
        slot.state = State::Exited {
            code,
            container: Some(container),
        };
        slot.row.exit_code = Some(code.into());
        slot.row.finished_at = Some(now_ms());
        slot.row.last_status = LastStatus::Stopped;
        slot.row.reason = why.map(|w| cut_reason(&w));
        let essential = slot.row.essential;
        tracing::info!(task_id = %self.task.id, container = %slot.row.name, exit_code = code, "container exited");
        self.save_container(idx);
        if essential {
            self.request_stop(
                StopCode::EssentialContainerExited,
                stop::ESSENTIAL_EXITED_REASON,
            );
        }
    }

    /// restartPolicy: deletes the exited container and starts it again on the same rootfs
    /// and network namespace. Ref: `crate::supervisor::restart`.
    fn restart(&mut self, idx: usize, container: Arc<Container>, code: i32) {
        self.inside.restarted(idx);
        let slot = &mut self.slots[idx];
        slot.restart.count += 1;
        // warn: a crash loop is what an operator wants to see in the supervisor log.
        tracing::warn!(task_id = %self.task.id, container = %slot.row.name, exit_code = code,
            restart_count = slot.restart.count, "restarting container (restartPolicy)");
        // A health check still running holds a reference until its exec ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&container) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let deleted = match Arc::try_unwrap(container) {
            Ok(c) => c.delete().map_err(|e| error_chain(&e)),
            Err(_) => Err("it is still referenced".to_string()),
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

    /// Finishes the tasks whose supervisor died (task::reconcile), which may hold what this
    /// task could not get: an address, a host port, a user namespace id range. RunTask does
    /// not walk every running task's supervisor before it starts one (that walk grows with
    /// the number of tasks, docs/benchmarks.md "N idle tasks"), so it is done here, only
    /// when something is short. True when a dead task was finished (worth a second try).
    fn finish_dead_tasks(&self) -> bool {
        let (root, run_root) = (&self.opts.root, &self.opts.run_root);
        match self
            .store
            .with(|s| crate::task::reconcile::reconcile(s, root, run_root))
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

    /// Network, images, task cgroup, rootfs. False when the task cannot start.
    fn provision(&mut self, mode: NetworkMode, def: &TaskDefinition) -> bool {
        let task_id = self.task.id.clone();
        // The user namespace first: the holder makes it with the task's network namespace
        // owned by it, which the network step then adopts.
        let t0 = now_us();
        let userns = self.setup_userns(mode, def);
        self.phase(None, "userns", t0);
        if let Err(why) = userns {
            self.fail_all(&why);
            return false;
        }
        let t0 = now_us();
        let adopt = self.namespaces.net_namespace();
        let mut net = self.net.setup(&task_id, mode, adopt.as_deref());
        if net.as_ref().is_err_and(|e| e.held_by_another_task()) && self.finish_dead_tasks() {
            net = self.net.setup(&task_id, mode, adopt.as_deref());
        }
        self.phase(None, "network", t0);
        match net {
            Ok(a) => {
                self.warnings.extend(a.warnings.iter().cloned());
                self.attachment = Some(a);
            }
            Err(e) => {
                let why = format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e));
                self.fail_all(&why);
                return false;
            }
        }
        // From here on, the task's mounts go into a mount namespace of this supervisor's
        // (its netns pin is in the host's table now): the host's table, which libcontainer
        // reads several times per container, stays the same size however many tasks run.
        let pin = self.attachment.as_ref().and_then(|a| a.netns.clone());
        if let Err(e) = crate::supervisor::isolation::mountns::enter(pin.as_deref()) {
            tracing::warn!(task_id = %task_id, error = %error_chain(&e),
                "the task's mounts stay in the host's mount namespace");
        }
        crate::task::test_pause(&self.paths.run_dir, "network");
        self.task.last_status = LastStatus::Pending;
        self.save();
        // Secrets and the metadata endpoint before the pulls, as ECS resolves secrets
        // and registry auth in one step ("unable to pull secrets or registry auth").
        let netns = (mode != NetworkMode::Host)
            .then(|| self.attachment.as_ref().and_then(|a| a.netns.clone()))
            .flatten();
        let inside = self
            .inside
            .provision(crate::supervisor::endpoints::metadata::Settings {
                root: &self.opts.root,
                task: &self.task,
                def,
                region: &self.opts.region,
                netns: netns.as_deref(),
                secrets_file: self.opts.secrets_file.clone(),
                host_credentials: self.opts.host_credentials,
                host_execution_credentials: self.opts.host_execution_credentials,
            });
        if let Err(why) = inside {
            self.fail_all(&why.to_string());
            return false;
        }
        self.drain_events();
        if self.stopping() || !self.pull_images() {
            return false;
        }
        if !self.task_cgroup {
            let rt = match Runtime::new(self.paths.runtime_state()) {
                Ok(rt) => rt,
                Err(e) => {
                    self.fail_all(&format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)));
                    return false;
                }
            };
            if let Err(e) = rt.create_task_cgroup(&task_id, &self.limits(def)) {
                self.rt = Some(rt);
                self.fail_all(&format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)));
                return false;
            }
            self.task_cgroup = true;
            self.rt = Some(rt);
        }
        let logs = self.paths.dir.join("logs");
        if let Err(e) = std::fs::create_dir_all(&logs) {
            self.fail_all(&format!(
                "{}: failed to create {}: {e}",
                reason::RESOURCE_INIT,
                logs.display()
            ));
            return false;
        }
        if let Err(why) = self.setup_firelens(mode, def) {
            self.fail_all(&why);
            return false;
        }
        if crate::supervisor::isolation::ephemeral::enforced() {
            let t0 = now_us();
            let made = crate::supervisor::isolation::ephemeral::Ephemeral::create(
                &self.paths.dir,
                crate::supervisor::isolation::ephemeral::size_gib(def),
                self.slots.len(),
            );
            self.phase(None, "ephemeral", t0);
            match made {
                Ok(e) => self.ephemeral = Some(e),
                Err(e) => {
                    self.fail_all(&format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)));
                    return false;
                }
            }
        }
        if let Err(e) = self.paths.make_rootfs_dir(self.userns.map(|r| r.start)) {
            self.fail_all(&format!(
                "{}: failed to create {}: {e}",
                reason::RESOURCE_INIT,
                self.paths.rootfs_dir.display()
            ));
            return false;
        }
        let images = rootfs_cache::Store::open(&self.opts.root);
        for idx in 0..self.slots.len() {
            let layers: Vec<PathBuf> = match (&images, &self.slots[idx].image) {
                (Ok(store), Some(rec)) => rec
                    .layers
                    .iter()
                    .map(|l| store.layer_path(&l.diff_id))
                    .collect(),
                _ => {
                    self.fail_container(
                        idx,
                        format!("{}: the image cache is unavailable", reason::CANNOT_CREATE),
                    );
                    return false;
                }
            };
            let state = self.paths.container_state(idx);
            let target = self.paths.rootfs(idx);
            let t0 = now_us();
            // Volatile: the upper dir lives exactly as long as this mount (a restart
            // keeps the mount; teardown and reconcile delete the upper after the
            // unmount), so the unmount need not sync the host's whole filesystem.
            let user = self.namespaces.user_namespace();
            let mounted = rootfs_cache::rootfs::mount_mapped(
                &layers,
                &state,
                &target,
                rootfs_cache::rootfs::MountApi::Auto,
                true,
                user.as_ref().map(|u| rootfs_cache::rootfs::Idmap {
                    userns: &u.path,
                    root_uid: u.range.start,
                    root_gid: u.range.start,
                }),
            );
            self.phase(Some(idx), "rootfs", t0);
            match mounted {
                Ok(_) => self.slots[idx].mounted = true,
                Err(e) => {
                    self.fail_container(
                        idx,
                        format!("{}: {}", reason::CANNOT_CREATE, error_chain(&e)),
                    );
                    return false;
                }
            }
        }
        let user = self.namespaces.user_namespace();
        match self
            .volumes
            .setup(def, &self.paths.dir, &self.opts.root, user.as_ref())
        {
            Ok(notes) => self.warnings.extend(notes),
            Err(e) => {
                self.fail_all(&format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)));
                return false;
            }
        }
        // The holder of shared pid/ipc namespaces: the calling (main) thread owns the task
        // to its end, so the holder's PR_SET_PDEATHSIG fires only if this process dies.
        let t0 = now_us();
        let shared = self.namespaces.setup(def, &self.task.id, &mut self.volumes);
        self.phase(None, "namespaces", t0);
        if let Err(e) = shared {
            self.fail_all(&format!("{}: {e}", reason::RESOURCE_INIT));
            return false;
        }
        true
    }

    /// Decides whether the task gets a user namespace (`crate::supervisor::isolation::userns`) and, if so,
    /// claims its ids and starts the holder that makes it. Err: why the task cannot start.
    fn setup_userns(&mut self, mode: NetworkMode, def: &TaskDefinition) -> Result<(), String> {
        use crate::supervisor::isolation::userns::{self, Decision};
        let pool = match userns::decide(
            self.opts.userns,
            def,
            mode,
            userns::pool,
            userns::kernel_supports,
        ) {
            Decision::Host(note) => {
                self.warnings.extend(note);
                return Ok(());
            }
            Decision::Fail(why) => return Err(format!("{}: {why}", reason::RESOURCE_INIT)),
            Decision::Isolate(pool) => pool,
        };
        let id = self.task.id.clone();
        let claim = |s: &mut Store| {
            s.claim_userns_slot(&id, pool.slots(), |n| {
                let r = pool.range(n);
                (r.start, r.count)
            })
        };
        let mut slot = self.store.with(claim);
        if matches!(slot, Ok(None)) && self.finish_dead_tasks() {
            slot = self.store.with(claim);
        }
        let slot = slot
            .map_err(|e| format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)))?
            .ok_or_else(|| {
                format!(
                    "{}: no user namespace id range is free: all {} ranges of {} ids ({}:{} from \
                     {}) are held by running tasks",
                    reason::RESOURCE_INIT,
                    pool.slots(),
                    userns::TASK_IDS,
                    pool.start,
                    pool.count,
                    pool.source
                )
            })?;
        let range = pool.range(slot);
        self.userns = Some(range);
        crate::supervisor::isolation::userns::open_task_dir(
            &self.opts.root,
            &self.paths.dir,
            range,
        )
        .map_err(|e| format!("{}: {e}", reason::RESOURCE_INIT))?;
        tracing::info!(task_id = %id, host_ids = range.start, count = range.count,
            "task user namespace");
        self.namespaces
            .setup_user(def, &id, range)
            .map_err(|e| format!("{}: {}", reason::RESOURCE_INIT, error_chain(&e)))
    }

    /// Every container that has not run gets `why`; the task fails to start with it.
    fn fail_all(&mut self, why: &str) {
        for idx in 0..self.slots.len() {
            if matches!(self.slots[idx].state, State::Pending) {
                self.slots[idx].state = State::Failed;
                self.slots[idx].row.last_status = LastStatus::Stopped;
                self.slots[idx].row.reason = Some(cut_reason(why));
                self.save_container(idx);
            }
        }
        self.request_stop(StopCode::TaskFailedToStart, why);
    }

    /// Pulls (or finds) every image according to the pull policy.
    fn pull_images(&mut self) -> bool {
        self.task.pull_started_at = Some(now_ms());
        self.save();
        let result = self.pull_all();
        self.task.pull_stopped_at = Some(now_ms());
        self.save();
        match result {
            Ok(()) => true,
            Err((idx, why)) => {
                self.fail_container(idx, why.clone());
                self.request_stop(StopCode::TaskFailedToStart, &why);
                false
            }
        }
    }

    fn pull_all(&mut self) -> Result<(), (usize, String)> {
        let fail =
            |idx: usize, e: &dyn std::fmt::Display| (idx, format!("{}: {e}", reason::CANNOT_PULL));
        let images =
            rootfs_cache::Store::open(&self.opts.root).map_err(|e| fail(0, &error_chain(&e)))?;
        let mut get = ImageGetter {
            images,
            rt: None,
            pullers: Default::default(),
            limits: Default::default(),
            prefetched: Default::default(),
            prechecked: Default::default(),
            // runtimePlatform.cpuArchitecture picks the image from an index (crate::supervisor::isolation::platform).
            platform: crate::supervisor::isolation::platform::wanted_platform(
                &self.task.definition,
            ),
            policy: self.opts.pull,
            root: self.opts.root.clone(),
            config: self.opts.config.clone(),
        };
        let t_all = now_us();
        self.prefetch(&mut get);
        for idx in 0..self.slots.len() {
            // With the images pulled side by side, each container's pull phase spans
            // from the start of them all to its image being in hand.
            let t0 = if get.prefetched.is_empty() {
                now_us()
            } else {
                t_all
            };
            let image = self.slots[idx].row.image.clone();
            let rec = self
                .resolve_image(idx, &image, &mut get)
                .map_err(|reason| (idx, reason))?;
            // An image whose config says another architecture would fail with ENOEXEC
            // (or run under emulation unasked): refused by name before anything runs.
            if let Some(why) = crate::supervisor::isolation::platform::image_mismatch(
                &image,
                &rec.platform,
                &get.platform,
            ) {
                return Err(fail(idx, &why));
            }
            self.slots[idx].row.image_digest = Some(rec.digest.to_string());
            self.slots[idx].image = Some(rec);
            self.phase(Some(idx), "pull", t0);
            self.save_container(idx);
            self.drain_events();
            if self.stopping() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Container `idx`'s image. With versionConsistency (ECS's default) the tag resolves
    /// once per image scope (a service deployment, one RunTask call): the first task to
    /// get the image pins the digest the tag named (the index's, for a multi-platform
    /// image), and every other task of the scope runs that digest even if the tag moved.
    /// `disabled` takes the tag as it is at each task's start.
    /// Ref: ecs.json `ContainerDefinition.versionConsistency`, `ContainerImage`;
    /// docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html
    /// (Container image resolution).
    fn resolve_image(
        &mut self,
        idx: usize,
        image: &str,
        get: &mut ImageGetter,
    ) -> Result<ImageRecord, String> {
        fn store_err(e: &(dyn std::error::Error + 'static)) -> String {
            format!("{}: {}", reason::CANNOT_PULL, error_chain(e))
        }
        let name = self.slots[idx].row.name.clone();
        let Some(scope) = self.pin_scope(idx, image) else {
            return self.fetch(idx, image, None, get);
        };
        let pinned = self
            .store
            .with(|s| s.image_pin(&scope, &name))
            .map_err(|e| store_err(&e))?;
        if let Some(d) = pinned {
            return self.fetch(idx, image, Some(&d), get);
        }
        let rec = self.fetch(idx, image, None, get)?;
        let top = rec.index_digest.as_ref().unwrap_or(&rec.digest).to_string();
        let winner = self
            .store
            .with(|s| s.pin_image(&scope, &name, &top))
            .map_err(|e| store_err(&e))?;
        if winner == top {
            return Ok(rec);
        }
        // Another task of the scope resolved the tag first, to another digest (the tag
        // moved in between): run what it runs.
        tracing::info!(task_id = %self.task.id, %image, digest = %winner, "taking the deployment's image digest");
        self.fetch(idx, image, Some(&winner), get)
    }

    /// The scope whose pinned digest container `idx`'s image runs at (see
    /// [`Self::resolve_image`]); `None` when the reference is taken as it is.
    fn pin_scope(&self, idx: usize, image: &str) -> Option<String> {
        use crate::taskdef::model::VersionConsistency;
        let by_digest = rootfs_cache::pull::parse_reference(image)
            .map(|r| r.digest().is_some())
            .unwrap_or(false);
        self.task
            .image_scope
            .clone()
            .filter(|_| {
                self.slots[idx].def.version_consistency != Some(VersionConsistency::Disabled)
            })
            .filter(|_| !by_digest)
    }

    /// Pulls the distinct images the containers ask for first all at once, so a task's
    /// images download side by side (the layers they share once: rootfs-cache's layer
    /// locks; the per-registry bound shared: `ImageGetter::limits`). [`Self::fetch`]
    /// then takes each result from `get.prefetched`, so the containers still resolve in
    /// order and the first failing one, in definition order, gets the reason. What cannot
    /// be prepared here (credentials, a store read) is left to that pass, which reports it.
    fn prefetch(&mut self, get: &mut ImageGetter) {
        let mut wanted: Vec<(Option<usize>, String)> = Vec::new();
        let mut checks: Vec<(ImageKey, Box<ImageRecord>)> = Vec::new();
        for idx in 0..self.slots.len() {
            let image = self.slots[idx].row.image.clone();
            let name = self.slots[idx].row.name.clone();
            let pinned = match self.pin_scope(idx, &image) {
                None => None,
                Some(scope) => match self.store.with(|s| s.image_pin(&scope, &name)) {
                    Ok(p) => p,
                    Err(_) => continue,
                },
            };
            let (w, cached) = match get.lookup(&image, pinned.as_deref()) {
                Ok(Got::Pull(w)) => (w, None),
                Ok(Got::Check(rec, w)) => (w, Some(rec)),
                _ => continue,
            };
            let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
            if self.ensure_puller(key, get).is_err() {
                continue;
            }
            match cached {
                None if !wanted.contains(&(key, w.clone())) => wanted.push((key, w)),
                Some(rec) if !checks.iter().any(|(k, _)| *k == (key, w.clone())) => {
                    checks.push(((key, w), rec))
                }
                _ => {}
            }
        }
        self.precheck(get, checks);
        // One image: the pass in order pulls it as it always did.
        if wanted.len() < 2 {
            return;
        }
        let Some(rt) = get.rt.as_ref() else { return };
        tracing::info!(task_id = %self.task.id, images = wanted.len(), "pulling side by side");
        let pulls: Vec<_> = wanted
            .iter()
            .filter_map(|(key, w)| {
                let p = get.pullers.get(key)?.clone();
                Some(((*key, w.clone()), p))
            })
            .collect();
        let platform = get.platform.clone();
        let done = rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (k, p) in pulls {
                let platform = platform.clone();
                set.spawn(async move {
                    let r = p
                        .pull(&k.1, &platform, Arc::new(rootfs_cache::pull::Quiet))
                        .await
                        .map_err(|e| pull_reason(&e));
                    (k, r)
                });
            }
            // A panicked pull is left out: the pass in order pulls that image again.
            finished(set).await
        });
        get.prefetched.extend(done);
    }

    /// `default`'s registry checks of two or more cached images, asked side by side (the
    /// pass in order then reads their answers): a task's containers wait for one round
    /// trip, not one per image. One image is asked by the pass in order.
    fn precheck(&mut self, get: &mut ImageGetter, checks: Vec<(ImageKey, Box<ImageRecord>)>) {
        if checks.len() < 2 {
            return;
        }
        let Some(rt) = get.rt.as_ref() else { return };
        let asks: Vec<_> = checks
            .into_iter()
            .filter_map(|(k, rec)| Some((k.clone(), get.pullers.get(&k.0)?.clone(), rec)))
            .collect();
        let done = rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (k, p, rec) in asks {
                set.spawn(async move {
                    let r = p.check(&k.1, &rec).await;
                    (k, r)
                });
            }
            // A panicked check is left out: the pass in order asks again.
            finished(set).await
        });
        for (k, r) in done {
            let c = self.checked(&k.1, r);
            get.prechecked.insert(k, c);
        }
    }

    /// A registry's answer to `default`'s check of `wanted` as what the task does with it.
    fn checked(
        &self,
        wanted: &str,
        r: Result<rootfs_cache::pull::Freshness, rootfs_cache::PullError>,
    ) -> Checked {
        match r {
            Ok(rootfs_cache::pull::Freshness::Current) => Checked::Current,
            Ok(rootfs_cache::pull::Freshness::Changed { digest }) => {
                tracing::info!(task_id = %self.task.id, image = %wanted, %digest,
                    "the reference names another image now; pulling it");
                Checked::Changed
            }
            Err(e) if e.is_unreachable() => Checked::Unreachable(error_chain(&e)),
            Err(e) => Checked::Refused(pull_reason(&e)),
        }
    }

    /// The registry client for credentials `key` (see `ImageGetter::pullers`), built once.
    fn ensure_puller(&mut self, key: Option<usize>, get: &mut ImageGetter) -> Result<(), String> {
        if !get.pullers.contains_key(&key) {
            let overrides = {
                let rt = get.runtime()?;
                self.pull_overrides(key, rt).map_err(|(_, reason)| reason)?
            };
            let p = make_puller(&get.root, get.config.as_deref(), overrides, &get.limits)
                .map_err(|e| format!("{}: {}", reason::CANNOT_PULL, error_chain(e.as_ref())))?;
            get.pullers.insert(key, Arc::new(p));
        }
        Ok(())
    }

    /// Container `idx`'s image from the cache, or pulled (`digest`: that digest of it). The
    /// registry clients are only built when something is pulled: one with the task's own
    /// credentials (the execution role for ECR), and one per container with
    /// `repositoryCredentials`, which apply to its registry only. An error is the reason.
    fn fetch(
        &mut self,
        idx: usize,
        image: &str,
        digest: Option<&str>,
        get: &mut ImageGetter,
    ) -> Result<ImageRecord, String> {
        let wanted = match get.lookup(image, digest) {
            Ok(Got::Have(rec)) => return Ok(*rec),
            Ok(Got::Pull(wanted)) => wanted,
            Ok(Got::Check(rec, wanted)) => match self.check_cached(idx, &wanted, &rec, get) {
                Checked::Current => return Ok(*rec),
                Checked::Changed => wanted,
                Checked::Unreachable(why) => {
                    tracing::warn!(task_id = %self.task.id, image = %wanted, reason = %why,
                        "registry unreachable; running the cached image");
                    self.warnings.push(format!(
                        "containerDefinitions[{idx}].image {wanted}: the registry could not be \
                         reached, so the cached image {} was run without checking that this \
                         task may pull it or that the tag still names it: {why}",
                        rec.index_digest.as_ref().unwrap_or(&rec.digest)
                    ));
                    return Ok(*rec);
                }
                // An image `load` put in the cache was got with no registry's credentials:
                // the box's operator placed it for its tasks (as an image baked into an
                // AMI is for the agent's), so a registry that refuses it or lacks it does
                // not take it away; the task says so.
                Checked::Refused(why) if rec.loaded => {
                    self.warnings.push(format!(
                        "containerDefinitions[{idx}].image {wanted}: the registry did not serve \
                         it, so the image loaded into the cache (`minifargate load`) was run: \
                         {why}"
                    ));
                    return Ok(*rec);
                }
                Checked::Refused(reason) => return Err(reason),
            },
            Err(e) => return Err(format!("{}: {e}", reason::CANNOT_PULL)),
        };
        let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
        if let Some(r) = get.prefetched.get(&(key, wanted.clone())) {
            return r.clone();
        }
        self.ensure_puller(key, get)?;
        let (Some(rt), Some(p)) = (get.rt.as_ref(), get.pullers.get(&key)) else {
            return Err(format!("{}: no registry client", reason::CANNOT_PULL));
        };
        tracing::info!(task_id = %self.task.id, image = %wanted, "pulling");
        rt.block_on(p.pull(&wanted, &get.platform, Arc::new(rootfs_cache::pull::Quiet)))
            .map_err(|e| pull_reason(&e))
    }

    /// `default`'s question for a cached image (`wanted`, cached as `rec`): the registry
    /// is asked with container `idx`'s credentials (its `repositoryCredentials`, else the
    /// task's: the execution role for ECR), the manifest only. The ECS agent's default
    /// falls back to the cache on any failed pull (agent/config/types.go,
    /// `ImagePullDefaultBehavior`); here only a registry that cannot be reached does:
    /// one that answers 401/403/404 has refused this task the image, and Fargate, which
    /// keeps no cache, fails the task then (CannotPullContainerError).
    fn check_cached(
        &mut self,
        idx: usize,
        wanted: &str,
        rec: &ImageRecord,
        get: &mut ImageGetter,
    ) -> Checked {
        let key = self.inside.registry_auth.contains_key(&idx).then_some(idx);
        if let Some(c) = get.prechecked.get(&(key, wanted.to_string())) {
            return c.clone();
        }
        if let Err(reason) = self.ensure_puller(key, get) {
            // The execution role is assumed through STS first: an STS that cannot be
            // reached says nothing about access either. The SDK's error reads
            // "dispatch failure" (no connection) or "request has timed out" then
            // (aws-smithy-runtime-api `SdkError`'s Display).
            return if reason.contains("dispatch failure")
                || reason.contains("request has timed out")
            {
                Checked::Unreachable(reason)
            } else {
                Checked::Refused(reason)
            };
        }
        let (Some(rt), Some(p)) = (get.rt.as_ref(), get.pullers.get(&key)) else {
            return Checked::Refused(format!("{}: no registry client", reason::CANNOT_PULL));
        };
        let r = rt.block_on(p.check(wanted, rec));
        self.checked(wanted, r)
    }

    /// The credentials a registry client of this task uses instead of the host's: the
    /// execution identity for ECR (assumed now, only when some image is on ECR) and, for
    /// container `with_auth`, its `repositoryCredentials` for its image's registry.
    fn pull_overrides(
        &mut self,
        with_auth: Option<usize>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<rootfs_cache::auth::Overrides, (usize, String)> {
        let at = with_auth.unwrap_or(0);
        let mut o = rootfs_cache::auth::Overrides::default();
        let on_ecr = self.slots.iter().any(|s| {
            rootfs_cache::pull::parse_reference(&s.row.image).is_ok_and(|r| {
                let host = rootfs_cache::config::api_host(r.registry());
                rootfs_cache::auth::parse_ecr_host(&host).is_some()
            })
        });
        if on_ecr {
            o.ecr = rt
                .block_on(self.inside.execution.ecr_identity())
                .map_err(|e| {
                    (
                        at,
                        format!("{}: {e}", crate::supervisor::secrets::REASON_PREFIX),
                    )
                })?;
        }
        if let Some(idx) = with_auth
            && let Some(c) = self.inside.registry_auth.get(&idx)
        {
            let r = rootfs_cache::pull::parse_reference(&self.slots[idx].row.image)
                .map_err(|e| (idx, format!("{}: {}", reason::CANNOT_PULL, error_chain(&e))))?;
            o.basic
                .insert(rootfs_cache::config::api_host(r.registry()), c.clone());
        }
        Ok(o)
    }

    fn dep_view(&self, idx: usize) -> Vec<Dep> {
        let now = Instant::now();
        self.slots[idx]
            .deps
            .iter()
            .map(|&(d, condition)| {
                let s = &self.slots[d];
                let state = match &s.state {
                    State::Pending => DepState::Pending {
                        waited: now - self.started,
                    },
                    State::Running { since, .. } => DepState::Running { for_: now - *since },
                    State::Exited { code, .. } => DepState::Exited(*code),
                    State::Failed => DepState::Failed,
                };
                Dep {
                    name: s.row.name.clone(),
                    condition,
                    state,
                    start_timeout: s
                        .def
                        .start_timeout
                        .map(|t| Duration::from_secs(t.max(0) as u64)),
                    has_health_check: s.def.health_check.is_some(),
                    healthy: s
                        .health
                        .as_ref()
                        .is_some_and(|h| h.status == HealthStatus::Healthy),
                }
            })
            .collect()
    }

    fn run_containers(&mut self) {
        self.started = Instant::now();
        loop {
            self.drain_events();
            if self.stopping() {
                return;
            }
            let mut waiting = false;
            for i in 0..self.order.len() {
                let idx = self.order[i];
                if !matches!(self.slots[idx].state, State::Pending) || self.stopping() {
                    continue;
                }
                match deps::evaluate(&self.slots[idx].row.name, &self.dep_view(idx)) {
                    Verdict::Ready => self.start(idx),
                    Verdict::Wait => waiting = true,
                    Verdict::Never(why) => self.fail_container(idx, why),
                }
            }
            if self.stopping() {
                return;
            }
            let pending = self.slots.iter().any(|s| matches!(s.state, State::Pending));
            let running = self
                .slots
                .iter()
                .any(|s| matches!(s.state, State::Running { .. }));
            if !pending && self.task.last_status == LastStatus::Pending {
                self.task.last_status = LastStatus::Running;
                self.task.started_at = Some(now_ms());
                self.save();
                tracing::info!(task_id = %self.task.id, "task running");
                // The idle release counts from here, not from the last event before
                // setup: a task whose containers end at once never pays for it.
                self.last_event = Instant::now();
            }
            if !pending && !running {
                // Only non-essential containers ran, and all ended: nothing keeps the task.
                self.request_stop(
                    StopCode::EssentialContainerExited,
                    stop::ESSENTIAL_EXITED_REASON,
                );
                return;
            }
            let next_check = self.run_due_checks();
            let mut timeout = if waiting {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(3600)
            };
            if let Some(n) = next_check {
                timeout = timeout.min(n);
            }
            // Not while a health check runs: its exec clones this process (libcontainer's
            // raw clone3), and a malloc lock held by the trim at that moment would stay
            // held in the child (docs/reliability.md). Its result, an event, re-arms this.
            if !self.released && !pending && !self.checking() {
                match self
                    .idle_release_after
                    .checked_sub(self.last_event.elapsed())
                {
                    Some(left) if !left.is_zero() => timeout = timeout.min(left),
                    _ => self.release_idle_memory(),
                }
            }
            match self.events.recv_timeout(timeout) {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
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
        let cfg = rootfs_cache::Store::open(&self.opts.root).and_then(|s| s.image_config(rec));
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

    fn start(&mut self, idx: usize) {
        let rid = runtime_id(&self.task.id, idx);
        let name = self.slots[idx].row.name.clone();
        let mut ecs = spec::ecs_env(
            &self.opts.region,
            &rid,
            &self.task.launch_type,
            self.inside.base(),
        );
        ecs.extend(self.inside.env());
        // S3 environmentFiles: under `environment` (ECS: "environment … take[s]
        // precedence over the variables contained within an environment file").
        ecs.extend(self.inside.file_env(idx));
        let img = self.image_defaults(idx);
        let mut spec = match self.container_spec(idx, &img, ecs) {
            Ok(s) => s,
            Err(e) => {
                return self.fail_container(idx, format!("{}: {e}", reason::CANNOT_CREATE));
            }
        };
        // The log driver, as Docker initialises it at container create.
        match self.awslogs(idx, &name, &rid) {
            Ok(Some(a)) => {
                if let runtime::LogConfig::JsonFile { sink, .. } = &mut spec.log {
                    *sink = Some(runtime::SinkRef(a.clone()));
                }
                self.slots[idx].awslogs = Some(a);
            }
            Ok(None) => {}
            Err(e) => {
                return self.fail_container(idx, format!("{}: {e}", reason::CANNOT_START));
            }
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
                    crate::supervisor::logs::firelens::Sink::start(plan, r, &rid, files.socket());
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
        // disableNetworking: a network namespace of the container's own, loopback only, as
        // Docker's `NetworkDisabled` (ECS passes it through on EC2).
        let no_network = self.slots[idx].def.disable_networking == Some(true);
        let netns = if no_network {
            None
        } else {
            self.attachment.as_ref().and_then(|a| a.netns.clone())
        };
        let rt = self.rt.as_ref().expect("runtime set in provision");
        let t0 = now_us();
        let created = rt.create(
            &rid,
            &self.task.id,
            &spec,
            &self.paths.rootfs(idx),
            netns.as_deref(),
        );
        self.phase(Some(idx), "create", t0);
        self.warmer.take();
        let container = match created {
            Ok(c) => Arc::new(c),
            Err(e) => {
                return self.fail_container(
                    idx,
                    format!("{}: {}", reason::CANNOT_START, error_chain(&e)),
                );
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
                if let Ok(c) = Arc::try_unwrap(container)
                    && let Err(d) = c.delete()
                {
                    self.warnings.push(format!("teardown: {}", error_chain(&d)));
                }
                return self.fail_container(idx, why);
            }
        }
        let t0 = now_us();
        let started = container.start();
        self.phase(Some(idx), "start", t0);
        if let Err(e) = started {
            let why = format!("{}: {}", reason::CANNOT_START, error_chain(&e));
            if let Ok(c) = Arc::try_unwrap(container)
                && let Err(d) = c.delete()
            {
                self.warnings.push(format!("teardown: {}", error_chain(&d)));
            }
            return self.fail_container(idx, why);
        }
        let tx = self.tx.clone();
        container.on_exit(move || {
            let _ = tx.send(Event::Exited { idx });
        });
        let slot = &mut self.slots[idx];
        slot.state = State::Running {
            since: Instant::now(),
            container,
        };
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
    ) -> Result<runtime::ContainerSpec, String> {
        let def = &self.slots[idx].def;
        let name = def.name_str().to_string();
        let wants_init = def
            .linux_parameters
            .as_ref()
            .is_some_and(|l| l.init_process_enabled == Some(true));
        let init = wants_init.then(spec::static_init).flatten();
        let rotation = crate::supervisor::logs::logging::rotation(def.log_configuration.as_ref())
            .map_err(|e| format!("{name}: {e}"))?;
        let log = runtime::LogConfig::JsonFile {
            path: self.paths.log(&name),
            rotation,
            sink: None,
        };
        let mut spec = spec::build(def, img, ecs, log, init).map_err(|e| e.to_string())?;
        self.namespaces.apply(&mut spec);
        // `apparmor:unconfined` on a host without AppArmor: nothing to lift (libcontainer
        // would refuse any profile there).
        if spec.security.apparmor_profile.as_deref() == Some("unconfined")
            && !crate::supervisor::support::apparmor_enabled(std::path::Path::new("/sys"))
        {
            spec.security.apparmor_profile = None;
        }
        let defs: Vec<ContainerDefinition> = self.slots.iter().map(|s| s.def.clone()).collect();
        let mut mounts = self.volumes.mounts(&defs, idx).map_err(|e| e.to_string())?;
        // linuxParameters.tmpfs after the volumes: a tmpfs inside a volume stays visible.
        mounts.append(&mut spec.mounts);
        spec.mounts = mounts;
        self.volumes
            .populate(&defs[idx], &self.paths.rootfs(idx), &img.volumes)
            .map_err(|e| error_chain(&e))?;
        if self.slots[idx].restart.count == 0 {
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

    /// SIGTERM each running container in reverse start order, SIGKILL after its stopTimeout.
    fn stop_containers(&mut self) {
        if self.task.stopping_at.is_none() {
            self.task.stopping_at = Some(now_ms());
        }
        self.save();
        let reverse: Vec<usize> = self.order.iter().rev().copied().collect();
        for idx in reverse {
            self.drain_events();
            let State::Running { container, .. } = &self.slots[idx].state else {
                continue;
            };
            let container = container.clone();
            let timeout = self.slots[idx]
                .def
                .stop_timeout
                .map(|t| Duration::from_secs(t.max(0) as u64))
                .unwrap_or(DEFAULT_STOP_TIMEOUT);
            // The stop phase: from SIGTERM (or SIGKILL when forced) until the exit.
            let t0 = now_us();
            let mut deadline = Instant::now()
                + if self.force_stop {
                    Duration::ZERO
                } else {
                    timeout
                };
            if !self.force_stop
                && let Err(e) = container.kill(Signal::SIGTERM)
            {
                tracing::debug!(error = %e, "SIGTERM failed");
            }
            let mut killed = false;
            while matches!(self.slots[idx].state, State::Running { .. }) {
                let now = Instant::now();
                if now >= deadline && !killed {
                    tracing::info!(task_id = %self.task.id, container = %self.slots[idx].row.name,
                        "stopTimeout passed: sending SIGKILL");
                    if let Err(e) = container.kill(Signal::SIGKILL) {
                        tracing::warn!(error = %error_chain(&e), "SIGKILL failed");
                    }
                    killed = true;
                }
                let wait = if killed {
                    Duration::from_secs(10)
                } else {
                    deadline - now
                };
                match self.events.recv_timeout(wait) {
                    Ok(Event::Stop { force: true, .. }) => deadline = Instant::now(),
                    Ok(ev) => self.handle(ev),
                    Err(RecvTimeoutError::Timeout) if killed => {
                        self.warnings.push(format!(
                            "container {} did not exit after SIGKILL",
                            self.slots[idx].row.name
                        ));
                        break;
                    }
                    Err(_) => {}
                }
            }
            self.phase(Some(idx), "stop", t0);
        }
        for idx in 0..self.slots.len() {
            if matches!(self.slots[idx].state, State::Pending) {
                self.slots[idx].state = State::Failed;
                self.slots[idx].row.last_status = LastStatus::Stopped;
                self.save_container(idx);
            }
        }
        self.task.execution_stopped_at = Some(now_ms());
        self.save();
    }

    /// Deletes containers, unmounts rootfs, removes the task cgroup and the network.
    /// Returns the containers' state dirs, renamed to `.c<N>.removing` for the caller to
    /// delete (see [`Executor::run`]).
    fn deprovision(&mut self) -> Vec<PathBuf> {
        // Its thread leaves the task's cgroup before the cgroup is removed below.
        self.warmer.take();
        self.task.last_status = LastStatus::Deprovisioning;
        self.save();
        crate::task::test_pause(&self.paths.run_dir, "teardown");
        self.inside.stop();
        let t0 = now_us();
        let mut errors: Vec<String> = Vec::new();
        // First: killing the holder (pid 1 of a shared pid namespace) kills every process
        // left in it, also those a container's exited main process left behind. It is
        // reaped once the containers are (`TaskNamespaces::stop` below).
        if let Err(e) = self.namespaces.kill() {
            errors.push(error_chain(&e));
        }
        for idx in 0..self.slots.len() {
            let state = std::mem::replace(&mut self.slots[idx].state, State::Failed);
            let container = match state {
                State::Running { container, .. } => {
                    let _ = container.kill(Signal::SIGKILL);
                    let _ = container.wait();
                    Some(container)
                }
                State::Exited { container, .. } => container,
                _ => None,
            };
            self.finish_awslogs(idx);
            if let Some(c) = container {
                // A health check still running holds a reference until its exec ends
                // (it dies with the container's pid namespace).
                let deadline = Instant::now() + Duration::from_secs(10);
                while Arc::strong_count(&c) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                match Arc::try_unwrap(c) {
                    Ok(c) => {
                        if let Err(e) = c.delete() {
                            errors.push(error_chain(&e));
                        }
                    }
                    Err(_) => errors.push(format!(
                        "container {} is still referenced; not deleted",
                        self.slots[idx].row.name
                    )),
                }
            }
            if self.slots[idx].mounted {
                let target = self.paths.rootfs(idx);
                match rootfs_cache::rootfs::unmount(&target) {
                    Ok(()) => self.slots[idx].mounted = false,
                    Err(e) => errors.push(error_chain(&e)),
                }
            }
        }
        if let Err(e) = self.paths.remove_rootfs_dir(self.slots.len()) {
            errors.push(format!(
                "failed to remove {}: {e}",
                self.paths.rootfs_dir.display()
            ));
        }
        if let Err(e) = self.namespaces.stop() {
            errors.push(error_chain(&e));
        }
        if self.userns.take().is_some()
            && let Err(e) = self.store.with(|s| s.release_userns_slot(&self.task.id))
        {
            errors.push(error_chain(&e));
        }
        // After the containers (their mount namespaces held the binds) are gone.
        for e in self.volumes.teardown() {
            errors.push(error_chain(&e));
        }
        if self.task_cgroup
            && let Some(rt) = &self.rt
            && let Err(e) = rt.remove_task_cgroup(&self.task.id)
        {
            errors.push(error_chain(&e));
        }
        for e in self.net.teardown(&self.task.id) {
            errors.push(error_chain(&e));
        }
        // Upper/work dirs go with the task (after the task is reported done, renamed out of
        // the way now); logs stay for `minifargate logs`.
        let mut scratch = Vec::new();
        for idx in 0..self.slots.len() {
            let d = self.paths.container_state(idx);
            if self.slots[idx].mounted || !d.exists() {
                continue;
            }
            let trash = self.paths.container_state_removing(idx);
            match std::fs::rename(&d, &trash) {
                Ok(()) => scratch.push(trash),
                Err(_) => {
                    if let Err(e) = std::fs::remove_dir_all(&d) {
                        errors.push(format!("failed to remove {}: {e}", d.display()));
                    }
                }
            }
        }
        // The task's ephemeral storage after everything in it is unmounted; its image
        // file is deleted with the scratch dirs.
        if let Some(e) = self.ephemeral.take() {
            match e.teardown() {
                Ok(img) => scratch.push(img),
                Err(e) => errors.push(error_chain(&e)),
            }
        }
        // The run dir (socket, pid file, runtime state) last, before STOPPED is written: a
        // STOPPED task has left nothing on the host, whoever looks. (Should this process die
        // in between, reconcile removes it with the rest of the task.)
        if let Err(e) = std::fs::remove_dir_all(&self.paths.run_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!(
                "failed to remove {}: {e}",
                self.paths.run_dir.display()
            ));
        }
        for e in &errors {
            tracing::error!(task_id = %self.task.id, error = %e, "teardown step failed");
            self.warnings.push(format!("teardown: {e}"));
        }
        self.phase(None, "teardown", t0);
        self.task.last_status = LastStatus::Stopped;
        self.task.desired_status = DesiredStatus::Stopped;
        self.task.stopped_at = Some(now_ms());
        self.save();
        scratch
    }
}

/// Deletes the scratch dirs [`Executor::run`] returned; failures are logged (the task is
/// STOPPED by then; its directory, and anything left in it, goes when it is pruned).
pub fn remove_scratch(task_id: &str, dirs: &[PathBuf]) {
    for d in dirs {
        // A state dir, or the link to it in the ephemeral storage; or that storage's file.
        let removed = if d.is_file() {
            std::fs::remove_file(d)
        } else {
            std::fs::remove_dir_all(d)
        };
        if let Err(e) = removed {
            tracing::warn!(task_id, path = %d.display(), error = %e, "failed to remove a container's scratch dir");
        }
    }
}

/// Writes with `f`, and task `task_id`'s pending `phases`, in one transaction; the
/// phases are cleared once written. A failure is logged (`what` names the write).
fn write_with_phases(
    store: &SharedStore,
    phases: &mut Vec<Phase>,
    task_id: &str,
    what: &'static str,
    f: impl FnOnce(&mut Store) -> Result<(), StoreError>,
) {
    let r = store.with(|s| {
        s.in_transaction(what, |s| {
            f(s)?;
            for p in phases.iter() {
                s.record_phase(task_id, &p.container, p.phase, p.start, p.end)?;
            }
            Ok(())
        })
    });
    match r {
        Ok(()) => phases.clear(),
        Err(e) => tracing::error!(task_id, error = %error_chain(&e), "failed to {what}"),
    }
}

/// What the registry said of a cached image (`Executor::check_cached`).
#[derive(Clone)]
enum Checked {
    /// The reference still names the cached image, and the task may pull it.
    Current,
    /// The reference names another image now: pull it.
    Changed,
    /// The registry could not be reached (why): the cached image runs, with a warning.
    Unreachable(String),
    /// The registry refused: the container's reason.
    Refused(String),
}

/// Finds or pulls images for one task, by the pull policy; the registry client (TLS roots,
/// config) is only built when something is pulled.
struct ImageGetter {
    images: rootfs_cache::Store,
    rt: Option<tokio::runtime::Runtime>,
    /// One client per credentials: `None` the task's, `Some(idx)` container idx's
    /// `repositoryCredentials`.
    pullers: std::collections::BTreeMap<Option<usize>, Arc<Puller>>,
    /// The per-registry bound on layers fetched at once, shared by all of `pullers`.
    limits: rootfs_cache::pull::RegistryLimits,
    /// Images pulled side by side before the containers resolve in order (by puller key
    /// and reference): the record or the container's reason.
    prefetched: std::collections::HashMap<(Option<usize>, String), Result<ImageRecord, String>>,
    /// `default`'s registry answers for cached images, asked side by side before the
    /// containers resolve in order (by puller key and reference).
    prechecked: std::collections::HashMap<(Option<usize>, String), Checked>,
    platform: rootfs_cache::Platform,
    policy: PullPolicy,
    root: PathBuf,
    config: Option<PathBuf>,
}

/// An image as the task asks for it: the puller key (see `ImageGetter::pullers`) and the
/// reference.
type ImageKey = (Option<usize>, String);

/// What the cache and the pull policy say of an image.
enum Got {
    Have(Box<ImageRecord>),
    /// Pull this reference.
    Pull(String),
    /// `default`: this reference is cached; ask the registry whether the task may have it
    /// and whether it is still the one the reference names.
    Check(Box<ImageRecord>, String),
}

impl ImageGetter {
    /// `image`, or with `digest` the image that digest names (a manifest or an index,
    /// picked for the platform), from the cache, or the reference to pull.
    fn lookup(&self, image: &str, digest: Option<&str>) -> Result<Got, String> {
        let platform = &self.platform;
        let fits = |rec: &ImageRecord| {
            self.policy == PullPolicy::Never
                || crate::supervisor::isolation::platform::image_mismatch(
                    image,
                    &rec.platform,
                    platform,
                )
                .is_none()
        };
        let wanted = match digest {
            Some(d) => format!("{image}@{d}"),
            None => image.to_string(),
        };
        // A cached image of another platform (pulled for another task) is not this one:
        // `default` and `prefer-cached` pull the right one (`never` reports the mismatch). A pinned digest is
        // found under the tag too while the tag still names it.
        let cached = match digest {
            None => find_image(&self.images, image).filter(fits),
            Some(d) => find_image(&self.images, &wanted)
                .into_iter()
                .chain(find_image(&self.images, image))
                .find(|r| r.index_digest.as_ref().unwrap_or(&r.digest).to_string() == d && fits(r)),
        };
        match (self.policy, cached) {
            (PullPolicy::PreferCached | PullPolicy::Never, Some(rec)) => {
                Ok(Got::Have(Box::new(rec)))
            }
            (PullPolicy::Default, Some(rec)) => Ok(Got::Check(Box::new(rec), wanted)),
            (PullPolicy::Never, None) => Err(format!(
                "{wanted}: not in the local image cache and --pull never was given \
                 (run `minifargate pull {wanted}`)"
            )),
            _ => Ok(Got::Pull(wanted)),
        }
    }

    /// The runtime pulls run on, made on the first pull.
    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, String> {
        if self.rt.is_none() {
            self.rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("{}: {e}", reason::CANNOT_PULL))?,
            );
        }
        Ok(self.rt.as_ref().expect("set above"))
    }
}

fn make_puller(
    root: &std::path::Path,
    config: Option<&std::path::Path>,
    overrides: rootfs_cache::auth::Overrides,
    limits: &rootfs_cache::pull::RegistryLimits,
) -> anyhow::Result<Puller> {
    let config = crate::config::get().registries(config)?;
    let client = RegistryClient::with_overrides(config.retry_policy(), overrides)?;
    Ok(Puller {
        store: rootfs_cache::Store::open(root)?,
        client: Arc::new(client),
        config,
        concurrency: 4,
        limits: limits.clone(),
    })
}

/// A failed pull as the container's reason. ECR refusing the execution role's token
/// request is, as on ECS, a failure to get the registry auth, not of the pull itself.
/// Ref: repost.aws/knowledge-center/ecs-unable-to-pull-secrets ("unable to retrieve ecr
/// registry auth").
fn pull_reason(e: &rootfs_cache::PullError) -> String {
    use rootfs_cache::auth::AuthError;
    use rootfs_cache::client::RegistryError;
    if let rootfs_cache::PullError::Registry {
        source: RegistryError::Auth(a @ AuthError::EcrAs { .. }),
        ..
    } = e
    {
        return format!(
            "{}: unable to retrieve ecr registry auth: {a}",
            crate::supervisor::secrets::REASON_PREFIX
        );
    }
    if let rootfs_cache::PullError::Registry {
        source: RegistryError::Auth(AuthError::NoCredentials { .. }),
        ..
    } = e
    {
        // The host's Docker config is one source; a task brings its own.
        return format!(
            "{}: {}; or give the container repositoryCredentials",
            reason::CANNOT_PULL,
            error_chain(e)
        );
    }
    format!("{}: {}", reason::CANNOT_PULL, error_chain(e))
}

/// The cached image a reference names, if any.
pub fn find_image(store: &rootfs_cache::Store, image: &str) -> Option<ImageRecord> {
    let normalised = rootfs_cache::pull::parse_reference(image)
        .ok()
        .map(|r| r.to_string());
    store.find_image(image, normalised.as_deref()).ok()
}

/// The results of `set`'s tasks that finished, in the order they did; a task that panicked
/// is left out (the callers' pass in order does its work again).
async fn finished<T: 'static>(mut set: tokio::task::JoinSet<T>) -> Vec<T> {
    let mut done = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(r) = j {
            done.push(r);
        }
    }
    done
}
