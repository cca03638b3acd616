//! Host terminals for `--console-socket`: a pty pair whose master goes to the caller over
//! SCM_RIGHTS (runc's protocol) and whose slave the monitor relays to the guest's terminal.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::Error;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: File,
}

/// Opens a new pty pair; the slave in raw mode (the guest's own terminal does the line
/// discipline: echo, Ctrl-C, line editing).
pub fn open() -> Result<Pty, Error> {
    let mut master: RawFd = -1;
    let mut slave: RawFd = -1;
    // SAFETY: openpty writes two descriptors into the locals; name, termios and winsize are null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(Error::io(
            "cannot open a pty",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: openpty succeeded, so both are fresh descriptors owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), File::from_raw_fd(slave)) };
    for fd in [master.as_raw_fd(), slave.as_raw_fd()] {
        // SAFETY: setting FD_CLOEXEC on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    make_raw(slave.as_raw_fd())?;
    Ok(Pty { master, slave })
}

/// Puts terminal `fd` in raw mode.
pub fn make_raw(fd: RawFd) -> Result<(), Error> {
    // SAFETY: termios is plain data that tcgetattr fills.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid termios for tcgetattr/cfmakeraw/tcsetattr on a descriptor we hold.
    let ok = unsafe {
        libc::tcgetattr(fd, &mut t) == 0 && {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t) == 0
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::io(
            "cannot set the terminal to raw mode",
            std::io::Error::last_os_error(),
        ))
    }
}

/// Sends `fd` over the Unix socket at `path` with SCM_RIGHTS, as runc does for
/// `--console-socket` (the message names the pty).
pub fn send_fd(path: &Path, fd: RawFd) -> Result<(), Error> {
    let sock = UnixStream::connect(path).map_err(|e| {
        Error::io(
            format!("cannot connect to the console socket {}", path.display()),
            e,
        )
    })?;
    let name = b"/dev/ptmx";
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one header carrying one fd, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for the descriptor.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: `msg` is fully initialised and refers to live buffers.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(Error::io(
            format!("cannot send the pty to {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Makes terminal `fd` this process's controlling terminal (the caller leads its session), so
/// that window-size changes made on the master raise SIGWINCH here.
pub fn make_controlling(fd: RawFd) {
    // SAFETY: TIOCSCTTY takes an int argument; failure leaves everything as it was.
    unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
}

/// The window size of terminal `fd`.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data that TIOCGWINSZ fills.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes into `ws`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
