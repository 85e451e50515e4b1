//! A network namespace made while the supervisor waits for its task.
//!
//! A supervisor started ahead of its task (`launch::prestart_supervisor`) sits idle while
//! its launcher records the task (a few milliseconds). Making a network namespace is the
//! costliest kernel call of the network step (`unshare(CLONE_NEWNET)`: ~0.6 ms alone, more
//! when the previous task's namespace is being freed, as both take the kernel's
//! network-wide locks); so it is made then, on a thread of its own, and the network step
//! pins it (`netns::TaskSpec::adopt_netns`) instead of making one on the launch's path.
//!
//! It is only a descriptor until pinned: a task in host mode, a task with a user namespace
//! (its namespace holder makes the network namespace inside it) or a launch that never
//! comes closes it, and the kernel frees the namespace. Nothing outlives the process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::thread::JoinHandle;

/// The namespace being made, or made (see the module doc).
pub struct Ahead {
    thread: JoinHandle<std::io::Result<OwnedFd>>,
}

impl Ahead {
    /// Starts making a network namespace on a thread that ends once it has a descriptor of
    /// it (no thread of this process stays in it). `None` if no thread could be started:
    /// the network step then makes the namespace itself.
    pub fn start() -> Option<Ahead> {
        let spawned =
            threadgate::spawn(std::thread::Builder::new().name("netns-ahead".into()), make);
        match spawned {
            Ok(thread) => Some(Ahead { thread }),
            Err(e) => {
                tracing::debug!(error = %e, "no thread to make the network namespace ahead");
                None
            }
        }
    }

    /// Waits for the namespace. `None` if it could not be made (the reason is logged): the
    /// network step then makes one as before.
    pub fn take(self) -> Option<Made> {
        match self.thread.join() {
            Ok(Ok(fd)) => Some(Made { fd }),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the network namespace made ahead failed");
                None
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// A network namespace made ahead, open as a descriptor until the network step pins it.
pub struct Made {
    fd: OwnedFd,
}

impl Made {
    /// A path that names the namespace while `self` lives, for a bind mount's source.
    pub fn path(&self) -> PathBuf {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd()).into()
    }
}

/// The thread's work: a new network namespace, as a descriptor (close-on-exec). It
/// allocates nothing (rustix passes the path through a stack buffer), so the thread never
/// gets a malloc arena of its own that would stay in the idle supervisor's memory.
fn make() -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(rustix::fs::open(
        "/proc/thread-self/ns/net",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_namespace_made_ahead_is_a_new_one_and_no_thread_stays_in_it() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let made = Ahead::start().unwrap().take().expect("a namespace");
        let theirs = std::fs::metadata(made.path()).unwrap().ino();
        assert_ne!(ours, theirs, "a namespace of its own");
        // The thread that made it has ended: only its descriptor holds it.
        let me = std::process::id();
        for t in std::fs::read_dir(format!("/proc/{me}/task")).unwrap() {
            let ns = t.unwrap().path().join("ns/net");
            if let Ok(m) = std::fs::metadata(&ns) {
                assert_ne!(m.ino(), theirs, "{} is in it", ns.display());
            }
        }
    }
}
