//! Container lifecycle through libcontainer: create, start, wait (with OOM), kill,
//! stop, exec, stats, delete; and the GC of what a dead process left behind.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libcontainer::container::Container as Lc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupError, CgroupStats, Cgroups, TaskLimits};
use crate::logs::LogError;
use crate::oci::SpecError;
use crate::spec::ExecSpec;
use crate::user::{self, UserError};
use crate::workload::Workload;

mod create;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the container lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id {id:?}: use 1-64 of [A-Za-z0-9_.+-]")]
    InvalidId { id: String },
    #[error("container {id} already exists")]
    Exists { id: String },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("failed to build the spec of container {id}")]
    Spec {
        id: String,
        #[source]
        source: SpecError,
    },
    #[error("failed to resolve the user of container {id}")]
    User {
        id: String,
        #[source]
        source: UserError,
    },
    #[error("failed to detect the host's cgroup setup")]
    DetectCgroups(#[source] CgroupError),
    #[error("failed to prepare the seccomp filter of container {id}")]
    Filter {
        id: String,
        #[source]
        source: crate::filter::FilterError,
    },
    #[error("failed to set up the cgroup of {id}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
    #[error("failed to open the log of container {id}")]
    Log {
        id: String,
        #[source]
        source: LogError,
    },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create container {id}{}", cleanup_note(.cleanup))]
    Create {
        id: String,
        #[source]
        source: BoxError,
        /// Errors of the cleanup that followed the failure (empty when it was clean).
        cleanup: Vec<RuntimeError>,
    },
    #[error("failed to start container {id}")]
    Start {
        id: String,
        #[source]
        source: BoxError,
    },
    #[error("failed to exec in container {id}")]
    Exec {
        id: String,
        #[source]
        source: BoxError,
    },
    #[error("failed to signal container {id} with {signal}")]
    Kill {
        id: String,
        signal: Signal,
        #[source]
        source: nix::Error,
    },
    #[error("failed to wait for container {id}")]
    Wait {
        id: String,
        #[source]
        source: nix::Error,
    },
    #[error("failed to delete container {id}: {}", join_errors(.errors))]
    Delete {
        id: String,
        errors: Vec<RuntimeError>,
    },
    #[error("failed to remove leftovers of {what}")]
    Gc {
        what: String,
        #[source]
        source: BoxError,
    },
}

fn join_errors(errors: &[RuntimeError]) -> String {
    errors
        .iter()
        .map(|e| error_chain(e))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cleanup_note(errors: &[RuntimeError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (and cleanup failed: {})", join_errors(errors))
    }
}

/// "a: b: c" for an error and its sources.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How a container's (or exec'd process's) main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code as Docker reports it: the code, or 128 + signal; 137 when OOM-killed.
    pub code: i32,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
    /// The kernel OOM-killed a process in the container's cgroup (pid 1 or any child),
    /// as Docker's `State.OOMKilled`.
    pub oom_killed: bool,
}

impl ExitStatus {
    fn from_wait(status: WaitStatus) -> Self {
        match status {
            WaitStatus::Exited(_, code) => Self {
                code,
                signal: None,
                oom_killed: false,
            },
            WaitStatus::Signaled(_, sig, _) => Self {
                code: 128 + sig as i32,
                signal: Some(sig as i32),
                oom_killed: false,
            },
            _ => Self {
                code: 255,
                signal: None,
                oom_killed: false,
            },
        }
    }
}

/// A container as found on disk by [`Runtime::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub task_id: String,
    /// Relative to each cgroup hierarchy's root (`/minifargate/<task>/<id>`).
    pub cgroup_path: String,
    /// The rootfs directory on the host.
    pub rootfs: PathBuf,
    /// Host pid of the container's pid 1 while it runs.
    pub pid: Option<i32>,
    pub running: bool,
    /// The UTS hostname it was given.
    pub hostname: Option<String>,
}

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct GcReport {
    pub containers: Vec<String>,
    pub task_cgroups: Vec<String>,
    pub errors: Vec<RuntimeError>,
}

/// Saved next to the bundle so a later process can tell whose container this was.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    task_id: String,
    cgroup_path: String,
}

