//! A minimal init for pid 1 (Docker's `--init`, tini's job): runs the command as its child,
//! forwards signals to it, reaps every zombie, and exits with the child's status.
//!
//! The runtime bind-mounts a static init binary at [`crate::oci::INIT_PATH`] and runs
//! `/dev/init -- <command…>`. minifargate's binary plays that role: its `main` calls
//! [`is_init_invocation`] first and, if true, `std::process::exit(run(&args))`.

use std::process::Command;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// True when this process was started as the container init (`argv[0]` is `/dev/init`).
pub fn is_init_invocation() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a == crate::oci::INIT_PATH)
}

/// Signals passed on to the child. SIGCHLD is handled; SIGKILL and SIGSTOP cannot be
/// caught (and the kernel never delivers them to a namespace's pid 1 from inside).
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGWINCH,
];

/// Runs `args` (after an optional leading `--`) as a child and serves as its init.
/// Returns the exit code to exit with: the child's, or 128 + the signal that killed it.
pub fn run(args: &[String]) -> i32 {
    let args: Vec<&String> = args.iter().skip_while(|a| a.as_str() == "--").collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("init: no command given");
        return 2;
    };
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    // Handlers first (see install_noop_handlers), then block them before the child
    // exists so none is lost; the child gets an empty mask (handlers reset at exec).
    if let Err(e) = crate::sys::install_noop_handlers(FORWARDED) {
        eprintln!("init: failed to install signal handlers: {e}");
        return 1;
    }
    if let Err(e) = set.thread_block() {
        eprintln!("init: failed to block signals: {e}");
        return 1;
    }
    let mut command = Command::new(cmd);
    command.args(rest);
    crate::sys::unblock_signals_in_child(&mut command);
    let child = match command.spawn() {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("init: failed to run {cmd}: {e}");
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("init: sigwait: {e}");
                return 1;
            }
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        // Reap everything that exited: the child, and orphans re-parented to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
