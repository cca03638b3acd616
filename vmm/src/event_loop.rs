//! The VM's event-loop thread: it serves the device backends (virtio queues, console input) until
//! the VM is asked to stop, then stops the vCPUs, waits for them and flushes the console.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::bus::lock;
use devices::console_out::ConsoleOut;
use devices::serial::SerialDevice;
use devices::{StopReason, StopSignal, Timeline};
use event_manager::{EventManager, MutEventSubscriber};

use crate::control::VcpuControl;

/// A device backend (or console input) the event loop serves.
pub(crate) type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// At the end, how long the console's last output may go without a write completing before the
/// rest is dropped: a reader this slow has stalled, and the VM's end must not wait on it.
pub const CONSOLE_PATIENCE: Duration = Duration::from_secs(2);

pub struct EventLoop {
    pub events: EventManager<Subscriber>,
    pub stop: Arc<StopSignal>,
    pub control: Arc<VcpuControl>,
    pub serial: Arc<Mutex<SerialDevice>>,
    pub console: ConsoleOut,
    pub timeline: Arc<Timeline>,
}

impl EventLoop {
    /// The thread body: runs until the VM stops and says why it stopped.
    pub fn run(mut self) -> StopReason {
        while !self.stop.is_stopping() {
            // The timeout is only a safety net: the stop eventfd wakes the loop.
            if let Err(e) = self.events.run_with_timeout(1000) {
                self.stop
                    .stop(StopReason::Failed(format!("event loop failed: {e:?}")));
            }
        }
        let reason = self.stop.reason().unwrap_or(StopReason::UserQuit);
        self.timeline
            .record(|| format!("guest exit: {}", describe(&reason)));
        // Whoever asked for the stop (the guest through a device, the owner's handle, a signal
        // handler through the eventfd), this is where every vCPU is told.
        self.control.stop();
        self.control.wait_exited();
        lock(&self.serial).flush();
        self.console.finish(CONSOLE_PATIENCE);
        drop(self.events);
        self.control.finish();
        reason
    }
}

/// A short description of why the VM stopped, for the timeline.
pub fn describe(reason: &StopReason) -> String {
    match reason {
        StopReason::ExitStatus(s) => format!("status {s}"),
        StopReason::Reset => "reset".into(),
        StopReason::Shutdown => "shutdown".into(),
        StopReason::Crashed(_) => "triple fault".into(),
        StopReason::Failed(_) => "vmm error".into(),
        StopReason::UserQuit => "quit by the user".into(),
    }
}
