//! The device in the VMM's event loop: queue notifications, the host listener, host sockets
//! (registered and unregistered as connections come and go), the timer and the wake-up eventfd.

use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;

use super::device::{Vsock, EVENT_QUEUE, RX_QUEUE, TX_QUEUE};
use super::muxer::TOKEN_LIMIT;

const TOKEN_RX: u32 = TOKEN_LIMIT;
const TOKEN_TX: u32 = TOKEN_LIMIT + 1;
const TOKEN_EVENT: u32 = TOKEN_LIMIT + 2;
const TOKEN_LISTENER: u32 = TOKEN_LIMIT + 3;
const TOKEN_TIMER: u32 = TOKEN_LIMIT + 4;
const TOKEN_WAKE: u32 = TOKEN_LIMIT + 5;

/// Host sockets are watched edge-triggered: the connection remembers readiness itself, so the
/// event set never changes while the socket lives.
fn stream_events() -> EventSet {
    EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED
}

impl Vsock {
    /// Registers the sockets the muxer opened and unregisters (then closes) the ones it let go.
    fn sync_fds(&mut self, ops: &mut EventOps) {
        let mut i = 0;
        while i < self.muxer.registrations.len() {
            let Some(&(fd, token)) = self.muxer.registrations.get(i) else {
                break;
            };
            i += 1;
            if ops
                .add(Events::with_data_raw(fd, token, stream_events()))
                .is_err()
            {
                // Cannot watch it: give up on that connection.
                self.muxer.abort(token);
            }
        }
        self.muxer.registrations.clear();
        let listener = self.muxer.listener_fd();
        match self.muxer.listener_change.take() {
            Some(false) => {
                let _ = ops.remove(Events::empty_raw(listener));
            }
            Some(true) => {
                let _ = ops.add(Events::with_data_raw(
                    listener,
                    TOKEN_LISTENER,
                    EventSet::IN,
                ));
            }
            None => {}
        }
        for stream in self.muxer.graveyard.drain(..) {
            // Fails harmlessly for a socket that never got registered.
            let _ = ops.remove(Events::empty(&stream));
        }
    }

    fn arm_timer(&mut self, now: Instant) {
        if !self.muxer.take_timers_dirty() {
            return;
        }
        let result = match self.muxer.next_expiry() {
            // A zero duration would disarm the timer.
            Some(t) => self.timer.reset(
                t.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
                None,
            ),
            None => self.timer.clear(),
        };
        if result.is_err() {
            // Without a timer, expiries are checked at the next event instead.
            self.muxer.timeouts(now);
        }
    }

    fn handle(&mut self, token: u32, set: EventSet, now: Instant) {
        match token {
            TOKEN_RX => {
                self.drain_queue_event(RX_QUEUE);
                self.rx_kicked();
            }
            TOKEN_TX => {
                self.drain_queue_event(TX_QUEUE);
                self.process_tx(now);
            }
            TOKEN_EVENT => self.drain_queue_event(EVENT_QUEUE),
            TOKEN_LISTENER => self.muxer.accept(now),
            TOKEN_TIMER => {
                let _ = self.timer.wait();
                self.muxer.timeouts(now);
                // The timer is one-shot: arm it again for whatever is next.
                self.muxer.mark_timers_dirty();
            }
            TOKEN_WAKE => {
                let _ = self.wake.read();
            }
            token if token < TOKEN_LIMIT => {
                let hung_up = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
                let eof_coming = set.contains(EventSet::READ_HANG_UP);
                let readable = set.contains(EventSet::IN);
                let writable = set.contains(EventSet::OUT);
                self.muxer
                    .host_event(token, readable, writable, eof_coming, hung_up);
            }
            _ => {}
        }
    }

    /// Queue notifications that arrive before DRIVER_OK (or after a reset) are consumed and
    /// ignored.
    fn drain_queue_event(&mut self, queue: usize) {
        if let Some(evt) = self.queue_events.get(queue) {
            let _ = evt.read();
        }
    }
}

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        let fds = [
            (self.queue_events.get(RX_QUEUE), TOKEN_RX),
            (self.queue_events.get(TX_QUEUE), TOKEN_TX),
            (self.queue_events.get(EVENT_QUEUE), TOKEN_EVENT),
        ];
        for (evt, token) in fds {
            if let Some(evt) = evt {
                let _ = ops.add(Events::with_data(evt, token, EventSet::IN));
            }
        }
        let _ = ops.add(Events::with_data_raw(
            self.muxer.listener_fd(),
            TOKEN_LISTENER,
            EventSet::IN,
        ));
        let _ = ops.add(Events::with_data(&self.timer, TOKEN_TIMER, EventSet::IN));
        let _ = ops.add(Events::with_data(&self.wake, TOKEN_WAKE, EventSet::IN));
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let now = Instant::now();
        self.handle(events.data(), events.event_set(), now);
        // Whatever happened may have given the guest something to read.
        self.process_rx(now);
        self.signal();
        self.sync_fds(ops);
        self.arm_timer(now);
    }
}
