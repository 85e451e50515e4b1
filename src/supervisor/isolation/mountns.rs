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
//! - the thread takes a filesystem context of its own (`unshare(CLONE_FS)`: setns(2) into
//!   a mount namespace needs one) and enters the run root's *template* ([`template`]): the
//!   host's mount table with `/` a recursive slave and without the netns pin directory,
//!   made once per run root and pinned at `<run-root>/mntns/ns`;
//! - `unshare(CLONE_NEWNS)`: the calling thread, and every thread or process it starts
//!   afterwards, gets a copy of the template (mount_namespaces(7)), a few dozen mounts
//!   however many tasks run. Copying the host's table instead copied every running task's
//!   netns pin, then detached them: ~5.6 ms per launch at 1000 tasks (docs/benchmarks.md,
//!   "Stop 45");
//! - `/` is made a recursive slave (a copy of a slave is already a slave of the same
//!   master; this also covers a mount that reached the template shared): the host's later
//!   mounts and unmounts under a shared mount still reach us, ours never reach the host (as
//!   runc's default rootfs propagation; shared subtrees: Linux
//!   Documentation/filesystems/sharedsubtree.rst);
//! - the copy must show the paths the task uses (root, run root, layer cache, the task's
//!   dirs, host volumes' source paths, the working directory) as the host does: each is
//!   stat'ed before the switch and after it. A filesystem mounted on the host after the
//!   template was made, where nothing propagates (a private mount, or a host whose `/` is
//!   private), fails that check: the thread goes back to the host's namespace and the
//!   template is made again, once;
//! - the netns pin directory (`/run/netns`, a shared bind mount of itself, see
//!   netns/src/nsfs.rs) is not in the template, so no other task's pin is in the copy and
//!   new pins do not propagate in (one slave copy per supervisor would cost O(N²) kernel
//!   memory); the task's own pin is bound again at the same path from a descriptor opened
//!   before, so libcontainer and the supervisor's threads find the task's netns by its
//!   usual path.
//!
//! Without a usable template (it cannot be made or entered, or is stale twice) the thread
//! copies the host's table as before and detaches the pin directory there (a warning in the
//! log). The host's namespace (`HOST`) is the one the thread was in before all this.
//!
//! What must change the host's table runs on a thread that returns to the host's mount
//! namespace ([`on_host`]): the netns pin's removal at teardown.
//! When a step fails, the thread goes back to the host's namespace and the task runs as
//! before (a warning in the log): the namespace is an optimisation, never a requirement.
//!
//! What users see: the task's rootfs and volume mounts are not in the host's mount table
//! (`findmnt` on the host); they are in the supervisor's (`nsenter -m -t <supervisor
//! pid> findmnt`). They go away with the supervisor's namespace, also when it is killed.
//! The host's table holds two mounts of the template's, `<run-root>/mntns` (a private bind
//! mount of itself) and the pin `<run-root>/mntns/ns`, from the first task on until
//! `system reset`. Like any mount namespace, the template keeps the filesystems it
//! copied: one unmounted on the host where the unmount does not propagate (a private
//! mount, a host whose `/` is private) stays busy until `system reset`.

pub mod template;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

pub use template::{Template, TemplateError};

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
    #[error("failed to return to the host's mount namespace")]
    Return {
        #[source]
        source: Errno,
    },
    #[error("failed to start a thread in the host's mount namespace")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to use the template mount namespace {pin}")]
    Template {
        pin: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error(
        "failed to use the template mount namespace {pin}: {path} is not the host's there \
         (mounted on the host after the template was made)"
    )]
    Stale { pin: PathBuf, path: PathBuf },
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

/// The run root's template to copy, and the paths the supervisor and its containers use
/// (root, run root, layer cache, the task's dirs, host volumes' source paths): each must
/// be the same file (st_dev, st_ino) in the copy as on the host, else the template is
/// stale and is made again.
pub struct FromTemplate<'a> {
    pub template: &'a Template,
    pub needs: &'a [PathBuf],
}

/// Where [`enter`] took the task's mount namespace from.
#[derive(Debug)]
pub enum Entered {
    /// A copy of the run root's template.
    Template,
    /// A copy of the host's table (no template asked for, or `Some` why it was not used).
    Host(Option<MountNsError>),
    /// This process had left the host's namespace already.
    Already,
}

