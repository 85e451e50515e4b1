//! The task's network step: a seam ([`TaskNetwork`]) the `netns` crate will plug into,
//! and the stop-gap in use until then: one private netns with loopback per task.
//!
//! `none`, `awsvpc` and `bridge` all get a fresh namespace shared by the task's containers
//! (they talk over localhost, as on Fargate); `host` joins the supervisor's namespace.

use crate::taskdef::model::NetworkMode;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("failed to create the network namespace of task {task}")]
    Create {
        task: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to bring up loopback in the network namespace of task {task}: {detail}")]
    Loopback { task: String, detail: String },
    #[error("failed to remove the network namespace {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the network step gave the task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attachment {
    /// The namespace containers join (`/proc/<pid>/ns/net` for host mode).
    pub netns: Option<PathBuf>,
    /// A note for describe-tasks/warnings when the mode is emulated.
    pub warning: Option<String>,
}

/// Sets up and tears down a task's network. Teardown must be idempotent: it also runs
/// for a task whose supervisor died, from what is on disk.
pub trait TaskNetwork {
    fn setup(&mut self, task_id: &str, mode: NetworkMode) -> Result<Attachment, NetworkError>;
    /// Removes everything `setup` made; every step runs, every error is returned.
    fn teardown(&mut self, task_id: &str) -> Vec<NetworkError>;
}

/// The stop-gap: a bind-mounted netns at `<run-dir>/netns` with only loopback up.
pub struct LoopbackOnly {
    pub netns_path: PathBuf,
}

pub const NOT_CONNECTED: &str = "networking beyond the task is not connected yet: the task's \
     containers share one network namespace with loopback only (no ENI address, no published \
     ports)";

impl TaskNetwork for LoopbackOnly {
    fn setup(&mut self, task_id: &str, mode: NetworkMode) -> Result<Attachment, NetworkError> {
        if mode == NetworkMode::Host {
            return Ok(Attachment {
                netns: Some(PathBuf::from(format!(
                    "/proc/{}/ns/net",
                    std::process::id()
                ))),
                warning: None,
            });
        }
        create_netns(task_id, &self.netns_path)?;
        Ok(Attachment {
            netns: Some(self.netns_path.clone()),
            warning: (mode != NetworkMode::None).then(|| NOT_CONNECTED.to_string()),
        })
    }

    fn teardown(&mut self, _task_id: &str) -> Vec<NetworkError> {
        remove_netns(&self.netns_path).into_iter().collect()
    }
}

/// Makes a new network namespace on a dedicated thread (namespaces are per thread, so
/// the supervisor's own threads never switch), brings up `lo` there and pins the
/// namespace with a bind mount at `path`.
fn create_netns(task_id: &str, path: &Path) -> Result<(), NetworkError> {
    let create = |source| NetworkError::Create {
        task: task_id.to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    std::fs::File::create(path).map_err(create)?;
    let p = path.to_path_buf();
    let t = task_id.to_string();
    let res = std::thread::spawn(move || -> Result<(), NetworkError> {
        let create = |source| NetworkError::Create {
            task: t.clone(),
            source,
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| create(e.into()))?;
        // A child forked from this thread starts in this thread's namespace.
        // TODO(netns crate): netlink instead of iproute2.
        let out = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .output()
            .map_err(|e| NetworkError::Loopback {
                task: t.clone(),
                detail: format!("cannot run `ip` (install iproute2): {e}"),
            })?;
        if !out.status.success() {
            return Err(NetworkError::Loopback {
                task: t.clone(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| create(e.into()))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetworkError::Loopback {
            task: task_id.to_string(),
            detail: "the namespace thread panicked".into(),
        })
    });
    if res.is_err() {
        let _ = std::fs::remove_file(path);
    }
    res
}

/// Unmounts and removes a pinned namespace; absent is fine.
pub fn remove_netns(path: &Path) -> Option<NetworkError> {
    if !path.exists() {
        return None;
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Some(NetworkError::Remove {
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
    }
    std::fs::remove_file(path)
        .err()
        .filter(|e| e.kind() != std::io::ErrorKind::NotFound)
        .map(|source| NetworkError::Remove {
            path: path.to_path_buf(),
            source,
        })
}
