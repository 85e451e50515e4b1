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