/// Moves the calling thread into a mount namespace of its own, as described in the module
/// header; `pin` is the task's netns pin (`None` without one, e.g. host networking).
/// Call it once, before the task's first mount; `from`: the template to copy (`None`: the
/// host's table). On failure the thread is back in the host's namespace (unless the way
/// back failed: [`MountNsError::Return`]), and the error says which step failed.
pub fn enter(pin: Option<&Path>, from: Option<FromTemplate>) -> Result<Entered, MountNsError> {
    if HOST.get().is_some() {
        return Ok(Entered::Already);
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
    let netns_dir = pin
        .and_then(Path::parent)
        .unwrap_or(Path::new(DEFAULT_NETNS_DIR));
    let task_pin = pin.zip(pin_fd.as_ref());
    let mut not_used = None;
    if let Some(from) = from {
        match enter_template(&host, &from, netns_dir, task_pin) {
            Ok(()) => {
                let _ = HOST.set(host);
                return Ok(Entered::Template);
            }
            // Stuck elsewhere than on the host: no second try from there.
            Err(e @ MountNsError::Return { .. }) => return Err(e),
            Err(e) => not_used = Some(e),
        }
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("create a mount namespace"))?;
    // Right after the unshare no thread shares this thread's filesystem context yet, so
    // setns back to the host's namespace is allowed (setns(2): EINVAL otherwise).
    let inside = || -> Result<(), MountNsError> {
        slave_root().map_err(sys("make / a slave mount"))?;
        template::detach_all(netns_dir).map_err(sys(format!("detach {}", netns_dir.display())))?;
        bind_task_pin(netns_dir, task_pin)
    };
    if let Err(e) = inside() {
        setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
            .map_err(|source| MountNsError::Return { source })?;
        return Err(e);
    }
    let _ = HOST.set(host);
    Ok(Entered::Host(not_used))
}

/// [`enter`] from the template: a copy of it, checked against the host (made again once if
/// stale). On failure the thread is back in the host's namespace.
fn enter_template(
    host: &OwnedFd,
    from: &FromTemplate,
    netns_dir: &Path,
    task_pin: Option<(&Path, &File)>,
) -> Result<(), MountNsError> {
    let pin = from.template.pin();
    let template_err = |source| MountNsError::Template {
        pin: pin.clone(),
        source,
    };
    // setns(2) moves the thread's working directory to the namespace's root: it is made
    // the same path again inside (relative --root paths), and checked like the others.
    let cwd = std::env::current_dir().map_err(|source| MountNsError::Open {
        path: ".".into(),
        source,
    })?;
    let mut needs: Vec<(PathBuf, (u64, u64))> = Vec::with_capacity(from.needs.len() + 1);
    for p in from.needs.iter().chain(std::iter::once(&cwd)) {
        // What exists of it: a dir made later lands on the same mount as its parent.
        if let Some((at, id)) = p.ancestors().find_map(|a| file_id(a).map(|id| (a, id))) {
            needs.push((at.to_path_buf(), id));
        }
    }
    // setns into a mount namespace needs a filesystem context of our own.
    unshare(CloneFlags::CLONE_FS).map_err(sys("unshare the filesystem context"))?;
    let mut stale = None;
    for _ in 0..2 {
        let ns = from
            .template
            .open_or_make(netns_dir, stale)
            .map_err(template_err)?;
        let copied = || -> Result<(), MountNsError> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)
                .map_err(sys("enter the template mount namespace"))?;
            unshare(CloneFlags::CLONE_NEWNS).map_err(sys("copy the template mount namespace"))?;
            std::env::set_current_dir(&cwd).map_err(|source| MountNsError::Open {
                path: cwd.clone(),
                source,
            })?;
            // Copies of the template's slaves are slaves of the same masters already; this
            // also covers a shared mount the template got by propagation.
            slave_root().map_err(sys("make / a slave mount"))?;
            if let Some((path, _)) = needs.iter().find(|(p, id)| file_id(p) != Some(*id)) {
                return Err(MountNsError::Stale {
                    pin: pin.clone(),
                    path: path.clone(),
                });
            }
            // Cheap when there is nothing (the template has no pin dir mount); drops the
            // pins if the template got them by propagation all the same.
            template::detach_all(netns_dir)
                .map_err(sys(format!("detach {}", netns_dir.display())))?;
            bind_task_pin(netns_dir, task_pin)
        };
        let result = copied();
        if let Err(e) = result {
            setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
                .map_err(|source| MountNsError::Return { source })?;
            std::env::set_current_dir(&cwd).map_err(|source| MountNsError::Open {
                path: cwd.clone(),
                source,
            })?;
            match e {
                MountNsError::Stale { .. } if stale.is_none() => {
                    tracing::info!(error = %e, "making the template mount namespace again");
                    stale = ns.metadata().map(|m| m.ino()).ok().or(Some(0));
                    continue;
                }
                e => return Err(e),
            }
        }
        return Ok(());
    }
    unreachable!("the second try returns")
}

/// (st_dev, st_ino) of `p`, if it exists.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// `/` and everything below it made a recursive slave: the host's later mounts and
/// unmounts still reach us, ours never reach the host. (Also the template's first step.)
fn slave_root() -> nix::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
}

/// Binds the task's netns (open as `fd`) on its pin's path again, in a namespace where the
/// pin dir is not mounted.
fn bind_task_pin(dir: &Path, task_pin: Option<(&Path, &File)>) -> Result<(), MountNsError> {
    let Some((pin, fd)) = task_pin else {
        return Ok(());
    };
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
    .map_err(sys(format!("bind the task's netns on {}", pin.display())))
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
