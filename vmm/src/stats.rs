//! What a running VM reports about itself: its size and, per vCPU, how often it left the guest.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a VM's numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmStats {
    pub vcpus: u32,
    pub memory_mib: u64,
    /// One entry per vCPU, by index.
    pub vcpu: Vec<VcpuStats>,
    /// Console output dropped because its reader did not keep up (devices::console_out).
    pub console_dropped: u64,
}

/// KVM exits of one vCPU since it started (a kick out of KVM_RUN is not an exit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Every exit, whatever its reason.
    pub exits: u64,
    /// Port I/O exits (IN, OUT).
    pub io_exits: u64,
    /// MMIO exits (reads and writes).
    pub mmio_exits: u64,
}

/// What kind of exit to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Io,
    Mmio,
    Other,
}

/// One vCPU's counters: written by its thread only, read by anyone.
#[derive(Debug, Default)]
pub struct VcpuCounters {
    exits: AtomicU64,
    io_exits: AtomicU64,
    mmio_exits: AtomicU64,
}

/// Adds one to a counter only one thread writes: a plain load and store, no locked instruction
/// on the exit path.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl VcpuCounters {
    /// Counts one exit; only the vCPU's own thread calls it.
    pub fn count(&self, kind: ExitKind) {
        bump(&self.exits);
        match kind {
            ExitKind::Io => bump(&self.io_exits),
            ExitKind::Mmio => bump(&self.mmio_exits),
            ExitKind::Other => {}
        }
    }

    pub fn snapshot(&self) -> VcpuStats {
        VcpuStats {
            exits: self.exits.load(Ordering::Relaxed),
            io_exits: self.io_exits.load(Ordering::Relaxed),
            mmio_exits: self.mmio_exits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_counts_once_and_io_and_mmio_apart() {
        let c = VcpuCounters::default();

        c.count(ExitKind::Io);
        c.count(ExitKind::Io);
        c.count(ExitKind::Mmio);
        c.count(ExitKind::Other);

        assert_eq!(
            c.snapshot(),
            VcpuStats {
                exits: 4,
                io_exits: 2,
                mmio_exits: 1
            }
        );
    }
}
