//! A namespace holder: a tiny process that is pid 1 of a new pid namespace (and owns a new
//! ipc namespace) for the containers of one task to join, as ECS's pause container does.
//!
//! Why a process of its own: a pid namespace lives only as long as its pid 1. Joining the
//! first container's namespace would break the task when that container exits (the
//! kernel kills every process of the namespace and refuses new ones). The holder lives
//! from before the first container until teardown, reaps the orphans the kernel hands to
//! a namespace's pid 1, and takes every process of the namespace with it when it is
//! killed. Ref: amazon-ecs-agent agent/api/task/task.go (the pause container that
//! `pidMode`/`ipcMode` `task` share), pid_namespaces(7) ("If the init process of a PID
//! namespace terminates, the kernel terminates all of the processes in the namespace").
//!
//! With a user namespace ([`HeldNamespaces::user`]) the holder also makes the task's own
//! user namespace, in the same clone(2), so the pid and ipc namespaces it makes are owned
//! by it and the containers that join it (and the task's network namespace, made inside
//! it) can use them: a namespace owned by the host's user namespace cannot be joined from
//! a child one. The caller writes the id maps right after the clone, before anything joins.
//! Ref: user_namespaces(7) ("When a new user namespace is created with other namespaces in
//! one clone(2), the user namespace is created first"; "Defining user and group ID
//! mappings").
//!
//! The holder runs a program the caller names (minifargate's own binary, invoked with
//! [`HOLDER_ARGV0`] so that its `main` calls [`run`]); it dies with the thread that
//! started it (PR_SET_PDEATHSIG), so a supervisor that crashes leaves no holder behind.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How long [`NamespaceHolder::stop`] waits for the holder to go.
pub const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `argv[0]` of a holder process: what `ps` shows, and how the binary knows its role.
pub const HOLDER_ARGV0: &str = "minifargate-ns-holder";

/// Errors of the namespace holder.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error("failed to start the namespace holder {}", program.display())]
    Start {
        program: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the namespace holder's program path or argument {0:?} contains a NUL byte")]
    Nul(String),
    #[error(
        "the namespace holder (pid {pid}) did not go within {waited:?}: a process of its pid \
         namespace was not reaped"
    )]
    NotGone {
        pid: i32,
        waited: std::time::Duration,
    },
    #[error("failed to write the user namespace's {file} of the namespace holder (pid {pid})")]
    IdMap {
        pid: i32,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to stop the namespace holder (pid {pid})")]
    Stop {
        pid: i32,
        #[source]
        source: nix::Error,
    },
}

/// Which namespaces the holder makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldNamespaces {
    pub pid: bool,
    pub ipc: bool,
    /// A new user namespace mapping container ids to this host range.
    pub user: Option<crate::IdRange>,
    /// A new network namespace (owned by the new user namespace when there is one), for
    /// the task's network to adopt, as ECS's pause container holds a task's.
    pub net: bool,
}

impl HeldNamespaces {
    /// Whether a holder is needed at all.
    pub fn any(&self) -> bool {
        self.pid || self.ipc || self.net || self.user.is_some()
    }
}

/// A running holder. [`NamespaceHolder::kill`] kills it, and with it every process of its
/// pid namespace; [`NamespaceHolder::stop`] also reaps it. Dropping it kills it.
#[derive(Debug)]
pub struct NamespaceHolder {
    pid: i32,
    held: HeldNamespaces,
    killed: bool,
    reaped: bool,
}

/// True when this process was started as a holder (`argv[0]` is [`HOLDER_ARGV0`]).
pub fn is_holder_invocation() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a == HOLDER_ARGV0)
}

/// The holder's life as pid 1: reap every child the kernel re-parents to it, forever.
/// It ends only by SIGKILL (a namespace's init gets no other signal it has no handler for).
pub fn run() -> i32 {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    if let Err(e) = set.thread_block() {
        eprintln!("{HOLDER_ARGV0}: failed to block SIGCHLD: {e}");
        return 1;
    }
    loop {
        while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
        if let Err(e) = set.wait() {
            eprintln!("{HOLDER_ARGV0}: sigwait: {e}");
            return 1;
        }
    }
}

