//! RunTask on the CLI side: apply overrides, write the task rows (PROVISIONING) and start
//! one detached supervisor process per task.

use crate::store::{
    ContainerRow, DesiredStatus, LastStatus, LaunchRecord, Store, StoreError, StoredTaskDefinition,
    Tag, TaskRow,
};
use crate::supervisor::protocol::{ExecutionCredentialsFrom, SuperviseArgs, TaskCredentialsFrom};
use crate::task::{ContainerOverride, PullPolicy, TaskOverride, TaskPaths};
use crate::taskdef::AwsContext;
use crate::taskdef::model::{Compatibility, KeyValuePair, NetworkMode, TaskDefinition};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "InvalidParameterException: containerOverrides: container {name:?} is not in task \
         definition {taskdef} (its containers: {known})"
    )]
    UnknownContainer {
        name: String,
        taskdef: String,
        known: String,
    },
    #[error(transparent)]
    Unsupported(#[from] crate::supervisor::support::SupportError),
    #[error(transparent)]
    Volume(#[from] crate::supervisor::isolation::volumes::VolumeError),
    #[error(transparent)]
    Network(#[from] crate::supervisor::isolation::network::NetworkError),
    #[error(
        "InvalidParameterException: Network Configuration is not valid for the given \
         networkMode of this task definition ({mode})."
    )]
    NetworkConfigurationNotAwsvpc { mode: String },
    #[error(
        "task {id}: {given} container ids were given for a task definition of {containers} \
         containers"
    )]
    Ids {
        id: String,
        given: usize,
        containers: usize,
    },
    #[error("failed to record task {id}")]
    Store {
        id: String,
        #[source]
        source: StoreError,
    },
    #[error("failed to {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// RunTask parameters after parsing.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub cluster: String,
    pub launch_type: Option<String>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub overrides: TaskOverride,
    /// RunTask `tags`.
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
    /// `--env-file` variables: under every container's `environment` and
    /// `environmentFiles` (see [`apply_env_file`]).
    pub env_file: Vec<KeyValuePair>,
    /// `--volume-map NAME=/dir`: EFS/FSx volumes served from local directories.
    pub volume_map: std::collections::BTreeMap<String, PathBuf>,
    /// `--network-configuration`'s awsvpcConfiguration as JSON text (see
    /// [`crate::supervisor::isolation::network::parse_network_configuration`]).
    pub network_configuration: Option<String>,
    /// `--secrets-file`: the task's secrets from this local file (see `crate::supervisor::secrets`).
    pub secrets_file: Option<PathBuf>,
    /// `--task-credentials host`: a task without a role gets the host's identity.
    pub host_credentials: bool,
    /// Warnings for members of the request this host does not apply (recorded on the task).
    pub warnings: Vec<String>,
    /// The tasks this one shares image digests with (versionConsistency): a service
    /// deployment's id, else one per RunTask call (`ecs::tasks::spawn` sets it).
    pub image_scope: Option<String>,
    /// `--execution-credentials host`: start-up calls with the host's credentials.
    pub host_execution_credentials: bool,
    /// What the request recorded on the task (capacity provider, platform version …).
    pub launch: LaunchRecord,
}

/// How to start the supervisor: the same binary with the same global options.
#[derive(Debug, Clone)]
pub struct SupervisorCommand {
    pub exe: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub config: Option<PathBuf>,
    pub log_level: String,
    pub userns: crate::supervisor::isolation::userns::Mode,
    pub pull: PullPolicy,
    pub secrets_file: Option<PathBuf>,
    pub host_credentials: bool,
    pub host_execution_credentials: bool,
    /// Give each supervisor a pipe on which it reports that its task is STOPPED and torn
    /// down ([`Supervisor::done`]). Only for a caller with no other thread that starts
    /// processes meanwhile: the pipe's write end is inheritable while the supervisor starts.
    pub report_done: bool,
}

/// A started supervisor process.
pub struct Supervisor {
    pub child: Child,
    /// With [`SupervisorCommand::report_done`]: the supervisor writes one byte here once its
    /// task is STOPPED and everything is torn down, before it exits. The process itself
    /// takes a few milliseconds more to end (closing its netfilter socket waits for an RCU
    /// grace period); what waits for the task need not wait for that. End of file without
    /// that byte: the supervisor exited without finishing.
    pub done: Option<std::io::PipeReader>,
}

/// The launch type a task runs with: the flag, else FARGATE when the task definition
/// requires it, else EC2.
pub fn launch_type(req: &Request, def: &TaskDefinition) -> String {
    if let Some(l) = &req.launch_type {
        return l.clone();
    }
    let fargate = def
        .requires_compatibilities
        .iter()
        .flatten()
        .any(|c| *c == Compatibility::Fargate);
    if fargate { "FARGATE" } else { "EC2" }.to_string()
}

