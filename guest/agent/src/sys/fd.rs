//! File descriptors: pipes, duplication, closing, Unix socket pairs that carry descriptors, poll.

use std::ffi::c_int;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{check, retry};

/// pipe2(2) with O_CLOEXEC: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is valid for writes of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two descriptors; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec duplicate of `fd` numbered `min` or higher.
pub fn dup_at_least(fd: BorrowedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes a descriptor and an integer, no pointers.
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: fcntl just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// dup2(2): makes `new` a copy of `old` (without close-on-exec). The caller owns `new` as a number.
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only takes descriptor numbers; replacing `new` is what the caller asks for.
    retry(|| check(unsafe { libc::dup2(old, new) }))?;
    Ok(())
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD takes a descriptor and an integer, no pointers.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
}

/// Closes every descriptor numbered `first` or higher (close_range(2)). Only for a freshly forked
/// child that owns its whole descriptor table: the `OwnedFd`s it inherited are forgotten, not dropped.
pub fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes numbers only; the caller is a child that no longer uses these.
    check(unsafe { libc::close_range(first as libc::c_uint, libc::c_uint::MAX, 0) })?;
    Ok(())
}

/// socketpair(2): a connected pair of close-on-exec AF_UNIX SOCK_SEQPACKET sockets.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is valid for writes of two ints.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair just returned these two descriptors; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Control-message space for one descriptor.
#[repr(C)]
union CmsgSpace {
    header: libc::cmsghdr,
    bytes: [u8; 64],
}

/// Sends `data` as one message on the socket `sock`, with `fd` attached (SCM_RIGHTS) if given.
pub fn send_msg(sock: BorrowedFd, data: &[u8], fd: Option<BorrowedFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr and control buffer are valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut space: CmsgSpace = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let len = unsafe { libc::CMSG_SPACE(size_of::<c_int>() as u32) } as usize;
        msg.msg_control = (&mut space as *mut CmsgSpace).cast();
        msg.msg_controllen = len;
        // SAFETY: the control buffer is 64 bytes, more than CMSG_SPACE(4), and aligned for a
        // cmsghdr (the union holds one); CMSG_FIRSTHDR returns a pointer into it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>(), fd.as_raw_fd());
        }
    }
    let sent = retry(|| {
        // SAFETY: `msg` points at `iov` (valid for `data.len()` bytes) and the control buffer,
        // all alive for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })?;
    if sent != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short message"));
    }
    Ok(())
}

/// Receives one message from the socket `sock` into `buf`: its length (0 at end of stream) and
/// the descriptor it carried, if any (made close-on-exec).
pub fn recv_msg(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr and control buffer are valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut space: CmsgSpace = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut space as *mut CmsgSpace).cast();
    msg.msg_controllen = size_of::<CmsgSpace>();
    let n = retry(|| {
        // SAFETY: `msg` points at `buf` (through `iov`) and the control buffer, both valid for
        // writes of the lengths given and alive for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })?;
    let mut received = None;
    // SAFETY: recvmsg filled the control buffer and set msg_controllen; CMSG_FIRSTHDR/NXTHDR walk
    // it within those bounds, and an SCM_RIGHTS message's data holds descriptors just installed
    // in this process, which nothing else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header) / size_of::<c_int>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<c_int>().add(i));
                    let owned = OwnedFd::from_raw_fd(fd);
                    if received.is_none() {
                        received = Some(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, received))
}

/// Waits until `fd` is readable (or at its end, or in error) or `timeout` passes: whether it is.
pub fn poll_readable(fd: BorrowedFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd for the call.
    let n = retry(|| check(unsafe { libc::poll(&mut pfd, 1, ms) }))?;
    Ok(n > 0)
}

/// How [`shutdown`] ends a connection.
#[derive(Clone, Copy, Debug)]
pub enum Shutdown {
    Write,
    Both,
}

/// shutdown(2) on a socket.
pub fn shutdown(sock: BorrowedFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown takes a descriptor and a constant, no pointers.
    check(unsafe { libc::shutdown(sock.as_raw_fd(), how) })?;
    Ok(())
}

/// Sets SO_RCVTIMEO on a socket: a blocking read then fails with EAGAIN after `timeout`.
pub fn set_recv_timeout(sock: BorrowedFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval of the size given, alive for the call.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// read(2) into `buf`, retried on EINTR.
pub fn read(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for writes of its length for the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Writes all of `data` to `fd` (write(2) until done), retrying on EINTR. Sockets get
/// MSG_NOSIGNAL semantics only through SIGPIPE being ignored (as it is in the agent).
pub fn write_all(fd: BorrowedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = retry(|| {
            // SAFETY: `data` is valid for reads of its length for the call.
            let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        data = &data[n..];
    }
    Ok(())
}

/// open(2) of /dev/null, read-write, close-on-exec.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated literal.
    let fd = check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// In a freshly forked child: makes `stdin`, `stdout`, `stderr` its descriptors 0, 1 and 2 and
/// `keep` its descriptor 3 (close-on-exec), and closes every other descriptor, whatever number the
/// sources had. Returns descriptor 3.
pub fn arrange_child_fds(
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    keep: OwnedFd,
) -> io::Result<OwnedFd> {
    // Above 10 first, so that no source sits on a number a later dup2 replaces.
    let high = [
        dup_at_least(stdin.as_fd(), 10)?,
        dup_at_least(stdout.as_fd(), 10)?,
        dup_at_least(stderr.as_fd(), 10)?,
        dup_at_least(keep.as_fd(), 10)?,
    ];
    for (target, fd) in high.iter().enumerate() {
        dup2(fd.as_raw_fd(), target as RawFd)?;
    }
    set_cloexec(3, true)?;
    // close_range closes all the OwnedFds' numbers: forget them rather than close them again later
    // (by then the numbers may belong to something else).
    for fd in [stdin, stdout, stderr, keep].into_iter().chain(high) {
        let _ = fd.into_raw_fd();
    }
    close_from(4)?;
    // SAFETY: descriptor 3 was just made a copy of `keep`; nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(3) })
}
