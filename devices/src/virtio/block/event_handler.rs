//! The event-loop side: the queue's notification eventfd, and serving the queue.

use std::os::unix::io::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::{Active, Block};
use crate::virtio::queue::{drain, notify, Budget, Served};

/// Requests, and data bytes, served per turn of the event loop (see `queue::Budget`); past
/// either the device re-arms its eventfd and comes back on the next turn.
pub(super) const BUDGET: Budget = Budget {
    chains: 128,
    bytes: 64 << 20,
};

impl Block {
    /// Serves the requests the driver made available (within [`BUDGET`]), returns them as used
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
        let result = drain(queue, mem, BUDGET, |_, chain| {
            let bytes_before = handler.stats.bytes;
            let written = handler.handle(mem, chain);
            Ok::<_, virtio_queue::Error>(Served::used(written, handler.stats.bytes - bytes_before))
        });
        let pass = match result {
            Ok(pass) => pass,
            Err(_) => return interrupt.fail_device(),
        };
        if pass.more {
            let _ = self.queue_events[0].write(1);
        }
        if pass.used && notify(queue, mem, interrupt).is_err() {
            interrupt.fail_device();
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