/// `networkMode`, defaulting like ECS: awsvpc on Fargate, bridge on EC2.
pub fn network_mode(def: &TaskDefinition, launch_type: &str) -> NetworkMode {
    def.network_mode.unwrap_or(if launch_type == "FARGATE" {
        NetworkMode::Awsvpc
    } else {
        NetworkMode::Bridge
    })
}

/// The task definition with `overrides` applied (command, environment, cpu, memory).
pub fn apply_overrides(
    def: &TaskDefinition,
    o: &TaskOverride,
    taskdef_name: &str,
) -> Result<TaskDefinition, LaunchError> {
    let mut def = def.clone();
    let containers = def.container_definitions.get_or_insert_with(Vec::new);
    for co in &o.container_overrides {
        let Some(c) = containers.iter_mut().find(|c| c.name_str() == co.name) else {
            return Err(LaunchError::UnknownContainer {
                name: co.name.clone(),
                taskdef: taskdef_name.to_string(),
                known: containers
                    .iter()
                    .map(|c| c.name_str().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        apply_container(c, co);
    }
    if let Some(cpu) = &o.cpu {
        def.cpu = Some(crate::taskdef::model::SizeValue(cpu.clone()));
    }
    if let Some(m) = &o.memory {
        def.memory = Some(crate::taskdef::model::SizeValue(m.clone()));
    }
    // Ref: API_TaskOverride `ephemeralStorage`: "The ephemeral storage setting override for
    // the task."
    if let Some(e) = &o.ephemeral_storage {
        def.ephemeral_storage = Some(e.clone());
    }
    Ok(def)
}

fn apply_container(c: &mut crate::taskdef::model::ContainerDefinition, co: &ContainerOverride) {
    if let Some(cmd) = &co.command {
        c.command = Some(cmd.clone());
    }
    if let Some(env) = &co.environment {
        let list = c.environment.get_or_insert_with(Vec::new);
        for kv in env {
            match list.iter_mut().find(|e| e.name == kv.name) {
                Some(slot) => *slot = kv.clone(),
                None => list.push(KeyValuePair {
                    name: kv.name.clone(),
                    value: kv.value.clone(),
                }),
            }
        }
    }
    if co.cpu.is_some() {
        c.cpu = co.cpu;
    }
    if co.memory.is_some() {
        c.memory = co.memory;
    }
    if co.memory_reservation.is_some() {
        c.memory_reservation = co.memory_reservation;
    }
    // Ref: API_ContainerOverride: `environmentFiles` "A list of files containing the
    // environment variables to pass to a container, instead of the value from the container
    // definition"; `resourceRequirements` "The type and amount of a resource to assign to a
    // container, instead of the default value from the task definition".
    if let Some(files) = &co.environment_files {
        c.environment_files = Some(files.clone());
    }
    if let Some(r) = &co.resource_requirements {
        c.resource_requirements = Some(r.clone());
    }
}

/// Adds `vars` to every container's `environment` unless the container already sets the
/// name (from `environment`, its overrides or its `environmentFiles`): like
/// `docker run --env-file`, whose variables `-e` overrides.
pub fn apply_env_file(def: &mut TaskDefinition, vars: &[KeyValuePair]) {
    if vars.is_empty() {
        return;
    }
    for c in def.container_definitions.iter_mut().flatten() {
        let env = c.environment.get_or_insert_with(Vec::new);
        for kv in vars {
            if !env.iter().any(|e| e.name == kv.name) {
                env.push(kv.clone());
            }
        }
    }
}

/// Writes one task (PROVISIONING, desired RUNNING) and its containers; returns its id:
/// `task_id` when given (the one announced to its supervisor started ahead), else a new
/// one.
pub fn create_task(
    store: &mut Store,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &Request,
    root: &Path,
    task_id: Option<&str>,
) -> Result<String, LaunchError> {
    let containers = stored
        .definition
        .container_definitions
        .as_ref()
        .map_or(0, Vec::len);
    let mut ids = Ids::new(containers).map_err(|source| LaunchError::Io {
        what: "draw the task's ids from the kernel's random pool".into(),
        source,
    })?;
    if let Some(id) = task_id {
        ids.task = id.to_string();
    }
    let task = prepare_task(ctx, stored, req, root, &ids)?;
    insert_task(store, ctx, &task, root)?;
    Ok(ids.task)
}

/// The ids and the creation time a task is made with: new ones on this box, or, in
/// cluster mode, the ones its placer chose, so that the task an agent creates is the one
/// the RunTask answer showed (same ARNs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ids {
    pub task: String,
    /// One UUID per container (its ARN's last part), in definition order.
    pub containers: Vec<String>,
    /// The ENI attachment's id.
    pub attachment: String,
    pub created_at_ms: i64,
}

impl Ids {
    /// New ids for a task of `containers` containers, created now: the random bytes of
    /// them all from one `getrandom(2)`.
    pub fn new(containers: usize) -> std::io::Result<Ids> {
        // The task id, the attachment's, then one per container.
        let mut bytes = vec![0u8; 16 * (containers + 2)];
        crate::task::fill_random(&mut bytes)?;
        let mut chunks = bytes.chunks_exact(16);
        let mut next = || chunks.next().unwrap_or_default();
        let task = crate::task::hex_id(next());
        let attachment = crate::task::uuid(next());
        Ok(Ids {
            task,
            containers: (0..containers).map(|_| crate::task::uuid(next())).collect(),
            attachment,
            created_at_ms: chrono::Utc::now().timestamp_millis(),
        })
    }
}

/// A task's rows before they are written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub task: TaskRow,
    pub containers: Vec<ContainerRow>,
    pub network: crate::store::NetworkRow,
}

/// The rows of one task (PROVISIONING, desired RUNNING), checked, with the ids `ids`;
/// nothing written.
pub fn prepare_task(
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &Request,
    root: &Path,
    ids: &Ids,
) -> Result<Prepared, LaunchError> {
    let id = ids.task.clone();
    let name = format!("{}:{}", stored.family(), stored.revision());
    let mut def = apply_overrides(&stored.definition, &req.overrides, &name)?;
    let mut warnings = req.warnings.clone();
    warnings.extend(crate::supervisor::support::prepare(&mut def)?);
    if req.launch.container_instance_arn.is_some() {
        // Placed by cluster placement (`serve --cluster`), which applied the definition's
        // placementConstraints.
        crate::taskdef::coverage::applied_placement_constraints(&mut warnings);
    }
    apply_env_file(&mut def, &req.env_file);
    crate::supervisor::isolation::volumes::check(&mut def, &req.volume_map, root)?;
    let launch_type = launch_type(req, &def);
    // Ref: RunTask refuses a network configuration for a task that is not awsvpc.
    let mode = network_mode(&def, &launch_type);
    if def.network_mode.is_none() && mode == NetworkMode::Bridge {
        warnings.push(format!(
            "networkMode: {}",
            crate::taskdef::coverage::implicit_bridge()
        ));
    }
    if req.network_configuration.is_some() && mode != NetworkMode::Awsvpc {
        return Err(LaunchError::NetworkConfigurationNotAwsvpc {
            mode: mode.to_string(),
        });
    }
    let mut net_row = crate::supervisor::isolation::network::new_row(
        &id,
        mode,
        req.network_configuration.as_deref().unwrap_or("{}"),
    )?;
    net_row.attachment_id = ids.attachment.clone();
    crate::supervisor::isolation::network::task_spec(&def, mode)?;
    let now = ids.created_at_ms;
    let task = TaskRow {
        id: id.clone(),
        arn: ctx.ecs_arn(&format!("task/{}/{id}", req.cluster)),
        cluster: req.cluster.clone(),
        task_definition_arn: stored
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_else(|| ctx.task_definition_arn(stored.family(), stored.revision())),
        family: stored.family().to_string(),
        definition: std::sync::Arc::new(def.clone()),
        overrides: req.overrides.clone(),
        launch_type: launch_type.clone(),
        started_by: req.started_by.clone(),
        group: req
            .group
            .clone()
            .or_else(|| Some(format!("family:{}", stored.family()))),
        cpu: def.cpu.as_ref().map(|c| c.as_str().to_string()),
        memory: def.memory.as_ref().map(|m| m.as_str().to_string()),
        last_status: LastStatus::Provisioning,
        desired_status: DesiredStatus::Running,
        warnings,
        created_at: now,
        version: 1,
        tags: req.tags.clone(),
        enable_execute_command: req.enable_execute_command,
        image_scope: req.image_scope.clone(),
        launch: req.launch.clone(),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for (idx, c) in def.container_definitions.iter().flatten().enumerate() {
        let Some(uuid) = ids.containers.get(idx) else {
            return Err(LaunchError::Ids {
                id,
                given: ids.containers.len(),
                containers: def.container_definitions.as_ref().map_or(0, Vec::len),
            });
        };
        rows.push(ContainerRow {
            task_id: id.clone(),
            idx: idx as i64,
            name: c.name_str().to_string(),
            image: c.image.clone().unwrap_or_default(),
            arn: ctx.ecs_arn(&format!("container/{}/{id}/{uuid}", req.cluster)),
            essential: c.is_essential(),
            last_status: LastStatus::Pending,
            cpu: Some(c.cpu.unwrap_or(0).to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            ..Default::default()
        });
    }
    Ok(Prepared {
        task,
        containers: rows,
        network: net_row,
    })
}

/// Writes a prepared task: its cluster (made if need be), its directory, its launch lock
/// (held until its supervisor is recorded) and its rows.
pub fn insert_task(
    store: &mut Store,
    ctx: &AwsContext,
    p: &Prepared,
    root: &Path,
) -> Result<(), LaunchError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| LaunchError::Io { what, source }
    };
    let id = &p.task.id;
    let store_err = |source| LaunchError::Store {
        id: id.clone(),
        source,
    };
    let dir = TaskPaths::new(root, Path::new("/"), id).dir;
    // Owner-only: logs and volumes of the task are not for other users of the host.
    let builder = || {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        b
    };
    if let Some(tasks) = dir.parent() {
        builder()
            .create(tasks)
            .map_err(io(&format!("create {}", tasks.display())))?;
        crate::task::spread_task_dirs(tasks);
    }
    builder()
        .create(&dir)
        .map_err(io(&format!("create {}", dir.display())))?;
    hold_launch_lock(&dir, id).map_err(io(&format!("lock {}", launch_lock(&dir).display())))?;
    // The cluster (made unless it exists), the task, its containers and its network: one
    // transaction.
    let cluster_arn = ctx.ecs_arn(&format!("cluster/{}", p.task.cluster));
    let inserted = store.insert_launch(
        Some((&p.task.cluster, &cluster_arn, p.task.created_at)),
        &p.task,
        &p.containers,
        &p.network,
    );
    if let Err(e) = inserted {
        release_launch_lock(root, id);
        return Err(store_err(e));
    }
    Ok(())
}

/// Tasks this process wrote whose supervisor it has not recorded yet, each with the
/// lock on its `launch.lock`. A task row without a supervisor pid is another process's
/// launch in progress while that lock is held; a free lock means its launcher died (or
/// gave up) before starting the supervisor, and reconcile stops the task at once instead
/// of after a grace period. The kernel drops the lock with the process, kill -9 too.
static LAUNCHING: std::sync::Mutex<
    std::collections::BTreeMap<String, nix::fcntl::Flock<std::fs::File>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// `<root>/tasks/<id>/launch.lock`.
pub fn launch_lock(task_dir: &Path) -> PathBuf {
    task_dir.join("launch.lock")
}

fn hold_launch_lock(task_dir: &Path, id: &str) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(launch_lock(task_dir))?;
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    LAUNCHING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), lock);
    Ok(())
}

