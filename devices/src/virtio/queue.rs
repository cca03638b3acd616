//! Serving a queue, the same way for every device: pop what the driver made available, hand each
//! chain to the device, return it as used, within a per-turn budget, and interrupt the driver when
//! it asked to be.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::{GuestMemoryMmap, Interrupt};

/// A chain handed to a device.
pub type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// How much one turn of the event loop may serve from one queue. A guest that keeps refilling a
/// queue from another vCPU (or sends huge requests) would otherwise hold the loop there, starving
/// the VM's other devices and the VMM's own stop event.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub chains: usize,
    /// Data bytes moved (as the device counts them).
    pub bytes: u64,
}

/// What a device did with one chain.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// `Some(len)`: return it as used now, with `len` bytes written into it. `None`: the device
    /// keeps it and returns it itself later (a flush waiting for fsync, a packet batched with
    /// the next ones).
    used: Option<u32>,
    /// Data bytes moved, counted against the budget.
    moved: u64,
}

impl Served {
    pub fn used(len: u32, moved: u64) -> Served {
        Served {
            used: Some(len),
            moved,
        }
    }

    pub fn kept(moved: u64) -> Served {
        Served { used: None, moved }
    }
}

/// How a pass over a queue ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Chains were returned as used by the pass.
    pub used: bool,
    /// The budget ran out: chains may be left, and the driver was not asked to notify. The
    /// caller must come back (kick its own queue eventfd).
    pub more: bool,
}

/// Serves the available chains of `queue` with `serve`, which gets the queue too (to return
/// chains it kept earlier). Stops when the queue is empty, with notifications re-enabled and no
/// race with the driver lost, or when `budget` is spent. An error means the driver broke the
/// queue itself (an available index out of range, rings outside guest memory), or `serve` gave
/// up on the device: the caller must stop using it. A bad chain is `serve`'s business: it fails
/// that request only.
pub fn drain<E, F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    budget: Budget,
    mut serve: F,
) -> Result<Pass, E>
where
    E: From<virtio_queue::Error>,
    F: FnMut(&mut Queue, Chain<'_>) -> Result<Served, E>,
{
    let mut pass = Pass::default();
    let (mut chains, mut bytes) = (0usize, 0u64);
    loop {
        // Without EVENT_IDX this only sets a hint; with it, the driver stops notifying.
        queue.disable_notification(mem)?;
        while let Some(chain) = queue.iter(mem)?.next() {
            let head = chain.head_index();
            let served = serve(queue, chain)?;
            if let Some(len) = served.used {
                queue.add_used(mem, head, len)?;
                pass.used = true;
            }
            chains += 1;
            bytes = bytes.saturating_add(served.moved);
            if chains >= budget.chains || bytes >= budget.bytes {
                pass.more = true;
                return Ok(pass);
            }
        }
        // Re-enabling tells whether the driver added more meanwhile.
        if !queue.enable_notification(mem)? {
            return Ok(pass);
        }
    }
}

/// Interrupts the driver about used chains of `queue`, if it asked to be.
pub fn notify(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &Interrupt,
) -> Result<(), virtio_queue::Error> {
    if queue.needs_notification(mem)? {
        interrupt.signal_used_queue();
    }
    Ok(())
}
