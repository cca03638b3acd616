//! Processes: fork, clone into the agent as parent, exec, namespaces, signals, reaping.

use std::ffi::{c_int, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{check, check_long, retry};

/// Who runs after [`fork`] or [`clone_parent`] returns.
pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// fork(2). The child of a multithreaded process may only make system calls and allocate (glibc's
/// malloc is reset for it); no lock another thread may hold (stdio, the agent's tables) may be
/// taken.
///
/// # Safety
/// The caller guarantees the child keeps to that and ends with [`exit_now`] or an exec.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the child's restrictions (see above).
    match check(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// clone(2) with CLONE_PARENT | SIGCHLD and no new stack: a fork whose child is a child of the
/// caller's parent (which then reaps it), and is created in the pid namespace the caller set with
/// unshare or setns. Only for a single-threaded caller.
///
/// # Safety
/// The caller is single-threaded (a forked helper), so the copy of its memory is consistent, and
/// the child ends with [`exit_now`] or an exec.
pub unsafe fn clone_parent() -> io::Result<Forked> {
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child runs on a copy of the caller's memory, stack included,
    // exactly as after fork(2); the null stack, tid pointers and tls are unused for these flags.
    let ret = check_long(unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null::<libc::c_void>(),
            std::ptr::null::<libc::c_void>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    })?;
    Ok(match ret {
        0 => Forked::Child,
        pid => Forked::Parent(pid as libc::pid_t),
    })
}

/// execve(2). Returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: `path` and every string are NUL-terminated; both arrays end with a null pointer;
    // all stay alive for the call (which does not return on success).
    unsafe { libc::execve(path.as_ptr(), args.as_ptr(), env.as_ptr()) };
    io::Error::last_os_error()
}

/// _exit(2): ends the process at once (no destructors, no atexit handlers, no stdio flush).
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// kill(2).
pub fn kill(pid: libc::pid_t, sig: c_int) -> io::Result<()> {
    // SAFETY: kill takes numbers only.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// setsid(2).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// unshare(2).
pub fn unshare(flags: c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// setns(2) into the namespace `ns` (a /proc/PID/ns/* descriptor) of type `nstype`.
pub fn setns(ns: BorrowedFd, nstype: c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and flags only.
    check(unsafe { libc::setns(ns.as_raw_fd(), nstype) })?;
    Ok(())
}

/// sethostname(2).
pub fn sethostname(name: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is valid for reads of its length for the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// setdomainname(2).
pub fn setdomainname(name: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is valid for reads of its length for the call.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// umask(2).
pub fn umask(mask: libc::mode_t) {
    // SAFETY: umask takes a number and cannot fail.
    unsafe { libc::umask(mask) };
}

/// The calling process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Reaps one ended child, if any: `Some((pid, wait status))`; `None` when no child has ended (or
/// there are no children).
pub fn reap_any() -> io::Result<Option<(libc::pid_t, c_int)>> {
    let mut status: c_int = 0;
    // SAFETY: `status` is valid for writes for the call.
    match retry(|| check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) })) {
        Ok(0) => Ok(None),
        Ok(pid) => Ok(Some((pid, status))),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        Err(e) => Err(e),
    }
}

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}
