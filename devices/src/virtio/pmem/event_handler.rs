//! The device in the VMM's event loop: queue notifications (the KVM ioeventfd) and the flush
//! worker's completions.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::Pmem;

const QUEUE_EVENT: u32 = 0;
const FLUSH_DONE: u32 = 1;

impl MutEventSubscriber for Pmem {
    fn init(&mut self, ops: &mut EventOps) {
        let mut ok = ops
            .add(Events::with_data(
                self.queue_event(),
                QUEUE_EVENT,
                EventSet::IN,
            ))
            .is_ok();
        if let Some(flusher) = &self.flusher {
            ok &= ops
                .add(Events::with_data(
                    flusher.done_event(),
                    FLUSH_DONE,
                    EventSet::IN,
                ))
                .is_ok();
        }
        // Without its events the device could never answer: activation then fails (the guest
        // sees DEVICE_NEEDS_RESET) instead of hanging.
        self.registered = ok;
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            QUEUE_EVENT => {
                // Drained in every state: notifications before DRIVER_OK, after a failure or
                // after a reset are ignored (activation looks at the queue once).
                let _ = self.queue_event().read();
                if self.is_active() {
                    self.process_queue();
                }
            }
            FLUSH_DONE => self.process_flush_done(),
            _ => {}
        }
    }
}
