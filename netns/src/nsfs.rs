//! Persistent named network namespaces: created on a short-lived thread, pinned by a
//! bind mount of the thread's nsfs file (as `ip netns add` does), entered only on threads.
//!
//! Ref: iproute2 ip/ipnetns.c (`netns_add`): the netns directory is made a shared mount
//! so a later unmount reaches every mount namespace that copied it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// A failed namespace operation, naming the namespace file.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("failed to create directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to make {path} a shared mount")]
    ShareDir {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to create network namespace {path}: it already exists")]
    Exists { path: PathBuf },
    #[error("failed to create network namespace file {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to create a network namespace for {path}")]
    Unshare {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to bind-mount the new network namespace on {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to unmount network namespace {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to remove network namespace file {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to enter network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("a thread working in network namespace {path} panicked")]
    ThreadPanicked { path: PathBuf },
    #[error("failed to start a thread to work in network namespace {path}")]
    Thread {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Directories already made shared by this process.
static SHARED_DIRS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Makes `dir` exist and be a shared mount point, once per process.
fn ensure_shared_dir(dir: &Path) -> Result<(), NsError> {
    let mut done = SHARED_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    let set = done.get_or_insert_with(HashSet::new);
    if set.contains(dir) {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|source| NsError::CreateDir {
        path: dir.into(),
        source,
    })?;
    let share = || {
        mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => {}
        // Not a mount point yet: bind it onto itself first, as iproute2 does.
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .and_then(|()| share())
            .map_err(|source| NsError::ShareDir {
                path: dir.into(),
                source,
            })?;
        }
        Err(source) => {
            return Err(NsError::ShareDir {
                path: dir.into(),
                source,
            });
        }
    }
    set.insert(dir.to_path_buf());
    Ok(())
}

/// Makes `dir` exist and be a shared mount of its own, as [`create`] does before its first
/// pin. A mount namespace copied from the host after this call drops every pin under
/// `dir`, present and future, by detaching `dir` in it: a pin made later on the host lands
/// on the host's mount of `dir`, which the copy no longer has.
pub fn prepare_dir(dir: &Path) -> Result<(), NsError> {
    ensure_shared_dir(dir)
}

/// Creates the empty file a namespace is pinned on; `Exists` when it is there already.
fn pin_file(dir: &Path, name: &str) -> Result<PathBuf, NsError> {
    let path = dir.join(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                NsError::Exists { path: path.clone() }
            } else {
                NsError::CreateFile {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    Ok(path)
}

/// Creates a new network namespace pinned at `dir/name` and returns its path.
/// On failure nothing is left behind.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NsError> {
    ensure_shared_dir(dir)?;
    let path = pin_file(dir, name)?;
    // The new namespace belongs to a fresh thread that exits right after pinning it,
    // so no thread of ours is ever left in the wrong namespace.
    let result = on_fresh_thread(&path, || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NsError::Unshare {
            path: path.clone(),
            source,
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NsError::Mount {
            path: path.clone(),
            source,
        })
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Pins the existing network namespace `source` (an nsfs file such as
/// `/proc/<pid>/ns/net`, e.g. of a task's namespace holder, whose namespace is owned by the
/// task's user namespace) at `dir/name`, as [`create`] pins a new one. On failure nothing
/// is left behind.
pub fn adopt(dir: &Path, name: &str, source: &Path) -> Result<PathBuf, NsError> {
    ensure_shared_dir(dir)?;
    let path = pin_file(dir, name)?;
    if let Err(source) = mount(
        Some(source),
        &path,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = fs::remove_file(&path);
        return Err(NsError::Mount { path, source });
    }
    Ok(path)
}

/// Unpins and removes the namespace at `path`; `Ok(false)` if there was none.
/// The kernel frees the namespace (and the veth end inside it) once nothing uses it.
pub fn remove(path: &Path) -> Result<bool, NsError> {
    let existed = path.exists();
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(source) => {
            return Err(NsError::Unmount {
                path: path.into(),
                source,
            });
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(existed),
        Err(source) => Err(NsError::Remove {
            path: path.into(),
            source,
        }),
    }
}

/// Opens the namespace file at `path` (for `IFLA_NET_NS_FD` or `setns`).
pub fn open(path: &Path) -> Result<File, NsError> {
    File::open(path).map_err(|source| NsError::Open {
        path: path.into(),
        source,
    })
}

/// Runs `f` on a fresh thread that has entered the namespace at `path`; the thread exits
/// when `f` returns. Sockets `f` opens stay in that namespace wherever they are used.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
    let ns = open(path)?;
    on_fresh_thread(path, || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| NsError::Enter {
            path: path.into(),
            source,
        })?;
        Ok(f())
    })
}

/// Runs `f` on a thread of its own (through the thread gate), which ends when `f`
/// returns: what `f` does to its thread's namespaces goes with it. `path` names the
/// namespace in the errors.
fn on_fresh_thread<T: Send>(
    path: &Path,
    f: impl FnOnce() -> Result<T, NsError> + Send,
) -> Result<T, NsError> {
    std::thread::scope(|s| {
        threadgate::spawn_scoped(s, std::thread::Builder::new(), f)
            .map_err(|source| NsError::Thread {
                path: path.into(),
                source,
            })?
            .join()
            .unwrap_or_else(|_| Err(NsError::ThreadPanicked { path: path.into() }))
    })
}