/// libcontainer chdir()s the whole process while creating, starting, exec'ing and
/// deleting, so those calls are serialized per process (see notes/libcontainer.md).
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Holds the lifecycle lock and puts the process's cwd back afterwards.
///
/// It also holds std's stdout and stderr locks. libcontainer clones this process and
/// its intermediate child ends with `std::process::exit`, which flushes stdout under
/// stdout's lock. Had another thread held that lock at the clone (a log line being
/// written), the child would wait forever for an owner that does not exist in it, and
/// the create with it (seen in the tests: libtest printing progress). Holding the
/// (reentrant) locks here makes the cloning thread their owner in the child too.
///
/// The same exit path also takes std's internal thread-info lock, held briefly by any
/// thread that starts or ends: the calls that clone (a create's and an exec's build) also
/// close the [`threadgate`], through which this crate, the netns crate and the supervisor
/// start their threads, so none starts or ends at the instant of the clone. Threads
/// started otherwise (a tokio runtime's blocking pool) are not covered; a libcontainer
/// fix (`_exit` in its cloned child) would cover everything.
struct LifecycleGuard {
    _stderr: std::io::StderrLock<'static>,
    _stdout: std::io::StdoutLock<'static>,
    _lock: MutexGuard<'static, ()>,
    cwd: Option<PathBuf>,
}

impl LifecycleGuard {
    fn take() -> Self {
        let lock = LIFECYCLE.lock().unwrap_or_else(|p| p.into_inner());
        Self {
            _stdout: std::io::stdout().lock(),
            _stderr: std::io::stderr().lock(),
            _lock: lock,
            cwd: std::env::current_dir().ok(),
        }
    }
}

