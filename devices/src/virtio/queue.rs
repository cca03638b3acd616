//! Serving a queue: pop what the driver made available, hand each chain to the device, return
//! it as used, and interrupt the driver when it asked to be.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::{GuestMemoryMmap, Interrupt};

/// A chain handed to a device.
pub type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Processes every available chain of `queue` with `handle`, which returns the number of bytes
/// it wrote into the chain. An error means the driver broke the queue itself (an available index
/// out of range, rings outside guest memory): the caller must stop using the device
/// (`Interrupt::fail_device`). A bad chain is the handler's business: it fails that request only.
pub fn drain<F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &Interrupt,
    mut handle: F,
) -> Result<(), virtio_queue::Error>
where
    F: FnMut(Chain<'_>) -> u32,
{
    let mut used_any = false;
    loop {
        if queue.event_idx_enabled() {
            queue.disable_notification(mem)?;
        }
        while let Some(chain) = queue.iter(mem)?.next() {
            let head = chain.head_index();
            let written = handle(chain);
            queue.add_used(mem, head, written)?;
            used_any = true;
        }
        // With EVENT_IDX, re-enabling notifications tells us whether the driver raced us with
        // more buffers; without it, one pass is enough (the driver always notifies).
        if !queue.event_idx_enabled() || !queue.enable_notification(mem)? {
            break;
        }
    }
    if used_any && queue.needs_notification(mem)? {
        interrupt.signal_used_queue();
    }
    Ok(())
}