/// The launch of task `id` is over (its supervisor is recorded, or it failed).
fn release_launch_lock(root: &Path, id: &str) {
    let held = LAUNCHING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    if held.is_some() {
        let _ = std::fs::remove_file(launch_lock(&TaskPaths::new(root, Path::new("/"), id).dir));
    }
}

/// Whether the process that wrote task `id` is still starting its supervisor: its
/// `launch.lock` exists and is locked. `None` when there is no lock file (a task written
/// by an older minifargate, or one whose launch finished).
pub fn launch_in_progress(root: &Path, id: &str) -> Option<bool> {
    let path = launch_lock(&TaskPaths::new(root, Path::new("/"), id).dir);
    let f = std::fs::OpenOptions::new().write(true).open(path).ok()?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_free) => Some(false),
        Err(_) => Some(true),
    }
}

/// Starts `minifargate supervise` for task `id`: detached (it calls setsid itself), stdin
/// closed, its own log file. Records its pid in the store.
pub fn spawn_supervisor(
    store: &mut Store,
    cmd: &SupervisorCommand,
    id: &str,
) -> Result<Supervisor, LaunchError> {
    let paths = TaskPaths::new(&cmd.root, &cmd.run_root, id);
    paths
        .make_run_dir()
        .map_err(io(format!("create {}", paths.run_dir.display())))?;
    let log = open_supervisor_log(&paths.supervisor_log())?;
    let log2 = log
        .try_clone()
        .map_err(io("duplicate the log file handle".into()))?;
    let done = done_pipe(cmd)?;
    let args = supervise_args(cmd, Some(id), None, done.as_ref());
    let mut c = supervisor_process(cmd, &args);
    c.stdin(Stdio::null()).stdout(log).stderr(log2);
    let child = c.spawn().map_err(|source| {
        release_launch_lock(&cmd.root, id);
        LaunchError::Io {
            what: format!("start the supervisor {}", cmd.exe.display()),
            source,
        }
    });
    let child = child?;
    // Ours closed at once: the supervisor's copy is then the only writer.
    let done = done.map(|(r, _w)| r);
    let pid = i64::from(child.id());
    let recorded = store.set_supervisor(id, pid, crate::task::process_start_time(pid));
    release_launch_lock(&cmd.root, id);
    recorded.map_err(|source| LaunchError::Store {
        id: id.to_string(),
        source,
    })?;
    Ok(Supervisor { child, done })
}

