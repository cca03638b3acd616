//! The event-loop side: the queue's notification eventfd (requests to start) and the I/O
//! workers' completion eventfd (requests to answer).

use std::os::unix::io::AsRawFd;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::QueueT;

use super::device::{Active, Block};
use super::request::Started;
use crate::virtio::queue::{drain, notify, Budget, Served};

/// Requests, and data bytes, served per turn of the event loop (see `queue::Budget`); past
/// either the device re-arms its eventfd and comes back on the next turn.
pub(super) const BUDGET: Budget = Budget {
    chains: 128,
    bytes: 64 << 20,
};

/// Why the queue cannot be served any more: the device needs a reset.
enum Fault {
    /// The driver broke the queue itself (an available index out of range, a head index past the
    /// ring, rings outside guest memory).
    Queue,
    /// The driver made a chain available again while its request was still in flight.
    HeadInUse,
}

impl From<virtio_queue::Error> for Fault {
    fn from(_: virtio_queue::Error) -> Self {
        Fault::Queue
    }
}

impl Block {
    /// Starts the requests the driver made available (within [`BUDGET`]): a bad one is answered
    /// at once, the others go to the disk's I/O workers (see `process_done`). A queue the driver
    /// broke stops the device: DEVICE_NEEDS_RESET.
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
            match handler.start(mem, chain) {
                Started::Answered(len) => Ok(Served::used(len, 0)),
                Started::Submitted(bytes) => Ok(Served::kept(bytes)),
                Started::HeadInUse => Err(Fault::HeadInUse),
            }
        });
        let pass = match result {
            Ok(pass) => pass,
            Err(Fault::Queue | Fault::HeadInUse) => return interrupt.fail_device(),
        };
        if pass.more {
            let _ = self.queue_events[0].write(1);
        }
        if pass.used && notify(queue, mem, interrupt).is_err() {
            interrupt.fail_device();
        }
    }

    /// Answers the requests whose disk operations completed, and interrupts the driver if it
    /// asked to be.
    pub(super) fn process_done(&mut self) {
        let Some(Active {
            mem,
            queue,
            interrupt,
        }) = self.active.as_mut()
        else {
            // Reset: `quiesce` already took every completion and gave them up.
            return;
        };
        let mut answered = false;
        while let Some(done) = self.handler.try_done() {
            let Some((head, len)) = self.handler.finish(mem, done) else {
                continue;
            };
            if interrupt.needs_reset() {
                continue;
            }
            if queue.add_used(mem, head, len).is_err() {
                interrupt.fail_device();
                continue;
            }
            answered = true;
        }
        if answered && notify(queue, mem, interrupt).is_err() {
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
        if let Err(e) = ops.add(Events::new(self.handler.done_event(), EventSet::IN)) {
            eprintln!("vmctl: virtio-blk: cannot watch its I/O completions: {e}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        // Each read clears its counter; EAGAIN (a spurious wake-up) changes nothing.
        if events.fd() == self.handler.done_event().as_raw_fd() {
            let _ = self.handler.done_event().read();
            self.process_done();
        } else if events.fd() == self.queue_event().as_raw_fd() {
            let _ = self.queue_event().read();
            self.process_queue();
        }
    }
}