impl Drop for LifecycleGuard {
    fn drop(&mut self) {
        if let Some(cwd) = &self.cwd
            && std::env::current_dir().ok().as_ref() != Some(cwd)
        {
            let _ = std::env::set_current_dir(cwd);
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn open_null(read: bool) -> Result<File, RuntimeError> {
    let path = Path::new("/dev/null");
    let f = if read {
        File::open(path)
    } else {
        File::options().write(true).open(path)
    };
    f.map_err(io_err("open", path))
}

/// The runtime: where state lives and which cgroup tree to use.
#[derive(Debug, Clone)]
pub struct Runtime {
    state_dir: PathBuf,
    cgroups: Cgroups,
    /// Where compiled seccomp filters are kept ([`Runtime::with_filter_cache`]).
    filter_cache: PathBuf,
}

impl Runtime {
    /// A runtime keeping its state under `state_dir` (e.g. `/run/minifargate/runtime`)
    /// and cgroups in the detected hierarchy.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let cgroups = Cgroups::detect().map_err(RuntimeError::DetectCgroups)?;
        Self::with_cgroups(state_dir, cgroups)
    }

    /// As [`Runtime::new`] with an explicit cgroup tree.
    pub fn with_cgroups(
        state_dir: impl Into<PathBuf>,
        cgroups: Cgroups,
    ) -> Result<Self, RuntimeError> {
        let state_dir = state_dir.into();
        // Owner-only: a bundle's config.json holds the container's environment (secrets
        // included), the sockets give a container's console. The parents are the caller's.
        if let Some(parent) = state_dir.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        for d in [
            state_dir.clone(),
            state_dir.join("youki"),
            state_dir.join("bundles"),
            state_dir.join("s"),
        ] {
            private_dir(&d).map_err(io_err("create", &d))?;
        }
        let filter_cache = state_dir.join("seccomp");
        Ok(Self {
            state_dir,
            cgroups,
            filter_cache,
        })
    }

    /// A runtime on an existing state dir that another process (a task's supervisor)
    /// created, for [`Runtime::info`] and [`Runtime::exec`]. Unlike [`Runtime::new`] it
    /// creates nothing: a state dir removed meanwhile (the task stopped) stays removed.
    pub fn attach(state_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let state_dir = state_dir.into();
        for d in [state_dir.join("youki"), state_dir.join("bundles")] {
            if !d.is_dir() {
                return Err(RuntimeError::Io {
                    action: "open the runtime state dir",
                    path: d,
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        }
        let cgroups = Cgroups::detect().map_err(RuntimeError::DetectCgroups)?;
        let filter_cache = state_dir.join("seccomp");
        Ok(Self {
            state_dir,
            cgroups,
            filter_cache,
        })
    }

    /// Keeps the seccomp programs compiled for containers' profiles in `dir` (default:
    /// `seccomp/` in the state dir) instead, e.g. a directory every task's runtime shares
    /// so each profile is compiled once per host. Root-only, like the state dir: a
    /// program found there is loaded into containers (after its stored profile matched).
    pub fn with_filter_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.filter_cache = dir.into();
        self
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn youki_root(&self) -> PathBuf {
        self.state_dir.join("youki")
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("bundles").join(id)
    }

    /// Creates the task's parent cgroup `minifargate/<task-id>` with the task limits.
    pub fn create_task_cgroup(
        &self,
        task_id: &str,
        limits: &TaskLimits,
    ) -> Result<(), RuntimeError> {
        if !valid_id(task_id) {
            return Err(RuntimeError::InvalidId { id: task_id.into() });
        }
        self.cgroups
            .create_task(task_id, limits)
            .map_err(|source| RuntimeError::Cgroup {
                id: task_id.into(),
                source,
            })
    }

    /// Removes the task's cgroup (and any container cgroup left under it).
    pub fn remove_task_cgroup(&self, task_id: &str) -> Result<(), RuntimeError> {
        self.cgroups
            .remove(&Cgroups::task_path(task_id))
            .map_err(|source| RuntimeError::Cgroup {
                id: task_id.into(),
                source,
            })
    }

    /// Where container `id` lives and whether it runs. Works for containers created by
    /// any process on this state dir (the task's supervisor), from its bundle and
    /// libcontainer's state.
    pub fn info(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        if !valid_id(id) {
            return Err(RuntimeError::InvalidId { id: id.into() });
        }
        let bundle = self.bundle_dir(id);
        let meta_path = bundle.join("meta.json");
        let meta: Meta = match std::fs::read(&meta_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| RuntimeError::Io {
                action: "parse",
                path: meta_path.clone(),
                source: e.into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound { id: id.into() });
            }
            Err(e) => return Err(io_err("read", &meta_path)(e)),
        };
        let config = read_config(&bundle)?;
        let (pid, running) = match Lc::load(self.youki_root().join(id)) {
            Ok(lc) => (
                lc.pid().map(|p| p.as_raw()),
                lc.status() == libcontainer::container::ContainerStatus::Running,
            ),
            Err(_) => (None, false),
        };
        Ok(ContainerInfo {
            id: id.into(),
            task_id: meta.task_id,
            cgroup_path: meta.cgroup_path,
            rootfs: config["root"]["path"]
                .as_str()
                .map(PathBuf::from)
                .unwrap_or_default(),
            pid: pid.filter(|_| running),
            running,
            hostname: config["hostname"].as_str().map(str::to_string),
        })
    }

    /// [`Container::exec`] for a container another process (the task's supervisor)
    /// created on this state dir: the caller becomes the exec'd process's parent.
    pub fn exec(&self, id: &str, exec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        let info = self.info(id)?;
        if !info.running {
            return Err(RuntimeError::Exec {
                id: id.into(),
                source: "the container is not running".into(),
            });
        }
        let bundle = self.bundle_dir(id);
        let spec = read_config(&bundle)?;
        exec_in(
            &ExecTarget {
                id,
                spec: &spec,
                rootfs: &info.rootfs,
                bundle: &bundle,
                youki_root: &self.youki_root(),
                sock_dir: &self.state_dir.join("s"),
            },
            exec,
        )
    }

    /// Removes what earlier processes left behind: containers (state dirs, processes,
    /// cgroups, bundles) and task cgroups of every task for which `is_live_task`
    /// returns false. Run it at startup; every leftover is tried, errors are collected.
    ///
    /// Containers are found in this runtime's state dir, but task cgroups in the whole
    /// host-wide `minifargate/` tree: `is_live_task` must answer true for every task
    /// still running on the host, including those of other minifargate processes
    /// (the store knows them), or their processes are killed.
    pub fn gc(&self, is_live_task: &dyn Fn(&str) -> bool) -> GcReport {
        let mut report = GcReport::default();
        let bundles = self.state_dir.join("bundles");
        let mut seen = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&bundles).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let meta: Option<Meta> = std::fs::read(entry.path().join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(m) = &meta
                && is_live_task(&m.task_id)
            {
                seen.insert(id);
                continue;
            }
            let mut errs = Vec::new();
            let state = self.youki_root().join(&id);
            if state.exists()
                && let Err(e) = force_delete(&state)
            {
                errs.push(e);
            }
            if let Some(m) = &meta
                && let Err(source) = self.cgroups.remove(&m.cgroup_path)
            {
                errs.push(RuntimeError::Cgroup {
                    id: id.clone(),
                    source,
                });
            }
            if let Err(source) = std::fs::remove_dir_all(entry.path()) {
                errs.push(RuntimeError::Io {
                    action: "remove",
                    path: entry.path(),
                    source,
                });
            }
            seen.insert(id.clone());
            report.errors.extend(errs);
            report.containers.push(id);
        }
        // State dirs without a bundle (a crash between the two writes).
        for entry in std::fs::read_dir(self.youki_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if seen.contains(&id) {
                continue;
            }
            if let Err(e) = force_delete(&entry.path()) {
                report.errors.push(e);
            }
            report.containers.push(id);
        }
        // Console sockets of processes that died between bind and accept.
        for entry in std::fs::read_dir(self.state_dir.join("s"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for task in self.cgroups.task_ids() {
            if is_live_task(&task) {
                continue;
            }
            match self.cgroups.remove(&Cgroups::task_path(&task)) {
                Ok(()) => report.task_cgroups.push(task),
                Err(source) => report
                    .errors
                    .push(RuntimeError::Cgroup { id: task, source }),
            }
        }
        report
    }
}

/// How long [`force_delete`] tries again while its state dir is still there.
const FORCE_DELETE_FOR: Duration = Duration::from_secs(3);

/// Loads a libcontainer state dir and force-deletes it (kills, removes cgroup and dir).
/// The killed init leaves its cgroup only once it has exited (and, under cgroup v1, been
/// reaped by whoever inherited it): on a loaded box that can outlast libcontainer's own
/// tries at removing the cgroup ("could not delete", seen in a run of the suite with
/// the CPU saturated), so a delete that fails is tried again for [`FORCE_DELETE_FOR`]
/// while the state dir is still there; the last error is returned.
fn force_delete(state: &Path) -> Result<(), RuntimeError> {
    let until = Instant::now() + FORCE_DELETE_FOR;
    loop {
        match force_delete_once(state) {
            Err(_) if Instant::now() < until && state.exists() => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

fn force_delete_once(state: &Path) -> Result<(), RuntimeError> {
    let what = state.display().to_string();
    let _g = LifecycleGuard::take();
    match Lc::load(state.to_path_buf()) {
        Ok(mut lc) => lc.delete(true).map_err(|e| RuntimeError::Gc {
            what,
            source: Box::new(e),
        }),
        // A state dir without a readable state file: nothing ran from it.
        Err(_) => std::fs::remove_dir_all(state).map_err(|e| RuntimeError::Gc {
            what,
            source: Box::new(e),
        }),
    }
}

fn read_config(bundle: &Path) -> Result<serde_json::Value, RuntimeError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Io {
        action: "parse",
        path,
        source: e.into(),
    })
}

/// Compact: every reader parses these files (libcontainer, `info`, `exec`, `gc`), and the
/// pretty form of a config.json is 1.6× the bytes and its formatting the larger part of
/// the serialisation, at every create.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec(value).map_err(|e| RuntimeError::Io {
        action: "serialize",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    write_private(path, &bytes)
}

/// Writes a file mode 0600 from the start (never briefly the umask's mode): a bundle's
/// config.json and an exec's process.json hold the container's environment.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_err("write", path))
}

/// Creates `dir` mode 0700 (its parent must exist), or narrows an existing one to 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                return Ok(());
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700))
        }
        Err(e) => Err(e),
    }
}