/// A supervisor started before its task exists ([`prestart_supervisor`]): it execs, starts
/// its runtime and opens the store while its launcher checks the request and writes the
/// task's rows, then waits on a pipe for the task's id ([`hand_over`]). Dropped without
/// that (the launch failed, or was killed): the pipe's end of file tells it there is no
/// task, and it exits having made nothing. The drop waits for that exit (see its `Drop`),
/// so that a launch that failed answers only once what was made ahead is gone.
#[derive(Debug)]
pub struct Waiting {
    /// Taken by [`hand_over`]; still here at the drop: no task was handed over.
    child: Option<Spawning>,
    /// Where the task's id goes.
    task: Option<std::io::PipeWriter>,
    done: Option<std::io::PipeReader>,
    /// The id its task will have, once told to it (`announce_cgroups`).
    ahead_id: Option<String>,
}

/// Starts a supervisor that waits for its task (`supervise --wait-fd`): `cmd` as for
/// [`spawn_supervisor`]. Output to /dev/null until it has its task, then to the task's
/// supervisor log. As with [`SupervisorCommand::report_done`]: for a caller with no other
/// thread that starts processes meanwhile (the pipe's read end is inheritable while the
/// supervisor starts).
pub fn prestart_supervisor(cmd: &SupervisorCommand) -> Result<Waiting, LaunchError> {
    let (r, w) = std::io::pipe().map_err(io("create the supervisor's task pipe".into()))?;
    inheritable(r.as_raw_fd(), "pass the task pipe to the supervisor")?;
    let done = done_pipe(cmd)?;
    let args = supervise_args(cmd, None, Some(r.as_raw_fd()), done.as_ref());
    let mut c = supervisor_process(cmd, &args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (done_r, done_w) = match done {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let exe = cmd.exe.clone();
    // The supervisor's ends: ours closed once it has them, so that its copies are then
    // the only ones.
    let spawn = move || {
        let child = c.spawn().map_err(|source| LaunchError::Io {
            what: format!("start the supervisor {}", exe.display()),
            source,
        });
        drop((r, done_w));
        child
    };
    // On a thread of its own: a spawn returns once the child has exec'd (vfork), and
    // the exec of this binary, with the wake-up after it, kept the launch waiting
    // ~0.9 ms (docs/benchmarks.md, "Stop 53"). The launch goes on meanwhile; the child
    // is joined when it is needed (its pid, at the hand-over). No thread: no supervisor
    // ahead (the task's is then started the usual way).
    let child = std::thread::Builder::new()
        .name("spawn-supervisor".into())
        .spawn(spawn)
        .map(Spawning)
        .map_err(io("start a thread to start the supervisor".into()))?;
    Ok(Waiting {
        child: Some(child),
        task: Some(w),
        done: done_r,
        ahead_id: None,
    })
}

/// How long the drop of a [`Waiting`] that was never handed a task waits for its
/// supervisor to exit (it removes what it made ahead, then exits: a few ms) before it
/// kills it.
const ABANDONED_EXIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Waiting {
    /// No task for this supervisor (the launch failed): the pipe's end of file tells it,
    /// and this waits until it has removed what it made ahead (its cgroups, its network
    /// namespace) and exited, so that the failed launch answers with nothing of the task
    /// left on the box (issue 59). A supervisor that does not exit within
    /// [`ABANDONED_EXIT`] is killed; it is this process's child.
    fn drop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        drop(self.task.take());
        let Ok(mut child) = child.join() else {
            return;
        };
        let deadline = std::time::Instant::now() + ABANDONED_EXIT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if std::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        pid = child.id(),
                        "the supervisor started ahead did not exit after its launch failed: killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
    }
}

/// The supervisor of a [`Waiting`], being spawned on a thread.
#[derive(Debug)]
struct Spawning(std::thread::JoinHandle<Result<Child, LaunchError>>);

impl Spawning {
    /// The child, once spawned; the spawn's error, or a panic of its thread as one.
    fn join(self) -> Result<Child, LaunchError> {
        self.0.join().unwrap_or_else(|_| {
            Err(LaunchError::Io {
                what: "start the supervisor".into(),
                source: std::io::Error::other("the thread that started it panicked"),
            })
        })
    }
}

impl Waiting {
    /// Names the images the task will have checked (`images_to_check_ahead`) before the
    /// task is written, so that the supervisor asks its registries while this process
    /// places the task and writes its rows. Best effort: a supervisor that is gone is
    /// found by [`hand_over`].
    pub fn announce_images(&mut self, platform: &rootfs_cache::Platform, images: &[String]) {
        use std::io::Write;
        if let (Some(line), Some(task)) = (images_line(platform, images), self.task.as_mut()) {
            let _ = task.write_all(line.as_bytes());
        }
    }

    /// Chooses the id of the task this supervisor will be given and tells it, with the
    /// number of its `containers`, so that it makes the task's cgroups and warms the
    /// cgroup migration lock while this process places the task and writes its rows
    /// (`executor::CgroupAhead::start_early`). Once only; the task written for this
    /// supervisor must then take [`Waiting::ahead_id`]. A supervisor that is never given
    /// that task removes what it made when its pipe closes.
    pub fn announce_cgroups(&mut self, containers: usize) {
        use std::io::Write;
        if self.ahead_id.is_some() || containers == 0 || containers > MAX_CONTAINERS {
            return;
        }
        let (Ok(id), Some(task)) = (crate::task::new_id(), self.task.as_mut()) else {
            return;
        };
        if task
            .write_all(format!("{CGROUPS_LINE} {id} {containers}\n").as_bytes())
            .is_ok()
        {
            self.ahead_id = Some(id);
        }
    }

    /// The id announced to the supervisor ([`Waiting::announce_cgroups`]), if any.
    pub fn ahead_id(&self) -> Option<&str> {
        self.ahead_id.as_deref()
    }
}

/// The first word of the line that names the task's id and its number of containers
/// on the wait pipe, for its cgroups made ahead.
const CGROUPS_LINE: &str = "cgroups";

/// ECS's most containers in one task definition.
const MAX_CONTAINERS: usize = 10;

/// The task id and the number of containers of a `cgroups` line (without its newline);
/// `None` for any other line.
pub fn parse_cgroups_line(line: &str) -> Option<(String, usize)> {
    let mut words = line.split(' ');
    if words.next()? != CGROUPS_LINE {
        return None;
    }
    let id = words.next()?;
    let n: usize = words.next()?.parse().ok()?;
    let valid = words.next().is_none() && is_task_id(id) && (1..=MAX_CONTAINERS).contains(&n);
    valid.then(|| (id.to_string(), n))
}

/// A task id as this box makes them: 32 lowercase hex digits (a path component).
fn is_task_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The first word of the line that names the images to check ahead on the wait pipe.
const IMAGES_LINE: &str = "images";

/// The longest line the wait pipe carries (a task has at most 10 containers).
pub const MAX_WAIT_LINE: u64 = 16 * 1024;

/// `images <platform> <image>…` and a newline; `None` when it would not read back as
/// written ([`parse_images_line`]: no image, one that is not a reference) or is too long.
fn images_line(platform: &rootfs_cache::Platform, images: &[String]) -> Option<String> {
    let line = format!("{IMAGES_LINE} {platform} {}\n", images.join(" "));
    let reads_back = parse_images_line(&line[..line.len() - 1])
        .is_some_and(|(p, i)| p == *platform && i == images);
    (reads_back && line.len() as u64 <= MAX_WAIT_LINE).then_some(line)
}

/// The platform and images of an [`images_line`] (without its newline); `None` for any
/// other line.
pub fn parse_images_line(line: &str) -> Option<(rootfs_cache::Platform, Vec<String>)> {
    let mut words = line.split(' ');
    if words.next()? != IMAGES_LINE {
        return None;
    }
    let platform = words.next()?.parse().ok()?;
    let images: Vec<String> = words.map(str::to_string).collect();
    let valid = !images.is_empty()
        && images
            .iter()
            .all(|i| rootfs_cache::pull::parse_reference(i).is_ok());
    valid.then_some((platform, images))
}

/// Gives task `id` (its rows written, its launch lock held) to the supervisor `waiting`:
/// records its pid, writes the id on its pipe and releases the launch lock, as
/// [`spawn_supervisor`] does after its fork. A supervisor that is gone (it could not
/// start) is replaced by one started the usual way.
pub fn hand_over(
    store: &mut Store,
    cmd: &SupervisorCommand,
    waiting: Waiting,
    id: &str,
) -> Result<Supervisor, LaunchError> {
    use std::io::Write;
    let mut waiting = waiting;
    let (Some(child), Some(mut task)) = (waiting.child.take(), waiting.task.take()) else {
        unreachable!("a Waiting is handed over once: hand_over takes it by value")
    };
    let done = waiting.done.take();
    drop(waiting);
    let child = match child.join() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(task_id = %id, error = %crate::errors::error_chain(&e), "the supervisor started ahead could not start: starting another");
            drop(task);
            return spawn_supervisor(store, cmd, id);
        }
    };
    let pid = i64::from(child.id());
    // Recorded before the id is written, so the supervisor finds its pid in its row and
    // need not write it again.
    if let Err(source) = store.set_supervisor(id, pid, crate::task::process_start_time(pid)) {
        release_launch_lock(&cmd.root, id);
        return Err(LaunchError::Store {
            id: id.to_string(),
            source,
        });
    }
    let written = task.write_all(format!("{id}\n").as_bytes());
    drop(task);
    match written {
        Ok(()) => {
            release_launch_lock(&cmd.root, id);
            Ok(Supervisor { child, done })
        }
        Err(e) => {
            tracing::warn!(task_id = %id, error = %e, "the supervisor started ahead is gone: starting another");
            spawn_supervisor(store, cmd, id)
        }
    }
}

