//! The run root's template mount namespace: the host's mount table without the netns pins,
//! made once and pinned at `<run-root>/mntns/ns`, so a supervisor copies a few dozen mounts
//! at its launch instead of the host's table with every running task's netns pin in it.
//!
//! The template is made on a fresh thread (`unshare(CLONE_NEWNS)`), with `/` made a
//! recursive slave of the host's (the host's later mounts and unmounts under a shared
//! mount still propagate in; nothing propagates out), and the netns pin dir and the
//! template's own dir detached in it. The pin dir is made a mount of its own first
//! (`netns::nsfs::prepare_dir`): were it made later, its creation on the host would
//! propagate into the template as a slave copy, and every later pin with it.
//!
//! The pin is a bind mount of the namespace's nsfs file, made from the host's namespace:
//! a mount namespace can only be pinned in an older one (the kernel refuses a loop), and
//! the pin's directory is a private bind mount of itself so that the pin propagates
//! nowhere, not into the template either. Concurrent first launches take a flock on
//! `<run-root>/mntns/lock` and look again before they make one; a pin that is not a live
//! namespace (a process killed while making it, an unmounted pin) is made again in place.
//! `system reset` removes it ([`Template::remove`]).

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

/// A step of making, opening or removing the template that failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("failed to create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("failed to prepare the netns pin directory {path}")]
    NetnsDir {
        path: PathBuf,
        #[source]
        source: netns::NsError,
    },
    #[error("failed to {what}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
    },
    #[error("failed to start the thread that makes the template mount namespace")]
    Thread {
        #[source]
        source: io::Error,
    },
    #[error("failed to remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> TemplateError {
    move |source| TemplateError::Sys {
        what: what.into(),
        source,
    }
}

/// The template of one run root (`<run-root>/mntns`).
#[derive(Debug, Clone)]
pub struct Template {
    dir: PathBuf,
}

impl Template {
    pub fn of(run_root: &Path) -> Template {
        Template {
            dir: run_root.join("mntns"),
        }
    }

