//! Kicking a vCPU thread out of KVM_RUN, without losing a kick.
//!
//! A kick is a real-time signal sent to one vCPU thread. Its handler sets `immediate_exit` in that
//! thread's own `kvm_run`, found through a thread-local pointer: a kick that lands while the thread
//! is in KVM_RUN makes KVM return EINTR; one that lands anywhere else leaves `immediate_exit` set,
//! so the thread's next KVM_RUN returns EINTR at once instead of entering the guest. The thread
//! clears the flag (`rearm`) before it looks at what it is asked to do, never after, so a kick is
//! either seen by that look or by the next KVM_RUN (as Firecracker does).
//!
//! Nothing here belongs to one VM: the handler is installed once per process and acts only on the
//! thread it interrupts, so any number of VMs share it.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::OnceLock;

use kvm_bindings::kvm_run;

use crate::{Error, Result};

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs, null on any other thread. Const-initialized and
    /// without a destructor, so the signal handler's access is a plain thread-local load.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick signal: the first real-time signal the C library leaves to applications.
pub fn signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // try_with cannot fail for a const thread-local without a destructor; no panic either way.
    let _ = KVM_RUN.try_with(|run| {
        let run = run.get();
        if !run.is_null() {
            // SAFETY: a non-null pointer is the `kvm_run` mapping of the vCPU this very thread
            // owns; `KickTarget` clears it before the mapping can go away. The write is a single
            // byte KVM only reads at the next KVM_RUN.
            unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 1) };
        }
    });
}

/// Installs the kick handler, once per process; later calls return the first call's outcome.
pub fn install() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), i32>> = OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid value to fill in.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_kick as *const () as usize;
        // SA_RESTART: a kick that lands in another system call (a console write, a futex wait)
        // must not fail it; KVM_RUN returns EINTR regardless.
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sigemptyset initializes the mask in place; sigaction reads a fully initialized
        // struct and installs a handler that only writes one byte through a thread-local pointer.
        let rc = unsafe {
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(signal(), &act, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    outcome.map_err(|errno| {
        Error::setup("the vCPU kick signal")(std::io::Error::from_raw_os_error(errno))
    })
}

/// Sends the kick to `thread`, which must be alive (registered with the VM's vCPU control).
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: the caller guarantees `thread` has not exited (it deregisters under the same lock
    // the caller holds), so the pthread_t is valid; the signal's handler is installed.
    unsafe { libc::pthread_kill(thread, signal()) };
}

/// Makes the calling thread the kick target for `run` until dropped.
pub struct KickTarget(());

impl KickTarget {
    /// `run` must stay mapped for the life of the returned guard: the vCPU's own `kvm_run`,
    /// owned by a `VcpuFd` that outlives the guard.
    pub fn set(run: *mut kvm_run) -> KickTarget {
        KVM_RUN.with(|p| p.set(run));
        KickTarget(())
    }

    /// Clears `immediate_exit` ahead of a look at the vCPU's orders. A kick landing after this
    /// sets it again, so the following KVM_RUN returns at once.
    pub fn rearm(&self) {
        KVM_RUN.with(|p| {
            let run = p.get();
            if !run.is_null() {
                // SAFETY: set by `set` to this thread's live `kvm_run`, which outlives `self`;
                // the only other writer is the kick handler, on this same thread.
                unsafe { std::ptr::write_volatile(&raw mut (*run).immediate_exit, 0) };
            }
        });
        // The clear must happen before the look at the orders, as the handler sees it.
        compiler_fence(Ordering::SeqCst);
    }
}

impl Drop for KickTarget {
    fn drop(&mut self) {
        KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_sets_immediate_exit_on_the_kicked_thread_only() {
        install().unwrap();
        let mut mine = kvm_run::default();
        let mut other = kvm_run::default();
        let other_ptr = &raw mut other as usize;
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let _me = KickTarget::set(&raw mut mine);
        let t = std::thread::spawn(move || {
            let target = KickTarget::set(other_ptr as *mut kvm_run);
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            done_rx.recv().unwrap();
            drop(target);
        });
        let thread = rx.recv().unwrap();

        kick(thread);
        // The handler runs on the kicked thread before the signal counts as delivered; wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // SAFETY: `other` outlives the thread, which only writes it from the handler.
        while unsafe { std::ptr::read_volatile(&raw const other.immediate_exit) } == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the kick never landed"
            );
            std::thread::yield_now();
        }
        done_tx.send(()).unwrap();
        t.join().unwrap();

        assert_eq!(other.immediate_exit, 1);
        assert_eq!(mine.immediate_exit, 0);
    }

    #[test]
    fn rearm_clears_a_kick_that_landed_outside_kvm_run() {
        install().unwrap();
        let mut run = kvm_run::default();
        let target = KickTarget::set(&raw mut run);
        // SAFETY: pthread_self has no preconditions.
        kick(unsafe { libc::pthread_self() });
        // SAFETY: `run` is live; the handler already ran (a signal to oneself is delivered
        // before pthread_kill returns).
        assert_eq!(
            unsafe { std::ptr::read_volatile(&raw const run.immediate_exit) },
            1
        );

        target.rearm();

        // SAFETY: as above.
        assert_eq!(
            unsafe { std::ptr::read_volatile(&raw const run.immediate_exit) },
            0
        );
        drop(target);
    }
}
