//! Thin wrappers over the system calls vmctl-init needs. Every `unsafe` block of the init lives here.

use std::ffi::{c_int, CStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// mount(2). `data` is the file system's option string.
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: all pointers are NUL-terminated strings (or null for `data`) that outlive the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data,
        )
    })?;
    Ok(())
}

/// mkdir(2); an existing entry is not an error.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r.map(drop),
    }
}

/// open(2) with O_CLOEXEC added.
pub fn open(path: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// dup2(2).
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only takes descriptor numbers; replacing `new` is what the caller asks for.
    check(unsafe { libc::dup2(old, new) })?;
    Ok(())
}

/// Writes one byte to an I/O port, after asking the kernel for access to it with ioperm(2).
pub fn port_write(port: u16, value: u8) -> io::Result<()> {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    check(unsafe { libc::ioperm(libc::c_ulong::from(port), 1, 1) })?;
    // SAFETY: ioperm succeeded, so the OUT instruction is allowed for this port and cannot fault; it
    // touches no memory. The devices behind the ports vmctl-init uses (boot marker, exit status) have
    // no side effects on this process.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
    Ok(())
}

/// sync(2).
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

/// reboot(2) with RB_AUTOBOOT: resets the machine. Returns only on failure.
pub fn reboot() -> io::Error {
    // SAFETY: reboot with RB_AUTOBOOT takes no pointers; on success it does not return.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    io::Error::last_os_error()
}

/// _exit(2): ends PID 1, which the kernel turns into a panic (and, with panic=-1, a reset).
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Whether `fd` refers to a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Puts the terminal `fd` in raw mode (cfmakeraw): no echo, no line editing, no signals from keys,
/// no output processing, 8-bit characters.
pub fn make_raw(fd: RawFd) -> io::Result<()> {
    let mut t = MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the termios struct it is given, which is valid for writes.
    check(unsafe { libc::tcgetattr(fd, t.as_mut_ptr()) })?;
    // SAFETY: tcgetattr succeeded, so `t` is initialised.
    let mut t = unsafe { t.assume_init() };
    // SAFETY: cfmakeraw only modifies the struct it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: `t` is a valid termios that outlives the call.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) })?;
    Ok(())
}

/// tcdrain(3): waits until everything written to the terminal `fd` has been transmitted.
pub fn tcdrain(fd: RawFd) -> io::Result<()> {
    // SAFETY: tcdrain only takes a descriptor number.
    check(unsafe { libc::tcdrain(fd) })?;
    Ok(())
}

/// setsid(2).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// Makes the terminal `fd` the controlling terminal of the calling session leader (TIOCSCTTY).
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal the terminal from another session).
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// tcsetpgrp(3): makes `pgrp` the foreground process group of the terminal `fd`.
pub fn tcsetpgrp(fd: RawFd, pgrp: libc::pid_t) -> io::Result<()> {
    // SAFETY: tcsetpgrp only takes a descriptor and a process group id.
    check(unsafe { libc::tcsetpgrp(fd, pgrp) })?;
    Ok(())
}

/// The calling process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Sets the disposition of `sig` to ignored (`ignore`) or back to the default.
pub fn set_ignored(sig: c_int, ignore: bool) -> io::Result<()> {
    let handler = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: SIG_IGN and SIG_DFL are not handlers that run code.
    if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unblocks every signal in the calling thread: a program started by PID 1 must not inherit the
/// signals PID 1 keeps blocked for itself.
pub fn unblock_all_signals() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given, which is valid for writes.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: sigemptyset succeeded, so the set is initialised; the old mask is not wanted.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) })?;
    Ok(())
}

/// A set of signals, blocked for the whole life of PID 1 and taken with [`SignalSet::wait`].
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// Blocks `signals` in this process and returns them as a set to wait on.
    pub fn block(signals: &[c_int]) -> io::Result<SignalSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given, which is valid for writes.
        check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
        // SAFETY: sigemptyset succeeded, so the set is initialised.
        let mut set = unsafe { set.assume_init() };
        for &sig in signals {
            // SAFETY: `set` is an initialised sigset_t.
            check(unsafe { libc::sigaddset(&mut set, sig) })?;
        }
        // SAFETY: `set` is initialised; the old mask is not wanted (null).
        check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
        Ok(SignalSet(set))
    }

    /// Waits for one of the (blocked) signals of the set and returns its number.
    pub fn wait(&self) -> io::Result<c_int> {
        loop {
            // SAFETY: the set is initialised; the siginfo is not wanted (null).
            match check(unsafe { libc::sigwaitinfo(&self.0, std::ptr::null_mut()) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// Reaps one exited child, if any: `Some((pid, wait status))`, `None` when no child has exited
/// (or there are no children).
pub fn reap_any() -> io::Result<Option<(libc::pid_t, c_int)>> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is valid for writes for the duration of the call.
        match check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
            Ok(0) => return Ok(None),
            Ok(pid) => return Ok(Some((pid, status))),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
