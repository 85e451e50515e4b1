//! The supervisor's own mount namespace: a task's mounts (its containers' overlay rootfs,
//! tmpfs volumes, shared `/dev/shm`, ephemeral storage) live there, not in the host's
//! mount table, and other tasks' mounts are not in it.
//!
//! Why: the host's `/proc/self/mountinfo` grew by two lines per running task (the overlay
//! rootfs and the `/run/netns` pin), and libcontainer reads the whole file of its own
//! mount namespace several times per container create (libcgroups 0.7
//! `v1::util::get_subsystem_mount_point`, once per controller it cannot find, on each
//! `create_cgroup_manager`; libcontainer 0.7 `rootfs::mount::make_parent_mount_private`
//! and `mount_cgroup_v1`). The kernel formats the whole table on each read, so at 1000
//! tasks a run-task spent a third of its CPU there (docs/benchmarks.md, "N idle tasks").
//! In a namespace of its own the supervisor, and every process it forks (libcontainer's
//! intermediate and init), sees the host's base mounts and its own task's only.
//!
//! How ([`enter`], on the supervisor's main thread, after the network step made the
//! task's netns pin in the host's table):
//! - `unshare(CLONE_NEWNS)`: the calling thread, and every thread or process it starts
//!   afterwards, gets a copy of the host's mount table (mount_namespaces(7));
//! - `/` is made a recursive slave: the host's later mounts and unmounts still reach us,
//!   ours never reach the host (as runc's default rootfs propagation; shared subtrees:
//!   Linux Documentation/filesystems/sharedsubtree.rst);
//! - the netns pin directory (`/run/netns`, a shared bind mount of itself, see
//!   netns/src/nsfs.rs) is detached here, which drops the copies of every other task's pin
//!   and stops new pins from propagating in (one slave copy per supervisor would cost
//!   O(N²) kernel memory); the task's own pin is bound again at the same path from a
//!   descriptor opened before, so libcontainer and the supervisor's threads find the
//!   task's netns by its usual path.
//!
//! What must change the host's table runs on a thread that returns to the host's mount
//! namespace ([`on_host`]): the netns pin's removal at teardown.
//! When a step fails, the thread goes back to the host's namespace and the task runs as
//! before (a warning in the log): the namespace is an optimisation, never a requirement.
//!
//! What users see: the task's rootfs and volume mounts are not in the host's mount table
//! (`findmnt` on the host); they are in the supervisor's (`nsenter -m -t <supervisor
//! pid> findmnt`). They go away with the supervisor's namespace, also when it is killed.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// A step of [`enter`] that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountNsError {
    #[error("failed to open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {what}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("failed to start a thread in the host's mount namespace")]
    Thread {
        #[source]
        source: std::io::Error,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> MountNsError {
    move |source| MountNsError::Sys {
        what: what.into(),
        source,
    }
}

/// The host's mount namespace, once this process has left it.
static HOST: OnceLock<OwnedFd> = OnceLock::new();

/// Where the netns crate pins namespaces by default (`netns::NetworkConfig`).
const DEFAULT_NETNS_DIR: &str = "/run/netns";

/// Moves the calling thread into a mount namespace of its own, as described in the module
/// header; `pin` is the task's netns pin (`None` without one, e.g. host networking).
/// Call it once, before the task's first mount. On failure the thread is back in the
/// host's namespace, and the error says which step failed.
pub fn enter(pin: Option<&Path>) -> Result<(), MountNsError> {
    if HOST.get().is_some() {
        return Ok(());
    }
    let open = |p: &Path| {
        File::open(p).map_err(|source| MountNsError::Open {
            path: p.into(),
            source,
        })
    };
    let host: OwnedFd = open(Path::new("/proc/thread-self/ns/mnt"))?.into();
    // A pin under a netns dir (not /proc/<pid>/ns/net of host mode).
    let pin = pin.filter(|p| !p.starts_with("/proc"));
    let pin_fd = pin.map(open).transpose()?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("create a mount namespace"))?;
    // Right after the unshare no thread shares this thread's filesystem context yet, so
    // setns back to the host's namespace is allowed (setns(2): EINVAL otherwise).
    let inside = || -> Result<(), MountNsError> {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("make / a slave mount"))?;
        let dir = pin
            .and_then(Path::parent)
            .unwrap_or(Path::new(DEFAULT_NETNS_DIR));
        match umount2(dir, MntFlags::MNT_DETACH) {
            // Not a mount point, or no such dir: no pins to drop.
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(sys(format!("detach {}", dir.display()))(e)),
        }
        if let (Some(pin), Some(fd)) = (pin, &pin_fd) {
            // The pin's file is still there under the detached bind mount (it is the same
            // directory); made again if the dir was a filesystem of its own.
            if !pin.exists() {
                std::fs::create_dir_all(dir).map_err(|source| MountNsError::Open {
                    path: dir.into(),
                    source,
                })?;
                File::create(pin).map_err(|source| MountNsError::Open {
                    path: pin.into(),
                    source,
                })?;
            }
            let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
            mount(
                Some(src.as_str()),
                pin,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!("bind the task's netns on {}", pin.display())))?;
        }
        Ok(())
    };
    if let Err(e) = inside() {
        setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(sys("return to the host's mount namespace"))?;
        return Err(e);
    }
    let _ = HOST.set(host);
    Ok(())
}

/// As [`on_host`], without waiting for `f`: it runs on a new thread named `name` (in the
/// host's mount namespace after [`enter`], else in the caller's), whose handle gives its
/// result. Err: no thread could be started.
pub fn spawn_on_host<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<Result<T, MountNsError>>> {
    let host = HOST.get();
    threadgate::spawn(std::thread::Builder::new().name(name.into()), move || {
        if let Some(host) = host {
            unshare(CloneFlags::CLONE_FS).map_err(sys("unshare the filesystem context"))?;
            setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
                .map_err(sys("enter the host's mount namespace"))?;
        }
        Ok(f())
    })
}

/// Runs `f` in the host's mount namespace: on a short-lived thread after [`enter`]
/// (its own filesystem context, then `setns`), on the calling thread otherwise.
pub fn on_host<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, MountNsError> {
    let Some(host) = HOST.get() else {
        return Ok(f());
    };
    std::thread::scope(|s| {
        threadgate::spawn_scoped(s, std::thread::Builder::new(), || {
            // setns into a mount namespace needs a filesystem context of our own.
            unshare(CloneFlags::CLONE_FS).map_err(sys("unshare the filesystem context"))?;
            setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
                .map_err(sys("enter the host's mount namespace"))?;
            Ok(f())
        })
        .map_err(|source| MountNsError::Thread { source })?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
