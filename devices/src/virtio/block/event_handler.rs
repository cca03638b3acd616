//! The event-loop side: the queue's notification eventfd, and serving the queue.

use std::os::unix::io::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::{Active, Block};
use crate::virtio::queue::drain;

impl Block {
    /// Serves every request the driver made available. A queue the driver broke (an available
    /// index out of range, rings outside guest memory) stops the device: DEVICE_NEEDS_RESET.
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
        if drain(queue, mem, interrupt, |chain| handler.handle(mem, chain)).is_err() {
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