/// `LaunchError::Io` for `what`.
fn io(what: String) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |source| LaunchError::Io { what, source }
}

/// The supervisor's log file, owner-only, as everything of the task's (docs/security.md,
/// "A task's files"). The supervisor of [`prestart_supervisor`] opens it itself.
pub fn open_supervisor_log(path: &Path) -> Result<std::fs::File, LaunchError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("open {}", path.display())))
}

/// Clears close-on-exec on `fd` (std opens pipes close-on-exec): the supervisor takes it
/// and sets it again.
fn inheritable(fd: std::os::fd::RawFd, what: &str) -> Result<(), LaunchError> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| LaunchError::Io {
        what: what.into(),
        source: e.into(),
    })?;
    Ok(())
}

/// The done pipe of [`SupervisorCommand::report_done`], its write end inheritable.
fn done_pipe(
    cmd: &SupervisorCommand,
) -> Result<Option<(std::io::PipeReader, std::io::PipeWriter)>, LaunchError> {
    if !cmd.report_done {
        return Ok(None);
    }
    let (r, w) = std::io::pipe().map_err(io("create the supervisor's done pipe".into()))?;
    inheritable(w.as_raw_fd(), "pass the done pipe to the supervisor")?;
    Ok(Some((r, w)))
}

/// The `supervise` verb's arguments: for task `task_id`, or waiting on `wait_fd` for one.
fn supervise_args(
    cmd: &SupervisorCommand,
    task_id: Option<&str>,
    wait_fd: Option<std::os::fd::RawFd>,
    done: Option<&(std::io::PipeReader, std::io::PipeWriter)>,
) -> SuperviseArgs {
    SuperviseArgs {
        task_id: task_id.map(str::to_string),
        wait_fd,
        pull: cmd.pull,
        secrets_file: cmd.secrets_file.clone(),
        task_credentials: if cmd.host_credentials {
            TaskCredentialsFrom::Host
        } else {
            TaskCredentialsFrom::Role
        },
        execution_credentials: if cmd.host_execution_credentials {
            ExecutionCredentialsFrom::Host
        } else {
            ExecutionCredentialsFrom::Role
        },
        done_fd: done.map(|(_, w)| w.as_raw_fd()),
    }
}