    /// Where the namespace is pinned.
    pub fn pin(&self) -> PathBuf {
        self.dir.join("ns")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The pinned namespace, if the pin is one (not an empty file or missing).
    pub fn open_live(&self) -> Result<Option<File>, TemplateError> {
        let pin = self.pin();
        let f = match File::open(&pin) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TemplateError::Open { path: pin, source }),
        };
        let fs = fstatfs(f.as_fd()).map_err(sys(format!("statfs {}", pin.display())))?;
        Ok((fs.filesystem_type() == NSFS_MAGIC).then_some(f))
    }

    /// The template's namespace (an nsfs file to `setns` into), made first when there is
    /// none, or when the one pinned is `replace` (its inode: found stale by the caller;
    /// another launch may have replaced it already). `netns_dir` is the netns pin dir.
    pub fn open_or_make(
        &self,
        netns_dir: &Path,
        replace: Option<u64>,
    ) -> Result<File, TemplateError> {
        let current = |f: &File| f.metadata().map(|m| m.ino()).ok();
        if let Some(f) = self.open_live()?
            && (replace.is_none() || current(&f) != replace)
        {
            return Ok(f);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| TemplateError::Create {
                path: self.dir.clone(),
                source,
            })?;
        let lock = self.lock_path();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| TemplateError::Open {
                path: lock.clone(),
                source,
            })?;
        let _held = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| TemplateError::Lock { path: lock, source })?;
        // Another launch may have made (or replaced) it while we waited.
        if let Some(f) = self.open_live()?
            && (replace.is_none() || current(&f) != replace)
        {
            return Ok(f);
        }
        self.make(netns_dir)
    }

    /// Makes the template and pins it, replacing what is at the pin. Holds the lock.
    fn make(&self, netns_dir: &Path) -> Result<File, TemplateError> {
        netns::nsfs::prepare_dir(netns_dir).map_err(|source| TemplateError::NetnsDir {
            path: netns_dir.into(),
            source,
        })?;
        private_bind(&self.dir)?;
        let pin = self.pin();
        detach_all(&pin).map_err(sys(format!("unmount the stale {}", pin.display())))?;
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&pin)
            .map_err(|source| TemplateError::Create {
                path: pin.clone(),
                source,
            })?;
        let ns = std::thread::scope(|s| {
            threadgate::spawn_scoped(s, std::thread::Builder::new(), || {
                new_template(netns_dir, &self.dir)
            })
            .map_err(|source| TemplateError::Thread { source })?
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        let src = format!("/proc/self/fd/{}", ns.as_raw_fd());
        mount(
            Some(src.as_str()),
            &pin,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!(
            "pin the template mount namespace on {}",
            pin.display()
        )))?;
        tracing::debug!(pin = %pin.display(), "made the template mount namespace");
        Ok(ns)
    }

    /// Unpins the template and removes its directory; true if there was one. Tasks that
    /// copied it keep their copies.
    pub fn remove(&self) -> Result<bool, TemplateError> {
        if !self.dir.exists() {
            return Ok(false);
        }
        let pin = self.pin();
        detach_all(&pin).map_err(sys(format!("unmount {}", pin.display())))?;
        detach_all(&self.dir).map_err(sys(format!("unmount {}", self.dir.display())))?;
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(source) => Err(TemplateError::Remove {
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

/// Makes `dir` a private mount: a bind mount of itself first when it is not a mount point.
fn private_bind(dir: &Path) -> Result<(), TemplateError> {
    let private = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
    };
    match private() {
        Ok(()) => Ok(()),
        // Not a mount point.
        Err(Errno::EINVAL) => mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .and_then(|()| private())
            .map_err(sys(format!("make {} a private mount", dir.display()))),
        Err(e) => Err(sys(format!("make {} a private mount", dir.display()))(e)),
    }
}

/// Detaches every mount stacked on `path`; Ok when there is none (or no `path`).
pub(super) fn detach_all(path: &Path) -> Result<(), Errno> {
    // Bounded: a path cannot hold more mounts than a process can make, but never spin.
    for _ in 0..64 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// On a thread of its own (which ends with it): a new mount namespace, `/` a recursive
/// slave, the netns pin dir and the template dir detached; its nsfs file, open.
fn new_template(netns_dir: &Path, template_dir: &Path) -> Result<File, TemplateError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("create the template mount namespace"))?;
    super::slave_root().map_err(sys("make / a slave mount in the template"))?;
    for dir in [netns_dir, template_dir] {
        detach_all(dir).map_err(sys(format!("detach {} in the template", dir.display())))?;
    }
    let me = Path::new("/proc/thread-self/ns/mnt");
    File::open(me).map_err(|source| TemplateError::Open {
        path: me.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(f: &File) -> u64 {
        f.metadata().unwrap().ino()
    }

    /// Mount points of this process's table under `dir`.
    fn mounts_under(dir: &Path) -> Vec<PathBuf> {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(dir))
            .collect()
    }

    /// The mount table of the namespace `ns`, read from a thread that entered it.
    fn table_of(ns: &File) -> String {
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_FS).unwrap();
                nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).unwrap();
                fs::read_to_string("/proc/thread-self/mountinfo").unwrap()
            })
            .join()
            .unwrap()
        })
    }

    /// Made once however many ask at the same time, reused, replaced in place when found
    /// stale, free of the pins of the netns dir, and removed without a trace. Root only
    /// (mounts); a netns dir of the test's own.
    #[test]
    fn made_once_reused_replaced_and_removed() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let netns_dir = tmp.path().join("netns");
        let run_root = tmp.path().join("run");
        // A pin in the netns dir before the template (a file bound on a file will do).
        netns::nsfs::prepare_dir(&netns_dir).unwrap();
        let other = netns_dir.join("other");
        File::create(&other).unwrap();
        mount(
            Some("/proc/self/ns/net"),
            &other,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let t = Template::of(&run_root);
        let inos: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| ino(&t.open_or_make(&netns_dir, None).unwrap())))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(inos.windows(2).all(|w| w[0] == w[1]), "{inos:?}");
        let pin_mounts = |t: &Template| {
            mounts_under(&t.dir)
                .into_iter()
                .filter(|p| *p == t.pin())
                .count()
        };
        assert_eq!(pin_mounts(&t), 1);
        let ns = t.open_live().unwrap().unwrap();
        assert_eq!(ino(&ns), inos[0]);
        let table = table_of(&ns);
        let tmp_s = tmp.path().display().to_string();
        assert!(
            table.lines().all(|l| !l.contains(&tmp_s)),
            "the template holds the netns dir or its own: {table}"
        );

        // Stale: replaced once, by whoever comes first.
        let new = t.open_or_make(&netns_dir, Some(inos[0])).unwrap();
        assert_ne!(ino(&new), inos[0]);
        let again = t.open_or_make(&netns_dir, Some(inos[0])).unwrap();
        assert_eq!(ino(&again), ino(&new));
        assert_eq!(pin_mounts(&t), 1);

        // A pin that is not a namespace (an unmounted file): made again in place.
        umount2(&t.pin(), MntFlags::MNT_DETACH).unwrap();
        assert!(t.open_live().unwrap().is_none());
        t.open_or_make(&netns_dir, None).unwrap();
        assert_eq!(pin_mounts(&t), 1);

        assert!(t.remove().unwrap());
        assert!(!t.dir.exists());
        assert!(!t.remove().unwrap());
        assert_eq!(mounts_under(&run_root), Vec::<PathBuf>::new());
        detach_all(&other).unwrap();
        detach_all(&netns_dir).unwrap();
        assert_eq!(mounts_under(tmp.path()), Vec::<PathBuf>::new());
    }
}
