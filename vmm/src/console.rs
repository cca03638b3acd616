//! Feeding host input (stdin) to the guest's serial port, with flow control and an escape key.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use devices::bus::lock;
use devices::serial::SerialDevice;
use devices::{StopReason, StopSignal};
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;

/// Host input waiting for room in the UART's receive FIFO; reading stops while it is full.
const PENDING_MAX: usize = 4096;

pub struct ConsoleInput {
    input: RawFd,
    escape: Option<u8>,
    serial: Arc<Mutex<SerialDevice>>,
    drained: EventFd,
    stop: Arc<StopSignal>,
    pending: VecDeque<u8>,
    input_open: bool,
    watching_input: bool,
}

impl ConsoleInput {
    pub fn new(
        input: RawFd,
        escape: Option<u8>,
        serial: Arc<Mutex<SerialDevice>>,
        drained: EventFd,
        stop: Arc<StopSignal>,
    ) -> Self {
        ConsoleInput {
            input,
            escape,
            serial,
            drained,
            stop,
            pending: VecDeque::new(),
            input_open: true,
            watching_input: false,
        }
    }

    fn feed_guest(&mut self) {
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            let taken = lock(&self.serial).enqueue_input(front);
            if taken == 0 {
                break;
            }
            self.pending.drain(..taken);
        }
    }

    fn read_input(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        let room = PENDING_MAX
            .saturating_sub(self.pending.len())
            .min(buf.len());
        // SAFETY: reading into a local buffer of at least `room` bytes.
        let n = unsafe { libc::read(self.input, buf.as_mut_ptr().cast(), room) };
        if n <= 0 {
            let err = std::io::Error::last_os_error();
            let transient =
                n < 0 && matches!(err.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN));
            return transient;
        }
        for &b in &buf[..n as usize] {
            if Some(b) == self.escape {
                self.stop.stop(StopReason::UserQuit);
                return true;
            }
            self.pending.push_back(b);
        }
        true
    }

    fn set_watching(&mut self, ops: &mut EventOps, watch: bool) {
        if watch == self.watching_input || !self.input_open {
            return;
        }
        let ev = Events::empty_raw(self.input);
        let ok = if watch {
            ops.add(Events::new_raw(self.input, EventSet::IN)).is_ok()
        } else {
            ops.remove(ev).is_ok()
        };
        if ok {
            self.watching_input = watch;
        } else if watch {
            // Not pollable (a regular file, /dev/null): no console input, the guest still runs.
            self.input_open = false;
        }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn init(&mut self, ops: &mut EventOps) {
        if ops.add(Events::new(&self.drained, EventSet::IN)).is_err() {
            self.input_open = false;
            return;
        }
        self.set_watching(ops, true);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.input {
            let more = events.event_set().contains(EventSet::IN) && self.read_input();
            if !more {
                // EOF or error: the guest keeps running without input.
                self.set_watching(ops, false);
                self.input_open = false;
            }
        } else {
            let _ = self.drained.read();
        }
        self.feed_guest();
        let room = self.pending.len() < PENDING_MAX;
        self.set_watching(ops, room);
    }
}

/// Wakes the loop when the VM is asked to stop; a wake-up with no reason recorded comes from a
/// signal handler (SIGTERM, SIGINT, SIGHUP) and means the user wants out.
pub struct StopWatcher {
    pub stop: Arc<StopSignal>,
}

impl MutEventSubscriber for StopWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        // Without this the VM could not be stopped: a failure here surfaces as the loop's error.
        let _ = ops.add(Events::new(self.stop.event(), EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.stop.event().read();
        if !self.stop.is_stopping() {
            self.stop.stop(StopReason::UserQuit);
        }
    }
}