/// The supervisor's command line (the same binary with the same global options) and
/// environment; its stdio is the caller's to set.
fn supervisor_process(cmd: &SupervisorCommand, args: &SuperviseArgs) -> Command {
    let mut c = Command::new(&cmd.exe);
    c.arg("--root")
        .arg(&cmd.root)
        .arg("--run-root")
        .arg(&cmd.run_root)
        .arg("--log-level")
        .arg(&cmd.log_level)
        .arg("--userns")
        .arg(
            clap::ValueEnum::to_possible_value(&cmd.userns)
                .expect("every --userns mode has a name")
                .get_name(),
        );
    if let Some(cfg) = &cmd.config {
        c.arg("--config").arg(cfg);
    }
    c.args(args.argv());
    // glibc keeps up to 7 freed chunks per size class in a per-thread cache, which malloc_trim
    // never returns: in a process that lives as long as its task, after setup, that pins
    // ~70 KiB of scattered heap pages (docs/benchmarks.md, supervisor memory). Without the
    // cache the task's start costs no measurable time. (Containers get their environment
    // from the task definition, not from here.)
    #[cfg(target_env = "gnu")]
    c.env(
        "GLIBC_TUNABLES",
        without_tcache(std::env::var("GLIBC_TUNABLES").ok().as_deref()),
    );
    c
}

