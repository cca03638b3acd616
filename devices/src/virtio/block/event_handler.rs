//! The event-loop side: the queue's notification eventfd, and serving the queue.

use std::os::unix::io::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{QueueOwnedT, QueueT};

use super::device::{Active, Block};

/// Requests, and data bytes, served per turn of the event loop. A guest that keeps refilling the
/// queue from another vCPU (or sends huge requests) would otherwise keep the loop here for long,
/// starving the other devices and the VMM's own stop event; past either budget the device re-arms
/// its eventfd and comes back on the next turn.
pub(super) const BUDGET: usize = 128;
pub(super) const BYTE_BUDGET: u64 = 64 << 20;

impl Block {
    /// Serves the requests the driver made available (within [`BUDGET`] and [`BYTE_BUDGET`]),
    /// returns them as used
    /// and interrupts the driver if it asked to be. A queue the driver broke (an available index
    /// out of range, a head index past the ring, rings outside guest memory) stops the device:
    /// DEVICE_NEEDS_RESET.
    pub(super) fn process_queue(&mut self) {
        let Some(Active {
            mem,
            queue,
            interrupt,
        }) = self.active.as_mut()
        else {
            // Not activated (or reset): a notification before DRIVER_OK is dropped.
            return;
        };
        if interrupt.needs_reset() {
            return;
        }
        let mem = &*mem;
        let handler = &mut self.handler;
        let mut served = 0;
        let bytes_before = handler.stats.bytes;
        let result = (|| -> Result<bool, virtio_queue::Error> {
            let event_idx = queue.event_idx_enabled();
            loop {
                if event_idx {
                    queue.disable_notification(mem)?;
                }
                while let Some(chain) = queue.iter(mem)?.next() {
                    let head = chain.head_index();
                    let written = handler.handle(mem, chain);
                    queue.add_used(mem, head, written)?;
                    served += 1;
                    if served == BUDGET || handler.stats.bytes - bytes_before >= BYTE_BUDGET {
                        return Ok(true);
                    }
                }
                // With EVENT_IDX, re-enabling notifications tells whether the driver raced us
                // with more requests; without it the driver always notifies.
                if !event_idx || !queue.enable_notification(mem)? {
                    return Ok(false);
                }
            }
        })();
        match result {
            Ok(more) => {
                if more {
                    let _ = self.queue_events[0].write(1);
                }
                if served > 0 && queue.needs_notification(mem).unwrap_or(true) {
                    interrupt.signal_used_queue();
                }
            }
            Err(_) => interrupt.fail_device(),
        }
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        // Registered before activation: notifications that come early are read and dropped.
        if let Err(e) = ops.add(Events::new(self.queue_event(), EventSet::IN)) {
            eprintln!("vmctl: virtio-blk: cannot watch the queue notifier: {e}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() != self.queue_event().as_raw_fd() {
            return;
        }
        // Clears the counter; EAGAIN (a spurious wake-up) changes nothing.
        let _ = self.queue_event().read();
        self.process_queue();
    }
}
