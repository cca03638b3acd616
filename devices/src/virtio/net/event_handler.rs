//! The event-loop side of virtio-net: queue notifications, tap readiness, activation and reset.
//!
//! The tap is watched only while the device is active and holds receive buffers: when the guest
//! has none, the tap is dropped from the event loop (frames wait in the tap's queue) until the
//! guest notifies the rx queue. Transmit runs on the tx queue's notification.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Net;
use super::rx::RxStop;
use super::tx::TxStop;
use super::{RX, TX};

const EV_RX_QUEUE: u32 = 0;
const EV_TX_QUEUE: u32 = 1;
const EV_TAP: u32 = 2;
const EV_ACTIVATE: u32 = 3;

impl Net {
    /// Receives what the tap has, if the device is active; remembers whether to watch the tap.
    pub(super) fn rx_pass(&mut self) {
        let Net {
            tap,
            active,
            stats,
            rx_wants_tap,
            ..
        } = self;
        *rx_wants_tap = match active {
            Some(a) => a.process_rx(tap, stats) == RxStop::TapEmpty,
            None => false,
        };
    }

    /// Transmits what the guest queued, if the device is active.
    pub(super) fn tx_pass(&mut self) {
        let Net {
            tap, active, stats, ..
        } = self;
        let more = match active {
            Some(a) => a.process_tx(tap, stats) == TxStop::More,
            None => false,
        };
        if more {
            // Come back after the other event sources had their turn.
            if let Some(evt) = self.queue_events.get(TX) {
                let _ = evt.write(1);
            }
        }
    }

    /// Registers or unregisters the tap with the event loop as the receive side needs.
    fn sync_tap_interest(&mut self, ops: &mut EventOps) {
        let want = self.rx_wants_tap && self.active.as_ref().is_some_and(|a| !a.broken);
        if want == self.tap_watched {
            return;
        }
        let events = Events::with_data(&self.tap, EV_TAP, EventSet::IN);
        let done = if want {
            ops.add(events)
        } else {
            ops.remove(events)
        };
        // Failing to add leaves the tap unwatched (receive resumes on the next rx notification);
        // failing to remove means it was not registered.
        self.tap_watched = want && done.is_ok();
    }
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        let sources = [(RX, EV_RX_QUEUE), (TX, EV_TX_QUEUE)];
        for (queue, data) in sources {
            if let Some(evt) = self.queue_events.get(queue) {
                let _ = ops.add(Events::with_data(evt, data, EventSet::IN));
            }
        }
        let _ = ops.add(Events::with_data(
            &self.activate_evt,
            EV_ACTIVATE,
            EventSet::IN,
        ));
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            EV_RX_QUEUE => {
                // Notifications before activation (or after a reset) are drained and ignored.
                if let Some(evt) = self.queue_events.get(RX) {
                    let _ = evt.read();
                }
                // New buffers: frames may be waiting in the tap.
                self.rx_pass();
            }
            EV_TX_QUEUE => {
                if let Some(evt) = self.queue_events.get(TX) {
                    let _ = evt.read();
                }
                self.tx_pass();
            }
            EV_TAP => self.rx_pass(),
            EV_ACTIVATE => {
                let _ = self.activate_evt.read();
                self.rx_pass();
                self.tx_pass();
            }
            _ => {}
        }
        self.sync_tap_interest(ops);
    }
}
