//! Runs containers for minifargate: an OCI spec built from a plain `ContainerSpec`,
//! started through youki's libcontainer, with task and container cgroups.
//!
//! # Use
//!
//! ```no_run
//! use runtime::{ContainerSpec, Runtime, TaskLimits, Limits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = Runtime::new("/run/minifargate/runtime")?;
//! // At startup: remove containers and cgroups of tasks that no longer exist.
//! let report = rt.gc(&|_task_id| false);
//! // Task cgroup `minifargate/<task>`: 256 cpu units → 25 ms per 100 ms, 512 MiB.
//! rt.create_task_cgroup("task1", &TaskLimits { cpu_units: Some(256), memory: Some(512 << 20), ..Default::default() })?;
//! let spec = ContainerSpec {
//!     args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
//!     limits: Limits { memory: Some(64 << 20), ..Default::default() },
//!     log: runtime::LogConfig::JsonFile("/var/lib/minifargate/tasks/task1/web.log".into()),
//!     ..Default::default()
//! };
//! let c = rt.create("task1-web", "task1", &spec, "/var/lib/minifargate/tasks/task1/web/rootfs".as_ref(),
//!                   Some("/run/netns/task1".as_ref()))?;
//! c.start()?;
//! let status = c.wait()?;          // exit code, signal, oom_killed (+ ECS reason)
//! println!("{} {:?}", status.code, status.reason());
//! c.delete()?;
//! rt.remove_task_cgroup("task1")?;
//! # Ok(()) }
//! ```
//!
//! - [`Runtime`]: state dir + cgroup tree (v1 or v2, detected); task cgroups; `create`; `gc`.
//! - [`Container`]: `start`, `wait`/`wait_timeout`/`try_wait` → [`ExitStatus`], `kill`,
//!   `stop(timeout)` (SIGTERM then SIGKILL), `exec` → [`ExecProcess`], `stats`, `delete`.
//! - Security defaults are Docker's: capability set, seccomp allow-list, masked and
//!   read-only paths, minimal `/dev`; see [`Security`].
//! - create/start/exec/delete are serialized within the process: libcontainer changes
//!   the process's working directory while it works.
//! - Logs: Docker json-file lines, followed with [`LogFollower`].
#![deny(unsafe_code)]

mod cgroup;
mod container;
mod logs;
pub mod oci;
mod seccomp;
mod spec;
mod sys;
mod user;

pub use cgroup::{
    CgroupError, CgroupStats, CgroupVersion, Cgroups, TaskLimits, cpu_quota_us, cpu_shares,
    shares_to_weight,
};
pub use container::{
    Container, ExecProcess, ExitStatus, GcReport, OOM_REASON, Runtime, RuntimeError, error_chain,
};
pub use logs::{LogEntry, LogError, LogFollower, read_log};
pub use nix::sys::signal::Signal;
pub use oci::SpecError;
pub use spec::{
    ContainerSpec, DEFAULT_NOFILE, Device, ExecSpec, Limits, LogConfig, Mount, NamespaceMode,
    Namespaces, Rlimit, Seccomp, Security,
};
pub use user::{ResolvedUser, UserError, resolve as resolve_user};
