//! Runs containers for minifargate: an OCI spec built from a plain `ContainerSpec`,
//! started through youki's libcontainer, with task and container cgroups.
//!
//! # Use
//!
//! ```no_run
//! use runtime::{ContainerSpec, CpuQuota, Runtime, TaskLimits, Limits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = Runtime::new("/run/minifargate/runtime")?;
//! // At startup: remove containers and cgroups of tasks that no longer exist.
//! let report = rt.gc(&|_task_id| false);
//! // Task cgroup `minifargate/<task>`: at most 25 ms of CPU per 100 ms, 512 MiB.
//! let cpu_quota = Some(CpuQuota { quota_us: 25_000, period_us: 100_000 });
//! rt.create_task_cgroup("task1", &TaskLimits { cpu_quota, memory: Some(512 << 20), ..Default::default() })?;
//! let spec = ContainerSpec {
//!     args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
//!     limits: Limits { memory: Some(64 << 20), ..Default::default() },
//!     log: runtime::LogConfig::json_file("/var/lib/minifargate/tasks/task1/web.log"),
//!     ..Default::default()
//! };
//! let c = rt.create("task1-web", "task1", &spec, "/var/lib/minifargate/tasks/task1/web/rootfs".as_ref(),
//!                   Some("/run/netns/task1".as_ref()))?;
//! c.start()?;
//! let status = c.wait()?;          // exit code, signal, oom_killed
//! println!("{} oom_killed={}", status.code, status.oom_killed);
//! c.delete()?;
//! rt.remove_task_cgroup("task1")?;
//! # Ok(()) }
//! ```
//!
//! - [`Runtime`]: state dir + cgroup tree (v1 or v2, detected); task cgroups; `create`; `gc`.
//! - [`Container`]: `start`, `wait`/`wait_timeout`/`try_wait` → [`ExitStatus`], `kill`,
//!   `stop(timeout)` (SIGTERM then SIGKILL), `exec` → [`ExecProcess`], `stats`, `delete`.
//! - [`Runtime::info`] / [`Runtime::exec`]: find and exec into a container another
//!   process (the task's supervisor) created on the same state dir.
//! - Security defaults are Docker's: capability set, seccomp allow-list, masked and
//!   read-only paths, minimal `/dev`; see [`Security`].
//! - create/start/exec/delete are serialized within the process: libcontainer changes
//!   the process's working directory while it works.
//! - Logs: Docker json-file lines rotated by [`Rotation`], followed with [`LogFollower`]
//!   across rotations; or each line to a [`LogSink`].
//! - [`init`]: the minimal pid-1 init behind [`ContainerSpec::init`].
//! - [`holder`]: a process holding a pid and ipc namespace that several containers join
//!   ([`NamespaceMode::Join`]), as ECS's pause container does for `pidMode`/`ipcMode` `task`.
//! - [`CgroupLayout`]: which cgroup hierarchies the host mounts where (v1, v2, hybrid);
//!   [`mountinfo`]: the one `/proc/<pid>/mountinfo` parser.
//!
//! # Things to know
//!
//! - **libcontainer forks the calling process.** Its child runs Rust code before it
//!   execs, so a lock another thread held at that instant stays locked in the child.
//!   This crate's executor avoids std's environment lock (taken by every
//!   `Command::spawn`); the caller should not log to a locked stderr from other
//!   threads at a high rate while containers are created, and should call the
//!   lifecycle methods from a dedicated thread (they block).
//! - State (`state_dir`) belongs on tmpfs (`/run/minifargate/...`): on this ext4 root
//!   a create took ~3× longer.
//! - The default seccomp filter covers the native ABI only (32-bit syscalls kill the
//!   thread); [`Seccomp::DefaultWithCompatAbis`] is Docker's exact list, slower to load.
//! - Processes started with [`Container::exec`] in a container with a seccomp filter get
//!   `no_new_privs` (needed to load the filter after capabilities are dropped).
//! - A container's seccomp profile is compiled once (libseccomp, libcontainer's rules)
//!   and kept in a cache directory ([`Runtime::with_filter_cache`]; share one between
//!   runtimes); the init loads the program itself. See `filter.rs` for the order kept.
//! - Privileged containers get every capability this process holds, no seccomp, no
//!   masked paths and a device cgroup allowing everything, but no host device nodes
//!   unless listed in [`ContainerSpec::devices`].
//! - cgroup v2 support (unified `cpu.max`, `memory.max`, `memory.low`,
//!   `memory.swap.max`, `pids.max`, `memory.events`) is unit-tested against a temp dir;
//!   the hosts this was built on have no v2 controllers to run it for real.
#![deny(unsafe_code)]

