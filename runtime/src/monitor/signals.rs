//! Signals the monitor receives go to the container's init, as if the monitor were it (runc's
//! container process is the init itself); SIGWINCH carries a terminal resize.

use std::sync::Arc;

use super::serve::Monitor;
use crate::Error;

/// The signals taken by the forwarding thread. SIGKILL and SIGSTOP cannot be caught; SIGCHLD and
/// SIGPIPE concern the monitor itself.
pub const FORWARDED: [i32; 12] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGALRM,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGWINCH,
];

pub struct Blocked(libc::sigset_t);

/// Blocks [`FORWARDED`] in this thread, hence in every thread it starts afterwards.
pub fn block() -> Result<Blocked, Error> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; sigaddset/pthread_sigmask
    // only read and write it and this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            return Err(Error::io(
                "cannot block signals",
                std::io::Error::from_raw_os_error(r),
            ));
        }
        Ok(Blocked(set))
    }
}

/// Starts the thread that waits for the blocked signals and hands each to `on_signal`.
pub fn forward(blocked: Blocked, on_signal: impl Fn(i32) + Send + 'static) -> Result<(), Error> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set and writes the signal number into `sig`.
            if unsafe { libc::sigwait(&blocked.0, &mut sig) } == 0 {
                on_signal(sig);
            }
        })
        .map_err(|e| Error::io("cannot start the signal thread", e))?;
    Ok(())
}

/// The monitor's handling: SIGWINCH resizes the init's terminal, the rest goes to the init.
pub fn to_monitor(monitor: Arc<Monitor>) -> impl Fn(i32) + Send + 'static {
    move |sig| {
        if sig == libc::SIGWINCH {
            monitor.window_changed();
        } else if let Err(e) = monitor.kill(sig, false) {
            crate::oci::log::warn(&format!("cannot forward signal {sig}: {e}"));
        }
    }
}