/// `GLIBC_TUNABLES` for the supervisor: the caller's, with glibc's per-thread malloc
/// cache turned off unless the caller set its size.
#[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
fn without_tcache(inherited: Option<&str>) -> String {
    const OFF: &str = "glibc.malloc.tcache_count=0";
    match inherited.map(str::trim) {
        None | Some("") => OFF.into(),
        Some(t) if t.contains("glibc.malloc.tcache_count=") => t.into(),
        Some(t) => format!("{t}:{OFF}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_line_reads_back_as_written() {
        let platform: rootfs_cache::Platform = "linux/arm64/v8".parse().unwrap();
        let images = vec![
            "127.0.0.1:5000/a/b:1".to_string(),
            format!("busybox@sha256:{}", "0".repeat(64)),
        ];
        let line = images_line(&platform, &images).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert_eq!(
            parse_images_line(line.trim_end()),
            Some((platform.clone(), images))
        );
        // What could not be read back is not written.
        assert_eq!(images_line(&platform, &[]), None);
        assert_eq!(images_line(&platform, &["a b".to_string()]), None);
        assert_eq!(images_line(&platform, &["Not/A:ref:!".to_string()]), None);
        let many = vec![format!("registry.example/{}:1", "a".repeat(200)); 100];
        assert_eq!(images_line(&platform, &many), None);
        // A task id is no images line.
        assert_eq!(parse_images_line("0123456789abcdef0123456789abcdef"), None);
    }

    #[test]
    fn a_cgroups_line_reads_back_only_as_written() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_cgroups_line(&format!("cgroups {id} 3")),
            Some((id.to_string(), 3))
        );
        for bad in [
            format!("cgroups {id} 0"),
            format!("cgroups {id} 11"),
            format!("cgroups {id} 1 2"),
            format!("cgroups {id}"),
            format!("cgroups {} 1", id.to_uppercase()),
            "cgroups ../../etc 1".to_string(),
            format!("images {id} 1"),
            id.to_string(),
        ] {
            assert_eq!(parse_cgroups_line(&bad), None, "{bad}");
        }
    }

    #[test]
    fn supervisor_tunables_keep_the_callers() {
        assert_eq!(without_tcache(None), "glibc.malloc.tcache_count=0");
        assert_eq!(without_tcache(Some("")), "glibc.malloc.tcache_count=0");
        assert_eq!(
            without_tcache(Some("glibc.malloc.arena_max=2")),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
        );
        assert_eq!(
            without_tcache(Some("glibc.malloc.tcache_count=3")),
            "glibc.malloc.tcache_count=3"
        );
    }

    #[test]
    fn ids_are_drawn_fresh_and_shaped_like_ecs_ids() {
        let a = Ids::new(3).unwrap();
        let b = Ids::new(3).unwrap();
        assert_eq!(a.task.len(), 32);
        assert!(a.task.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.containers.len(), 3);
        let mut all: Vec<&str> = vec![&a.task, &a.attachment, &b.task, &b.attachment];
        all.extend(a.containers.iter().chain(&b.containers).map(String::as_str));
        for u in all.iter().skip(1).filter(|u| u.contains('-')) {
            let parts: Vec<usize> = u.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
            assert_eq!(&u[14..15], "4", "{u}");
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "every id differs");
        assert!(Ids::new(0).unwrap().containers.is_empty());
    }

    #[test]
    fn launch_lock_is_held_until_released() {
        let root = tempfile::tempdir().unwrap();
        let dir = TaskPaths::new(root.path(), Path::new("/"), "t1").dir;
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(launch_in_progress(root.path(), "t1"), None);
        hold_launch_lock(&dir, "t1").unwrap();
        assert_eq!(launch_in_progress(root.path(), "t1"), Some(true));
        release_launch_lock(root.path(), "t1");
        assert_eq!(launch_in_progress(root.path(), "t1"), None);
        // A lock file whose holder is gone (here: never locked) reads as free.
        std::fs::write(launch_lock(&dir), "").unwrap();
        assert_eq!(launch_in_progress(root.path(), "t1"), Some(false));
    }

    #[test]
    fn overrides_replace_command_and_merge_environment() {
        let def: TaskDefinition = serde_json::from_str(
            r#"{"family":"f","containerDefinitions":[{"name":"app","image":"x","command":["a"],
                "environment":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]}"#,
        )
        .unwrap();
        let o: TaskOverride = serde_json::from_str(
            r#"{"containerOverrides":[{"name":"app","command":["b"],
                "environment":[{"name":"B","value":"3"},{"name":"C","value":"4"}]}]}"#,
        )
        .unwrap();
        let d = apply_overrides(&def, &o, "f:1").unwrap();
        let c = &d.container_definitions.unwrap()[0];
        assert_eq!(c.command.as_deref().unwrap(), ["b"]);
        let env: Vec<_> = c
            .environment
            .iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}={}",
                    e.name.as_deref().unwrap(),
                    e.value.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(env, ["A=1", "B=3", "C=4"]);
        let bad: TaskOverride =
            serde_json::from_str(r#"{"containerOverrides":[{"name":"nope"}]}"#).unwrap();
        let e = apply_overrides(&def, &bad, "f:1").unwrap_err().to_string();
        assert!(
            e.contains("\"nope\" is not in task definition f:1 (its containers: app)"),
            "{e}"
        );
    }
}