mod cgroup;
mod cgroup_layout;
mod container;
mod filter;
pub mod holder;
pub mod init;
mod logs;
mod memory;
pub mod mountinfo;
mod mountpoints;
pub mod oci;
mod seccomp;
mod spec;
mod steps;
mod sys;
mod workload;

/// For a CLI verb that only prints: SIGPIPE ends the process quietly when the reader of
/// its output goes away (`minifargate list-tasks | head -1`) instead of every write
/// failing with EPIPE (a `println!` panic). Not for processes that must outlive a client.
pub fn restore_default_sigpipe() {
    sys::restore_default_sigpipe();
}

/// Turns SIGTERM into an event: from now on every SIGTERM this process receives makes the
/// returned descriptor readable (one byte each) instead of ending the process. Once per
/// process; for a long-lived process that cleans up before it exits.
pub fn sigterm_pipe() -> std::io::Result<std::os::fd::OwnedFd> {
    sys::sigterm_pipe()
}

/// Blocks until one of `fds` is readable or hung up, and tells which (in `fds`' order).
pub fn poll_readable(fds: &[std::os::fd::BorrowedFd<'_>]) -> std::io::Result<Vec<bool>> {
    sys::poll_readable(fds)
}

/// Makes the private procfs instance libpathrs resolves `/proc` paths through (a detached
/// `subset=pid` mount, kept by libpathrs for the process's life), for a caller that has
/// time before its first container create: libcontainer's create otherwise makes it on
/// the launch's path (~0.5 ms here). Best effort: libpathrs makes it later if this fails.
pub fn prepare_procfs() {
    let _ = pathrs::procfs::ProcfsHandle::new();
}

/// Takes ownership of the pipe a parent process passed down as descriptor `fd` (checked to
/// be an open pipe) and marks it close-on-exec. Once per descriptor, early: from then on the
/// returned handle is its only owner.
pub fn take_inherited_pipe(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    sys::take_inherited_pipe(fd)
}

mod user;

pub use cgroup::{
    CgroupError, CgroupStats, CgroupVersion, Cgroups, CpuQuota, MAX_CPU_SHARES, MIN_CPU_SHARES,
    MigrationWarmer, TaskLimits, clamp_shares, shares_to_weight,
};
pub use cgroup_layout::{CgroupLayout, CgroupMount, LayoutKind};
pub use container::{
    Container, ContainerInfo, ExecProcess, ExitStatus, GcReport, Runtime, RuntimeError, error_chain,
};
pub use filter::FilterError;
pub use holder::{HeldNamespaces, HolderError, NamespaceHolder};
pub use logs::{LogEntry, LogError, LogFollower, LogSink, Rotation, SinkRef, log_files, read_log};
pub use memory::{Released, release_idle_memory, release_idle_memory_deferred};
pub use nix::sys::signal::Signal;
pub use oci::SpecError;
pub use spec::{
    ContainerSpec, DEFAULT_NOFILE, DevShm, Device, ExecSpec, IdRange, Limits, LogConfig, Mount,
    NamespaceMode, Namespaces, Rlimit, Seccomp, Security, UserNamespace,
};
pub use steps::Steps;
pub use user::{ResolvedUser, UserError, resolve as resolve_user};
