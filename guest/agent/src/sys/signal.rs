//! Signals: the agent keeps SIGCHLD blocked and takes it synchronously; its children start with a
//! clean slate.

use std::ffi::c_int;
use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use super::check;

fn set_of(signals: &[c_int]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given, which is valid for writes.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: sigemptyset succeeded, so the set is initialised.
    let mut set = unsafe { set.assume_init() };
    for &sig in signals {
        // SAFETY: `set` is an initialised sigset_t.
        check(unsafe { libc::sigaddset(&mut set, sig) })?;
    }
    Ok(set)
}

/// Blocks `signals` in the calling thread (threads it starts later inherit the mask).
pub fn block(signals: &[c_int]) -> io::Result<()> {
    let set = set_of(signals)?;
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Waits up to `timeout` for one of the (blocked) `signals`: its number, or `None` on timeout.
pub fn wait_for(signals: &[c_int], timeout: Duration) -> io::Result<Option<c_int>> {
    let set = set_of(signals)?;
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are initialised and alive for the call; the siginfo is not wanted.
    match check(unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) }) {
        Ok(sig) => Ok(Some(sig)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// For a new child: every signal back to its default action and none blocked, as a freshly
/// exec'd program expects (the agent ignores SIGPIPE and blocks SIGCHLD).
pub fn reset_for_child() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is not a handler that runs code; invalid numbers (glibc's internal
        // signals) fail with EINVAL, which is ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = set_of(&[])?;
    // SAFETY: `empty` is initialised; the old mask is not wanted (null).
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) })?;
    Ok(())
}
