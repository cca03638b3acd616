//! The vCPUs' state machine: what the VM's owner orders (run, pause, stop) and where each vCPU
//! thread is (starting, running, parked, exited).
//!
//! The owner changes the order under the lock, then kicks every running vCPU thread at once (see
//! `kick`) and, for a pause, waits on a condvar until each one is parked or gone. A vCPU thread
//! reads the order before every KVM_RUN, lock-free, and parks on a condvar while it says pause.
//! Stop is final: once ordered, neither pause nor resume applies.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use devices::bus::lock;

use crate::kick;
use crate::{Error, Result};

/// What the vCPUs are ordered to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Run = 0,
    Pause = 1,
    Stop = 2,
}

impl Order {
    fn from_u8(v: u8) -> Order {
        match v {
            0 => Order::Run,
            1 => Order::Pause,
            _ => Order::Stop,
        }
    }
}

/// Where one vCPU thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Spawned (or about to be) but not yet registered: it reads the order before its first
    /// KVM_RUN, so it needs no kick.
    Starting,
    /// Between KVM_RUNs or in one: kicked on a new order.
    Running(libc::pthread_t),
    /// Waiting on the condvar for an order other than pause.
    Parked,
    /// Out of its loop for good (or never started).
    Exited,
}

struct Inner {
    slots: Vec<Slot>,
    /// A pause completed and no resume came since.
    paused: bool,
    /// The VM is torn down: every vCPU exited, the event loop ended.
    finished: bool,
}

pub struct VcpuControl {
    /// The current order; written only under `inner`'s lock, read by the vCPUs without it.
    order: AtomicU8,
    inner: Mutex<Inner>,
    /// Serializes pause and resume (stop never waits for it).
    ops: Mutex<()>,
    /// Wakes parked vCPUs when the order changes.
    to_vcpus: Condvar,
    /// Wakes an owner waiting for vCPUs to park or exit.
    to_owner: Condvar,
}

impl VcpuControl {
    pub fn new(vcpus: usize) -> Self {
        VcpuControl {
            order: AtomicU8::new(Order::Run as u8),
            inner: Mutex::new(Inner {
                slots: vec![Slot::Starting; vcpus],
                paused: false,
                finished: false,
            }),
            ops: Mutex::new(()),
            to_vcpus: Condvar::new(),
            to_owner: Condvar::new(),
        }
    }

    /// The current order, as a vCPU reads it before each KVM_RUN.
    pub fn order(&self) -> Order {
        Order::from_u8(self.order.load(Ordering::Acquire))
    }

    fn set_order(&self, _locked: &MutexGuard<'_, Inner>, order: Order) {
        self.order.store(order as u8, Ordering::Release);
    }

    /// Kicks every vCPU thread that may be in (or entering) KVM_RUN. Holding the lock keeps each
    /// kicked thread from deregistering, so its pthread_t stays valid.
    fn kick_running(inner: &MutexGuard<'_, Inner>) {
        for slot in &inner.slots {
            if let Slot::Running(thread) = slot {
                kick::kick(*thread);
            }
        }
    }