/// A console socket for libcontainer to send a pty master to, at a short path
/// (`<state>/s/<pid>-<n>`: unix socket paths are limited to 108 bytes), removed on drop.
struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn bind(dir: &Path) -> Result<Self, RuntimeError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
        Ok(Self { path, listener })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts libcontainer's connection on the console socket and takes the pty master.
fn receive_pty(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                return crate::sys::recv_fd(&stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A callback for the moment pid 1 has exited ([`Container::on_exit`]).
type ExitCallback = Box<dyn FnOnce() + Send>;

/// The exit status, filled once by the waiter thread.
#[derive(Default)]
struct Shared {
    exit: Mutex<Option<Result<ExitStatus, nix::Error>>>,
    cond: Condvar,
    /// Taken and called by the waiter thread once `exit` is set; locked only with `exit`
    /// held, so a callback is either seen by the waiter or called by its registrar.
    on_exit: Mutex<Option<ExitCallback>>,
}

impl Shared {
    /// Sets the exit status, wakes the waiters, calls the registered callback.
    fn set_exit(&self, result: Result<ExitStatus, nix::Error>) {
        let callback = {
            let mut g = self.exit.lock().unwrap_or_else(|p| p.into_inner());
            *g = Some(result);
            self.cond.notify_all();
            self.on_exit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        };
        if let Some(f) = callback {
            f();
        }
    }

    fn wait_timeout(&self, timeout: Option<Duration>) -> Option<Result<ExitStatus, nix::Error>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = *g {
                return Some(r);
            }
            match deadline {
                None => g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    g = self
                        .cond
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// Waits for `pid` to exit *without reaping it* (WNOWAIT: the zombie keeps the pid
/// from being reused until delete), then reads the cgroup's OOM counter while the
/// cgroup still exists.
fn spawn_waiter(
    pid: i32,
    cgroups: Cgroups,
    cgroup_path: String,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    threadgate::spawn(
        std::thread::Builder::new().name(format!("wait-{pid}")),
        move || {
            let result = loop {
                match waitid(
                    Id::Pid(Pid::from_raw(pid)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                ) {
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => break Err(e),
                    Ok(st) => {
                        let mut status = ExitStatus::from_wait(st);
                        match cgroups.oom_kills(&cgroup_path) {
                            Ok(n) if n > 0 => {
                                status.oom_killed = true;
                                status.code = 137;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(pid, error = %e, "failed to read the OOM counter")
                            }
                        }
                        break Ok(status);
                    }
                }
            };
            shared.set_exit(result);
        },
    )
    .expect("spawning a thread")
}

/// A created container. Dropping it does not delete it: call [`Container::delete`].
pub struct Container {
    id: String,
    task_id: String,
    cgroup_path: String,
    bundle: PathBuf,
    cgroups: Cgroups,
    lc: Mutex<Option<Lc>>,
    pid: i32,
    shared: Arc<Shared>,
    waiter: Mutex<Option<JoinHandle<()>>>,
    copiers: Mutex<Vec<JoinHandle<()>>>,
    stdin: Mutex<Option<File>>,
    tty: Mutex<Option<File>>,
    youki_root: PathBuf,
    sock_dir: PathBuf,
    spec: serde_json::Value,
    rootfs: PathBuf,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("task_id", &self.task_id)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container's pid 1.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The cgroup path (relative to each hierarchy root).
    pub fn cgroup_path(&self) -> &str {
        &self.cgroup_path
    }

    /// `/proc/<pid>/ns/<kind>` of the container, for another container to join
    /// (Docker's `--pid container:<id>` / `--ipc container:<id>`).
    pub fn namespace_path(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// The write end of stdin (interactive containers without a tty), once.
    pub fn take_stdin(&self) -> Option<File> {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The pty master of a tty container (write to it for input; output is logged).
    pub fn tty(&self) -> Option<File> {
        self.tty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|f| f.try_clone().ok())
    }

    /// Lets the created process exec the container's command.
    pub fn start(&self) -> Result<(), RuntimeError> {
        let mut lc = self.lc.lock().unwrap_or_else(|p| p.into_inner());
        let lc = lc.as_mut().ok_or_else(|| RuntimeError::Start {
            id: self.id.clone(),
            source: "container was deleted".into(),
        })?;
        let _g = LifecycleGuard::take();
        lc.start().map_err(|e| RuntimeError::Start {
            id: self.id.clone(),
            source: Box::new(e),
        })
    }

    /// Blocks until pid 1 exits; then waits (up to 2 s) for the log copiers to drain.
    pub fn wait(&self) -> Result<ExitStatus, RuntimeError> {
        self.wait_timeout(None).map(|s| s.expect("no timeout"))
    }

    /// As [`Container::wait`], giving up after `timeout` (`Ok(None)`: still running).
    pub fn wait_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<ExitStatus>, RuntimeError> {
        match self.shared.wait_timeout(timeout) {
            None => Ok(None),
            Some(Err(source)) => Err(RuntimeError::Wait {
                id: self.id.clone(),
                source,
            }),
            Some(Ok(status)) => {
                self.join_copiers(Duration::from_secs(2));
                Ok(Some(status))
            }
        }
    }

    /// Calls `f` (on another thread) once pid 1 has exited, or now if it has: the moment
    /// to call [`Container::wait`] without blocking on the process. One callback per
    /// container; a second replaces the first if that has not run yet.
    pub fn on_exit(&self, f: impl FnOnce() + Send + 'static) {
        let g = self.shared.exit.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_some() {
            drop(g);
            f();
            return;
        }
        *self
            .shared
            .on_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// The exit status if pid 1 has exited.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, RuntimeError> {
        self.wait_timeout(Some(Duration::ZERO))
    }

    fn join_copiers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut copiers = self.copiers.lock().unwrap_or_else(|p| p.into_inner());
        // A process that escaped into a shared pid namespace can hold the pipe open:
        // don't wait for it forever.
        while copiers.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        copiers.retain(|h| !h.is_finished());
    }

    /// Sends `signal` to pid 1 (SIGKILL goes to every process in the cgroup).
    pub fn kill(&self, signal: Signal) -> Result<(), RuntimeError> {
        if self
            .shared
            .exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        // pid 1 is not reaped before delete (see spawn_waiter), so the pid is still ours.
        nix::sys::signal::kill(Pid::from_raw(self.pid), signal).map_err(|source| {
            RuntimeError::Kill {
                id: self.id.clone(),
                signal,
                source,
            }
        })?;
        if signal == Signal::SIGKILL {
            self.kill_cgroup();
        }
        Ok(())
    }

    fn kill_cgroup(&self) {
        let procs = match self.cgroups.version() {
            crate::CgroupVersion::V1 => self
                .cgroups
                .root()
                .join("pids")
                .join(self.cgroup_path.trim_start_matches('/')),
            crate::CgroupVersion::V2 => self
                .cgroups
                .root()
                .join(self.cgroup_path.trim_start_matches('/')),
        }
        .join("cgroup.procs");
        for pid in std::fs::read_to_string(procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// `docker stop`: SIGTERM, wait up to `timeout`, then SIGKILL.
    pub fn stop(&self, timeout: Duration) -> Result<ExitStatus, RuntimeError> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        match self.kill(Signal::SIGTERM) {
            Ok(())
            | Err(RuntimeError::Kill {
                source: nix::Error::ESRCH,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        if let Some(s) = self.wait_timeout(Some(timeout))? {
            return Ok(s);
        }
        tracing::info!(container_id = %self.id, ?timeout, "container ignored SIGTERM: sending SIGKILL");
        self.kill(Signal::SIGKILL)?;
        self.wait()
    }

    /// CPU, memory and pids usage from the container's cgroup.
    pub fn stats(&self) -> Result<CgroupStats, RuntimeError> {
        self.cgroups
            .stats(&self.cgroup_path)
            .map_err(|source| RuntimeError::Cgroup {
                id: self.id.clone(),
                source,
            })
    }

    /// Runs a new process in the running container's namespaces and cgroup, with the
    /// container's capabilities, seccomp profile and rlimits. Its stdio is handed back
    /// in the [`ExecProcess`] (pipes, or a pty master with `tty`).
    ///
    /// A command that is not found exits 127 and one that cannot be executed 126 (the
    /// shell's and Docker's codes), with the reason on its stderr.
    pub fn exec(&self, exec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
        if self.try_wait()?.is_some() {
            return Err(RuntimeError::Exec {
                id: self.id.clone(),
                source: "the container is not running".into(),
            });
        }
        exec_in(
            &ExecTarget {
                id: &self.id,
                spec: &self.spec,
                rootfs: &self.rootfs,
                bundle: &self.bundle,
                youki_root: &self.youki_root,
                sock_dir: &self.sock_dir,
            },
            exec,
        )
    }

    /// Stops everything, reads nothing more, and removes the container: processes,
    /// libcontainer state, cgroup, bundle. Every step runs; all failures are reported.
    /// Call [`Container::wait`] first to learn the exit status (and OOM).
    pub fn delete(self) -> Result<(), RuntimeError> {
        let mut errors = Vec::new();
        // Kill first and let the waiter record the status, so it never races the reap below.
        if self.try_wait()?.is_none() {
            if let Err(e) = self.kill(Signal::SIGKILL) {
                tracing::warn!(container_id = %self.id, error = %e, "failed to kill before delete");
            }
            let _ = self.shared.wait_timeout(Some(Duration::from_secs(5)));
        }
        if let Some(lc) = self.lc.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _g = LifecycleGuard::take();
            // pid 1 has exited: of libcontainer's delete only its state dir is left to
            // remove (no hooks, no Intel RDT; the cgroup goes below), without the v1 cgroup
            // manager it builds (docs/benchmarks.md, "Teardown": 592 of 1048 calls).
            let exited = self.shared.exit.lock().is_ok_and(|e| e.is_some());
            if exited {
                if let Err(e) = std::fs::remove_dir_all(&lc.root)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    errors.push(RuntimeError::Gc {
                        what: format!("libcontainer state of {}", self.id),
                        source: Box::new(e),
                    });
                }
            } else if let Err(e) = lc.delete(true) {
                errors.push(RuntimeError::Gc {
                    what: format!("libcontainer state of {}", self.id),
                    source: Box::new(e),
                });
            }
        }
        // pid 1 is dead now (force delete SIGKILLs it): reap it.
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
        if let Some(w) = self.waiter.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
        if let Err(source) = self.cgroups.remove(&self.cgroup_path) {
            errors.push(RuntimeError::Cgroup {
                id: self.id.clone(),
                source,
            });
        }
        if let Err(source) = std::fs::remove_dir_all(&self.bundle) {
            errors.push(RuntimeError::Io {
                action: "remove",
                path: self.bundle.clone(),
                source,
            });
        }
        self.tty.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.join_copiers(Duration::from_secs(1));
        if errors.is_empty() {
            Ok(())
        } else {
            tracing::warn!(container_id = %self.id, error = %join_errors(&errors), "container delete incomplete");
            Err(RuntimeError::Delete {
                id: self.id.clone(),
                errors,
            })
        }
    }
}

/// What an exec needs to know of a container, whichever process created it.
struct ExecTarget<'a> {
    id: &'a str,
    /// The container's OCI config (`config.json` of its bundle).
    spec: &'a serde_json::Value,
    rootfs: &'a Path,
    bundle: &'a Path,
    youki_root: &'a Path,
    sock_dir: &'a Path,
}

fn exec_in(t: &ExecTarget<'_>, exec: &ExecSpec) -> Result<ExecProcess, RuntimeError> {
    let err = |source: BoxError| RuntimeError::Exec {
        id: t.id.to_string(),
        source,
    };
    if exec.args.is_empty() {
        return Err(err("the command is empty".into()));
    }
    let mut process = t.spec["process"].clone();
    process["args"] = serde_json::json!(exec.args);
    process["terminal"] = serde_json::json!(exec.tty);
    if let Some(cwd) = &exec.cwd {
        process["cwd"] = serde_json::json!(cwd);
    }
    let mut env: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for e in &exec.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    process["env"] = serde_json::json!(env);
    if let Some(u) = &exec.user {
        let user = user::resolve(t.rootfs, Some(u), &[]).map_err(|source| RuntimeError::User {
            id: t.id.to_string(),
            source,
        })?;
        process["user"] = serde_json::json!({ "uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids });
        if user.uid != 0 {
            process["capabilities"]["effective"] = serde_json::json!([]);
            process["capabilities"]["permitted"] = serde_json::json!([]);
        }
    }
    // Unique across processes: the supervisor's health checks and `minifargate exec`
    // write here at the same time.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = t
        .bundle
        .join(format!("exec-{}-{seq}.json", std::process::id()));
    write_private(&path, process.to_string().as_bytes())?;
    let result = exec_with(t, &path, exec);
    let _ = std::fs::remove_file(&path);
    result
}

fn exec_with(
    t: &ExecTarget<'_>,
    process: &Path,
    exec: &ExecSpec,
) -> Result<ExecProcess, RuntimeError> {
    let err = |source: BoxError| RuntimeError::Exec {
        id: t.id.to_string(),
        source,
    };
    let youki_root = t.youki_root.to_path_buf();
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err(Box::new(e)));
    let seccomp = t.spec["linux"]
        .get("seccomp")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let mut builder = ContainerBuilder::new(t.id.to_string(), SyscallType::default())
        .with_root_path(youki_root)
        .map_err(|e| err(Box::new(e)))?
        .with_executor(Workload {
            exec_seccomp: seccomp,
            init_filter: None,
            exec: true,
            kill_with_caller: exec.kill_with_caller,
            tty_size: exec.tty.then_some(exec.tty_size).flatten(),
        });
    let (mut stdin_w, mut stdout_r, mut stderr_r, mut console) = (None, None, None, None);
    if exec.tty {
        let sock = ConsoleSocket::bind(t.sock_dir)?;
        builder = builder.with_console_socket(Some(&sock.path));
        console = Some(sock);
    } else {
        let (ir, iw) = pipe()?;
        let (or, ow) = pipe()?;
        let (er, ew) = pipe()?;
        builder = builder.with_stdin(ir).with_stdout(ow).with_stderr(ew);
        stdin_w = Some(File::from(iw));
        stdout_r = Some(File::from(or));
        stderr_r = Some(File::from(er));
    }
    let pid = {
        let _g = LifecycleGuard::take();
        // The build clones this process: no thread starts or ends meanwhile.
        let _gate = threadgate::close();
        builder
            .as_tenant()
            .with_process(Some(process))
            .with_detach(true)
            .build()
            .map_err(|e| err(Box::new(e)))?
    };
    let mut tty_master = None;
    if let Some(sock) = console {
        let r = receive_pty(&sock.listener);
        drop(sock);
        match r {
            Ok(fd) => tty_master = Some(File::from(fd)),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(err(Box::new(e)));
            }
        }
    }
    Ok(ExecProcess {
        pid: pid.as_raw(),
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: stderr_r,
        tty: tty_master,
        status: None,
        lost: false,
    })
}

/// A process started by [`Container::exec`]. Wait for it (it is reaped then); one dropped
/// unwaited is killed and reaped, so it never outlives its handle as a zombie (a zombie
/// in the container's pid namespace keeps the container's init from dying).
#[derive(Debug)]
pub struct ExecProcess {
    pub pid: i32,
    /// Write end of its stdin (no tty).
    pub stdin: Option<File>,
    /// Read ends of its stdout and stderr (no tty).
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    /// The pty master (tty): input and output.
    pub tty: Option<File>,
    status: Option<ExitStatus>,
    /// Reaped elsewhere (`ECHILD`): the pid may belong to someone else now.
    lost: bool,
}

impl ExecProcess {
    /// Blocks until the process exits and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus, RuntimeError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        self.stdin.take();
        loop {
            match waitpid(Pid::from_raw(self.pid), None) {
                Err(nix::Error::EINTR) => continue,
                Err(source) => {
                    self.lost = source == nix::Error::ECHILD;
                    return Err(RuntimeError::Wait {
                        id: format!("exec pid {}", self.pid),
                        source,
                    });
                }
                Ok(st) => {
                    let s = ExitStatus::from_wait(st);
                    self.status = Some(s);
                    return Ok(s);
                }
            }
        }
    }

    /// Reads all of stdout and stderr, then waits: (status, stdout, stderr).
    pub fn output(&mut self) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), RuntimeError> {
        use std::io::Read;
        self.stdin.take();
        let err_reader = self.stderr.take().map(|mut f| {
            threadgate::spawn(
                std::thread::Builder::new().name("stderr".into()),
                move || {
                    let mut v = Vec::new();
                    let _ = f.read_to_end(&mut v);
                    v
                },
            )
            .expect("failed to spawn thread")
        });
        let mut out = Vec::new();
        if let Some(mut f) = self.stdout.take() {
            let _ = f.read_to_end(&mut out);
        }
        let err = err_reader.and_then(|t| t.join().ok()).unwrap_or_default();
        Ok((self.wait()?, out, err))
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if self.status.is_some() || self.lost || self.pid <= 0 {
            return;
        }
        // Never reaped: a zombie child of ours inside the container's pid namespace would
        // block its init's exit (the kernel waits for every process of the namespace to
        // be reaped), and so `Container::delete`'s wait for that init, forever.
        let pid = Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        while let Err(nix::Error::EINTR) = waitpid(pid, None) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dirs_and_bundle_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        let f = state.join("config.json");
        write_json(&f, &serde_json::json!({"process": {"env": ["K=v"]}})).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn handles_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Runtime>();
        send_sync::<Container>();
        send_sync::<ExecProcess>();
        send_sync::<RuntimeError>();
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["t1-web", "abc_DEF.1+2"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn wait_statuses_map_to_docker_exit_codes() {
        let s = ExitStatus::from_wait(WaitStatus::Signaled(
            Pid::from_raw(1),
            Signal::SIGKILL,
            false,
        ));
        assert_eq!((s.code, s.signal, s.oom_killed), (137, Some(9), false));
        let s = ExitStatus::from_wait(WaitStatus::Exited(Pid::from_raw(1), 3));
        assert_eq!((s.code, s.signal), (3, None));
    }
}