impl NamespaceHolder {
    /// Starts `program` (called with `argv[0]` = [`HOLDER_ARGV0`] and `args`) in the new
    /// namespaces `held` asks for. It dies when the calling thread ends: call this from
    /// the thread that owns the task to its end.
    pub fn start(
        program: &Path,
        args: &[&str],
        held: HeldNamespaces,
    ) -> Result<NamespaceHolder, HolderError> {
        let prog = CString::new(program.as_os_str().as_bytes())
            .map_err(|_| HolderError::Nul(program.display().to_string()))?;
        let argv = std::iter::once(HOLDER_ARGV0)
            .chain(args.iter().copied())
            .map(|a| CString::new(a).map_err(|_| HolderError::Nul(a.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut flags = CloneFlags::empty();
        if held.pid {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        if held.ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if held.user.is_some() {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        if held.net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let pid =
            crate::sys::clone_exec(&prog, &argv, flags).map_err(|source| HolderError::Start {
                program: program.to_path_buf(),
                source,
            })?;
        let holder = NamespaceHolder {
            pid: pid.as_raw(),
            held,
            killed: false,
            reaped: false,
        };
        if let Some(range) = held.user {
            // Written once, by a process with CAP_SETUID/CAP_SETGID in the parent
            // namespace (root here): no newuidmap, and setgroups stays allowed. On error
            // the holder is dropped, which kills it.
            for file in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{}/{file}", holder.pid), range.map_line()).map_err(
                    |source| HolderError::IdMap {
                        pid: holder.pid,
                        file,
                        source,
                    },
                )?;
            }
        }
        tracing::debug!(pid = holder.pid, ?held, "namespace holder started");
        Ok(holder)
    }

    /// `/proc/<pid>/ns/net`; `None` when the holder made no network namespace.
    pub fn net_namespace(&self) -> Option<PathBuf> {
        self.held
            .net
            .then(|| PathBuf::from(format!("/proc/{}/ns/net", self.pid)))
    }

    /// `/proc/<pid>/ns/user` and its range; `None` when the holder made no user namespace.
    pub fn user_namespace(&self) -> Option<crate::UserNamespace> {
        self.held.user.map(|range| crate::UserNamespace {
            path: PathBuf::from(format!("/proc/{}/ns/user", self.pid)),
            range,
        })
    }

    /// The holder's pid (in this process's pid namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `/proc/<pid>/ns/pid`, for [`crate::NamespaceMode::Join`]; `None` when the holder
    /// made no pid namespace.
    pub fn pid_namespace(&self) -> Option<PathBuf> {
        self.held
            .pid
            .then(|| PathBuf::from(format!("/proc/{}/ns/pid", self.pid)))
    }

    /// `/proc/<pid>/ns/ipc`; `None` when the holder made no ipc namespace.
    pub fn ipc_namespace(&self) -> Option<PathBuf> {
        self.held
            .ipc
            .then(|| PathBuf::from(format!("/proc/{}/ns/ipc", self.pid)))
    }

    /// Sends the holder SIGKILL: the kernel then kills every process of its pid namespace.
    /// The holder finishes dying only once those processes are reaped by their parents
    /// (the caller's containers: delete them), so reap it afterwards with [`Self::stop`].
    pub fn kill(&mut self) -> Result<(), HolderError> {
        if self.killed {
            return Ok(());
        }
        self.killed = true;
        // Not reaped before `stop`, so the pid is still the holder's.
        match kill(Pid::from_raw(self.pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(source) => Err(HolderError::Stop {
                pid: self.pid,
                source,
            }),
        }
    }

    /// Kills the holder if [`Self::kill`] did not, and reaps it. It is gone only once every
    /// process of its pid namespace is reaped: delete the containers that joined it first.
    /// Waits [`STOP_TIMEOUT`] at most (a container process nobody reaps would block it
    /// for ever); then the error says so, and the holder goes when this process ends.
    pub fn stop(mut self) -> Result<(), HolderError> {
        self.kill()?;
        self.reaped = true;
        let pid = Pid::from_raw(self.pid);
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                // ECHILD: someone reaped it already (a subreaper's waitpid(-1)).
                Ok(_) | Err(nix::Error::ECHILD) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(source) => {
                    return Err(HolderError::Stop {
                        pid: self.pid,
                        source,
                    });
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(HolderError::NotGone {
                    pid: self.pid,
                    waited: STOP_TIMEOUT,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Kills a holder that was not stopped, without waiting (its namespace's processes may not
/// be reaped yet); a try to reap it follows.
impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if let Err(e) = self.kill() {
            tracing::warn!(error = %e, "failed to kill the namespace holder");
        }
        let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_of(pid: i32, ns: &str) -> PathBuf {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
    }

    /// Needs root (new pid and ipc namespaces). `sleep` stands in for the holder program.
    #[test]
    fn the_holder_owns_new_pid_and_ipc_namespaces_and_dies_when_stopped() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let h = NamespaceHolder::start(
            Path::new("/bin/sleep"),
            &["1000"],
            HeldNamespaces {
                pid: true,
                ipc: true,
                user: None,
                net: false,
            },
        )
        .unwrap();
        let me = std::process::id() as i32;
        // The exec may not have happened yet; the namespaces exist from the clone on.
        assert_ne!(ns_of(h.pid(), "pid"), ns_of(me, "pid"));
        assert_ne!(ns_of(h.pid(), "ipc"), ns_of(me, "ipc"));
        // pid 1 of its namespace: NSpid lists the pid here, then 1.
        let status = std::fs::read_to_string(format!("/proc/{}/status", h.pid())).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
        assert_eq!(
            h.pid_namespace().unwrap(),
            PathBuf::from(format!("/proc/{}/ns/pid", h.pid()))
        );
        let pid = h.pid();
        h.stop().unwrap();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());

        let h = NamespaceHolder::start(
            Path::new("/bin/sleep"),
            &["1000"],
            HeldNamespaces {
                pid: false,
                ipc: true,
                user: None,
                net: false,
            },
        )
        .unwrap();
        assert_eq!(ns_of(h.pid(), "pid"), ns_of(me, "pid"));
        assert!(h.pid_namespace().is_none());
        let pid = h.pid();
        drop(h);
        // Dropped: killed, reaped when it is gone by then (no waiting in drop).
        let _ = waitpid(Pid::from_raw(pid), None);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Needs root. The user namespace is made first, so the pid namespace is its own.
    #[test]
    fn a_holder_with_a_user_namespace_maps_the_range_and_owns_its_pid_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let range = crate::IdRange {
            start: 3_100_000,
            count: 65536,
        };
        let h = NamespaceHolder::start(
            Path::new("/bin/sleep"),
            &["1000"],
            HeldNamespaces {
                pid: true,
                ipc: false,
                user: Some(range),
                net: true,
            },
        )
        .unwrap();
        let me = std::process::id() as i32;
        assert_ne!(ns_of(h.pid(), "user"), ns_of(me, "user"));
        let map = std::fs::read_to_string(format!("/proc/{}/uid_map", h.pid())).unwrap();
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields, ["0", "3100000", "65536"], "{map}");
        let gmap = std::fs::read_to_string(format!("/proc/{}/gid_map", h.pid())).unwrap();
        assert_eq!(gmap.split_whitespace().collect::<Vec<_>>(), fields);
        // The pid and network namespaces belong to the new user namespace: a process that
        // entered that user namespace (nsenter enters it first) may join them, which it
        // could not if the host's user namespace owned them.
        assert_ne!(ns_of(h.pid(), "net"), ns_of(me, "net"));
        let joined = std::process::Command::new("nsenter")
            .args([
                "-t",
                &h.pid().to_string(),
                "-U",
                "-p",
                "-n",
                "--",
                "/bin/true",
            ])
            .status()
            .unwrap();
        assert!(joined.success(), "nsenter -U -p -n: {joined}");
        assert_eq!(
            h.user_namespace().unwrap().path,
            PathBuf::from(format!("/proc/{}/ns/user", h.pid()))
        );
        let pid = h.pid();
        h.stop().unwrap();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
