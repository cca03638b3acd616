//! A virtio-mmio device's interrupt: the InterruptStatus bits and the irqfd that raises the line.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

/// InterruptStatus bit: a used buffer was added to a queue.
pub const INT_VRING: u32 = 1;
/// InterruptStatus bit: the configuration (or the device status) changed.
pub const INT_CONFIG: u32 = 2;

pub struct Interrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    irqfd: EventFd,
}

impl Interrupt {
    /// `irqfd` must be registered with KVM for the device's interrupt line.
    pub fn new(irqfd: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            irqfd,
        }
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // The eventfd counter only overflows after 2^64 - 1 signals; a failed write would mean
        // the line is already pending.
        let _ = self.irqfd.write(1);
    }

    /// Tells the driver that used buffers are ready.
    pub fn signal_used_queue(&self) {
        self.raise(INT_VRING);
    }

    /// Tells the driver the configuration space changed.
    pub fn signal_config_change(&self) {
        self.raise(INT_CONFIG);
    }

    /// The device met input it cannot go on with: it stops, reports DEVICE_NEEDS_RESET and
    /// raises a configuration interrupt. Only a reset by the driver revives it.
    pub fn fail_device(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.raise(INT_CONFIG);
    }

    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
    }
}