    fn wait<'a>(cv: &Condvar, guard: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        cv.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Called by vCPU thread `index` on itself before its first KVM_RUN.
    pub fn register(&self, index: usize) -> Registration<'_> {
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        lock(&self.inner).slots[index] = Slot::Running(thread);
        Registration {
            control: self,
            index,
            thread,
        }
    }

    /// Marks vCPU `index` as gone without having run (its thread could not be spawned).
    pub fn abandon(&self, index: usize) {
        lock(&self.inner).slots[index] = Slot::Exited;
        self.to_owner.notify_all();
    }

    /// Orders every vCPU to park, and returns once each one is parked or has exited. A vCPU still
    /// running after `timeout` (stuck serving a device) fails the pause and the VM runs on.
    pub fn pause(&self, timeout: Duration) -> Result<()> {
        let _op = lock(&self.ops);
        let mut inner = lock(&self.inner);
        match self.order() {
            Order::Stop => return Err(Error::VmStopped { action: "paused" }),
            Order::Pause if inner.paused => return Ok(()),
            _ => {}
        }
        self.set_order(&inner, Order::Pause);
        Self::kick_running(&inner);
        let deadline = Instant::now() + timeout;
        loop {
            if self.order() == Order::Stop {
                return Err(Error::VmStopped { action: "paused" });
            }
            let busy: Vec<usize> = (0..inner.slots.len())
                .filter(|&i| matches!(inner.slots[i], Slot::Starting | Slot::Running(_)))
                .collect();
            if busy.is_empty() {
                inner.paused = true;
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.set_order(&inner, Order::Run);
                self.to_vcpus.notify_all();
                return Err(Error::PauseTimeout {
                    vcpus: busy,
                    waited_ms: timeout.as_millis() as u64,
                });
            }
            inner = self
                .to_owner
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Lets parked vCPUs run again; nothing to do on a running VM.
    pub fn resume(&self) -> Result<()> {
        let _op = lock(&self.ops);
        let mut inner = lock(&self.inner);
        match self.order() {
            Order::Stop => Err(Error::VmStopped { action: "resumed" }),
            Order::Run => Ok(()),
            Order::Pause => {
                self.set_order(&inner, Order::Run);
                inner.paused = false;
                self.to_vcpus.notify_all();
                Ok(())
            }
        }
    }

    /// Orders every vCPU out of its loop: running ones are kicked, parked ones woken. Returns at
    /// once; `wait_exited` waits for them.
    pub fn stop(&self) {
        let inner = lock(&self.inner);
        if self.order() == Order::Stop {
            return;
        }
        self.set_order(&inner, Order::Stop);
        Self::kick_running(&inner);
        self.to_vcpus.notify_all();
        self.to_owner.notify_all();
    }

    /// Blocks until every vCPU has left its loop (after `stop`, or after each ended on its own).
    pub fn wait_exited(&self) {
        let mut inner = lock(&self.inner);
        while inner.slots.iter().any(|s| *s != Slot::Exited) {
            inner = Self::wait(&self.to_owner, inner);
        }
    }

    /// Records that the VM is torn down.
    pub fn finish(&self) {
        lock(&self.inner).finished = true;
    }

    pub fn is_paused(&self) -> bool {
        lock(&self.inner).paused
    }

    pub fn is_finished(&self) -> bool {
        lock(&self.inner).finished
    }
}

/// A vCPU thread's membership in the control; dropping it marks the vCPU exited.
pub struct Registration<'a> {
    control: &'a VcpuControl,
    index: usize,
    thread: libc::pthread_t,
}

impl Registration<'_> {
    /// Parks the calling vCPU while the order is pause.
    pub fn park(&self) {
        let c = self.control;
        let mut inner = lock(&c.inner);
        if c.order() != Order::Pause {
            return;
        }
        inner.slots[self.index] = Slot::Parked;
        c.to_owner.notify_all();
        while c.order() == Order::Pause {
            inner = VcpuControl::wait(&c.to_vcpus, inner);
        }
        inner.slots[self.index] = Slot::Running(self.thread);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.control.inner).slots[self.index] = Slot::Exited;
        self.control.to_owner.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A stand-in vCPU thread: it obeys the orders, "running" between looks by sleeping briefly.
    fn fake_vcpu(control: Arc<VcpuControl>, index: usize) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            kick::install().unwrap();
            let me = control.register(index);
            let mut rounds = 0;
            loop {
                match control.order() {
                    Order::Run => {}
                    Order::Pause => {
                        me.park();
                        continue;
                    }
                    Order::Stop => break,
                }
                rounds += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            rounds
        })
    }

    #[test]
    fn pause_waits_for_every_vcpu_to_park_and_resume_lets_them_run() {
        let control = Arc::new(VcpuControl::new(3));
        let threads: Vec<_> = (0..3).map(|i| fake_vcpu(control.clone(), i)).collect();

        control.pause(Duration::from_secs(5)).unwrap();

        assert!(control.is_paused());
        assert!(lock(&control.inner)
            .slots
            .iter()
            .all(|s| *s == Slot::Parked));
        control.resume().unwrap();
        assert!(!control.is_paused());
        control.stop();
        control.wait_exited();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn stop_wakes_parked_vcpus_and_ends_pause_and_resume() {
        let control = Arc::new(VcpuControl::new(2));
        let threads: Vec<_> = (0..2).map(|i| fake_vcpu(control.clone(), i)).collect();
        control.pause(Duration::from_secs(5)).unwrap();

        control.stop();
        control.wait_exited();

        for t in threads {
            t.join().unwrap();
        }
        assert!(matches!(
            control.pause(Duration::from_secs(1)),
            Err(Error::VmStopped { .. })
        ));
        assert!(matches!(control.resume(), Err(Error::VmStopped { .. })));
    }

    #[test]
    fn a_vcpu_that_never_parks_fails_the_pause_and_the_vm_runs_on() {
        let control = VcpuControl::new(2);
        control.abandon(1);

        let outcome = control.pause(Duration::from_millis(20));

        match outcome {
            Err(Error::PauseTimeout { vcpus, .. }) => assert_eq!(vcpus, vec![0]),
            other => panic!("expected a pause timeout, got {other:?}"),
        }
        assert_eq!(control.order(), Order::Run);
        assert!(!control.is_paused());
    }
}
