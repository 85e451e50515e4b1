//! The crate's system calls that need unsafe code: taking ownership of a file descriptor
//! received over a unix socket (the pty master libcontainer sends to the console socket)
//! or inherited from a parent, signal dispositions, poll(2), and clone(2) into new
//! namespaces for the namespace holder.
#![allow(unsafe_code)]

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// The descriptors [`take_inherited_pipe`] has handed out: each has one owner.
static INHERITED_TAKEN: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());

/// Takes ownership of descriptor `fd`, inherited from the parent process, which must be a
/// pipe; marks it close-on-exec so that nothing this process starts inherits it. Once per
/// descriptor (a supervisor takes two: its done pipe and the pipe its task comes on).
pub(crate) fn take_inherited_pipe(fd: RawFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use nix::sys::stat::{SFlag, fstat};
    if fd <= 2 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is a standard stream, not an inherited pipe"),
        ));
    }
    let st = fstat(fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a pipe"),
        ));
    }
    {
        let mut taken = INHERITED_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&fd) {
            return Err(std::io::Error::other(format!(
                "the inherited pipe {fd} was taken already"
            )));
        }
        taken.push(fd);
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: `fd` is open (fstat succeeded) and is the descriptor the parent passed down for
    // this one purpose; the flag above makes this its only taker in the process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Starts a child in new namespaces (`flags`: CLONE_NEWPID, CLONE_NEWIPC) that execs
/// `program` with `argv` at once: it is pid 1 of its new pid namespace. The child gets
/// SIGKILL when the calling thread ends (PR_SET_PDEATHSIG) and keeps none of this
/// process's descriptors but 0-2. Returns its pid (SIGCHLD is sent when it exits).
pub(crate) fn clone_exec(
    program: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    flags: nix::sched::CloneFlags,
) -> nix::Result<nix::unistd::Pid> {
    use nix::libc;
    // Everything the child touches is made here: between clone and exec it may not
    // allocate (another thread of this process may have held the allocator's lock).
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let prog = program.as_ptr();
    let argp = ptrs.as_ptr();
    let mut stack = vec![0u8; 64 * 1024];
    let cb = Box::new(move || -> isize {
        // SAFETY: the child of clone(2) without CLONE_VM owns a copy of this address space;
        // it only makes raw system calls (prctl, sigprocmask, close_range, execv, _exit),
        // all async-signal-safe, on data prepared before the clone (`prog`, `argp`).
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            let empty: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
            libc::execv(prog, argp);
            libc::_exit(127)
        }
    });
    // SAFETY: the callback above is async-signal-safe (see there); `stack` outlives the
    // call (the child runs on its own copy of it, no CLONE_VM); SIGCHLD makes the child
    // waitable like a forked one.
    unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
}

/// The write end of the SIGTERM pipe ([`sigterm_pipe`]), -1 before it exists.
static TERM_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigterm(_: nix::libc::c_int) {
    let fd = TERM_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let saved = nix::errno::Errno::last_raw();
        // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, never closed
        // once stored, and non-blocking (a full pipe already tells the reader enough).
        let _ = unsafe { nix::libc::write(fd, b"T".as_ptr().cast(), 1) };
        nix::errno::Errno::set_raw(saved);
    }
}

/// From now on every SIGTERM makes the returned descriptor readable (one byte each) instead
/// of ending the process. Once per process.
pub(crate) fn sigterm_pipe() -> std::io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    if TERM_PIPE
        .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(std::io::Error::other("the SIGTERM pipe exists already"));
    }
    // Stays open for the life of the process: the handler may run at any time.
    std::mem::forget(write);
    let action = SigAction::new(
        SigHandler::Handler(on_sigterm),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe.
    // Children forked before they exec inherit it, as with any handler; libcontainer's
    // container processes reset signal dispositions when they exec.
    unsafe { sigaction(Signal::SIGTERM, &action) }?;
    Ok(read)
}

/// Blocks until one of `fds` is readable (or hung up); which ones, in order.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>]) -> std::io::Result<Vec<bool>> {
    let mut pfds: Vec<nix::libc::pollfd> = fds
        .iter()
        .map(|fd| nix::libc::pollfd {
            fd: fd.as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a live, exclusively borrowed array of `pfds.len()` pollfd
        // structures, which is all poll(2) reads and writes.
        let rc = unsafe { nix::libc::poll(pfds.as_mut_ptr(), pfds.len() as nix::libc::nfds_t, -1) };
        if rc >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Installs the classic-BPF seccomp program `bpf` (an array of `struct sock_filter`, as
/// libseccomp exports it) on the calling thread with seccomp(2), no flags: what
/// libseccomp's `seccomp_load` does for a filter without flags. Needs no_new_privs or
/// CAP_SYS_ADMIN. Ref: seccomp(2) SECCOMP_SET_MODE_FILTER.
pub(crate) fn load_seccomp_filter(bpf: &[u8]) -> std::io::Result<()> {
    let len = bpf.len() / std::mem::size_of::<libc::sock_filter>();
    if bpf.is_empty()
        || !bpf
            .len()
            .is_multiple_of(std::mem::size_of::<libc::sock_filter>())
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a whole number of BPF instructions",
        ));
    }
    let len = u16::try_from(len).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "BPF program too long")
    })?;
    // The kernel copies the instructions (copy_from_user): no alignment needed.
    let prog = libc::sock_fprog {
        len,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` instructions inside `bpf`, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one test that takes inherited pipes (once per descriptor); the refusals before
    /// the take leave them takeable.
    #[test]
    fn an_inherited_pipe_is_taken_once_and_closed_on_exec() {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let e = take_inherited_pipe(file.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("is not a pipe"), "{e}");
        let e = take_inherited_pipe(1).unwrap_err();
        assert!(e.to_string().contains("standard stream"), "{e}");

        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::empty()).unwrap();
        let raw = w.as_raw_fd();
        // Passed down as a number: the test gives up its handle the way exec does.
        std::mem::forget(w);
        let taken = take_inherited_pipe(raw).unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
        // A second pipe is taken too (a supervisor's done pipe and its task pipe); the
        // same descriptor never twice.
        let (_r2, w2) = nix::unistd::pipe2(nix::fcntl::OFlag::empty()).unwrap();
        let raw2 = w2.as_raw_fd();
        std::mem::forget(w2);
        let _taken2 = take_inherited_pipe(raw2).unwrap();
        let e = take_inherited_pipe(raw).unwrap_err();
        assert!(e.to_string().contains("taken already"), "{e}");
        // The handle writes to the pipe and closes it when dropped.
        let mut f = std::fs::File::from(taken);
        std::io::Write::write_all(&mut f, b"1").unwrap();
        drop(f);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut got).unwrap();
        assert_eq!(got, b"1");
    }
}
