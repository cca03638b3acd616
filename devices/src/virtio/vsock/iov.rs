//! readv and writev between host sockets and guest buffers (`IoVecs`), for the connections.

use std::io;
use std::os::fd::RawFd;

use crate::virtio::iovec::IOV_MAX;

/// `readv` into guest buffers; at most [`IOV_MAX`] of them are used.
pub fn readv(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<usize> {
    let n = iovs.len().min(IOV_MAX);
    // SAFETY: each iovec describes writable guest memory that stays mapped during the call (see
    // the module comment); the kernel writes at most `iov_len` bytes into each.
    let r = unsafe { libc::readv(fd, iovs.as_ptr(), n as libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `writev` to a socket (as `sendmsg` with MSG_NOSIGNAL, so a peer that went away gives EPIPE
/// and no SIGPIPE); at most [`IOV_MAX`] buffers are used.
pub fn writev(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<usize> {
    let n = iovs.len().min(IOV_MAX);
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_ptr().cast_mut();
    msg.msg_iovlen = n as _;
    // SAFETY: `msg` points at `n` iovecs describing readable memory (guest memory or our own
    // buffers) that stays valid during the call; the kernel only reads from them.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
