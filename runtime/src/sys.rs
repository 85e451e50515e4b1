//! The crate's only unsafe code: taking ownership of a file descriptor received over
//! a unix socket (the pty master libcontainer sends to the console socket).
#![allow(unsafe_code)]

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// Receives one file descriptor sent with SCM_RIGHTS on `stream`.
pub(crate) fn recv_fd(stream: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            for &extra in &fds[1..] {
                // SAFETY: the kernel just installed `extra` in our table for this
                // message; nobody else knows it, so we own it and may close it.
                drop(unsafe { OwnedFd::from_raw_fd(extra) });
            }
            // SAFETY: as above — a fresh descriptor from SCM_RIGHTS, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no file descriptor in the console socket message",
    ))
}

extern "C" fn noop_handler(_: nix::libc::c_int) {}

/// Installs a do-nothing handler for `signals`. A pid namespace's init only receives
/// signals from outside (SIGTERM from `stop`) for which it has a handler; the init
/// then takes them with sigwait while they are blocked, so the handler never runs.
pub(crate) fn install_noop_handlers(signals: &[nix::sys::signal::Signal]) -> nix::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(noop_handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in signals {
        // SAFETY: the handler is an empty `extern "C" fn`, trivially async-signal-safe;
        // replacing the disposition affects only this single-threaded init process.
        unsafe { sigaction(*s, &action) }?;
    }
    Ok(())
}

/// Makes `cmd`'s child start with an empty signal mask: the init blocks the signals it
/// forwards, and std does not reset the mask on every spawn path.
pub(crate) fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec; it only calls sigprocmask, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// Restores SIGPIPE's default action (end the process quietly). Rust starts programs with
/// SIGPIPE ignored, so printing to a pipe whose reader has gone is an EPIPE error, which
/// `println!` turns into a panic.
pub(crate) fn restore_default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler code; the disposition is process-wide and the
    // caller sets it before it starts threads or children that rely on the old one.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Ends this process at once with `code`: no atexit handlers, no stdio flush. For the
/// forked container process when its exec fails (std's `exit` would take locks another
/// thread of the parent may have held at the fork).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` never returns and touches no memory of this process; it is the
    // async-signal-safe way to leave a forked child.
    unsafe { nix::libc::_exit(code) }
}
