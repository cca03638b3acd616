//! SIGINT, SIGTERM and SIGHUP stop the VM cleanly (terminal restored, vCPUs joined) instead of
//! killing vmctl mid-way.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use vmm::StopSignal;

static STOP_FD: AtomicI32 = AtomicI32::new(-1);
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    CAUGHT.store(sig, Ordering::SeqCst);
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; it writes 8 bytes from a local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Routes the termination signals to `stop`'s eventfd.
pub fn route_to(stop: &StopSignal) {
    STOP_FD.store(stop.event().as_raw_fd(), Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only does async-signal-safe work.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// The termination signal that stopped the VM, if one did.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}
