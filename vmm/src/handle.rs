//! A running VM's remote control: pause, resume, stop, state and numbers, from any thread.

use std::sync::Arc;
use std::time::Duration;

use devices::console_out::ConsoleOut;
use devices::{StopReason, StopSignal};

use crate::control::{Order, VcpuControl};
use crate::stats::{VcpuCounters, VmStats};
use crate::Result;

/// How long a pause waits for every vCPU to park before it gives up (and the VM runs on). A kick
/// takes a vCPU out of KVM_RUN in microseconds; only one stuck serving a device takes this long.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Its vCPUs run the guest.
    Running,
    /// Every vCPU is parked outside KVM_RUN; devices still serve requests already queued.
    Paused,
    /// Asked to stop (by the guest, the owner or a failure); its threads are winding down.
    Stopping,
    /// Every vCPU has exited and the event loop has ended.
    Stopped,
}

/// Controls one running VM; cheap to clone, usable from any thread, valid after the VM ends
/// (pause and resume then fail, `state` says `Stopped`).
#[derive(Clone)]
pub struct VmHandle {
    shared: Arc<Shared>,
}

struct Shared {
    stop: Arc<StopSignal>,
    control: Arc<VcpuControl>,
    counters: Vec<Arc<VcpuCounters>>,
    memory_mib: u64,
    console: ConsoleOut,
}

impl VmHandle {
    pub(crate) fn new(
        stop: Arc<StopSignal>,
        control: Arc<VcpuControl>,
        counters: Vec<Arc<VcpuCounters>>,
        memory_mib: u64,
        console: ConsoleOut,
    ) -> Self {
        VmHandle {
            shared: Arc::new(Shared {
                stop,
                control,
                counters,
                memory_mib,
                console,
            }),
        }
    }

    /// Parks every vCPU and returns once each one is out of KVM_RUN and parked (or has exited).
    /// Pausing a paused VM does nothing.
    pub fn pause(&self) -> Result<()> {
        if self.shared.stop.is_stopping() {
            return Err(crate::Error::VmStopped { action: "paused" });
        }
        self.shared.control.pause(PAUSE_TIMEOUT)
    }

    /// Lets a paused VM run again; resuming a running VM does nothing.
    pub fn resume(&self) -> Result<()> {
        self.shared.control.resume()
    }

    /// Asks the VM to stop with `reason` (unless it is already stopping: the first reason wins)
    /// and kicks every vCPU out of the guest at once. Returns without waiting: the owner's
    /// `RunningVm::wait` returns once everything has stopped. Works on a paused VM too.
    pub fn stop(&self, reason: StopReason) {
        self.shared.stop.stop(reason);
        self.shared.control.stop();
    }

    pub fn state(&self) -> VmState {
        let control = &self.shared.control;
        if control.is_finished() {
            VmState::Stopped
        } else if self.shared.stop.is_stopping() || control.order() == Order::Stop {
            VmState::Stopping
        } else if control.is_paused() {
            VmState::Paused
        } else {
            VmState::Running
        }
    }

    pub fn stats(&self) -> VmStats {
        VmStats {
            vcpus: self.shared.counters.len() as u32,
            memory_mib: self.shared.memory_mib,
            vcpu: self.shared.counters.iter().map(|c| c.snapshot()).collect(),
            console_dropped: self.shared.console.dropped(),
        }
    }

    pub(crate) fn stop_signal(&self) -> &Arc<StopSignal> {
        &self.shared.stop
    }

    pub(crate) fn console(&self) -> &ConsoleOut {
        &self.shared.console
    }

    pub(crate) fn control(&self) -> &Arc<VcpuControl> {
        &self.shared.control
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_can_go_to_any_thread() {
        fn send_and_sync<T: Send + Sync + Clone>() {}
        send_and_sync::<VmHandle>();
    }

    #[test]
    fn a_stopped_handle_refuses_pause_and_resume_and_says_stopping() {
        let stop = Arc::new(StopSignal::new().unwrap());
        let (console, _) = devices::console_out::console_out(Box::new(std::io::sink()));
        let handle = VmHandle::new(stop, Arc::new(VcpuControl::new(1)), Vec::new(), 16, console);

        handle.stop(StopReason::UserQuit);

        assert_eq!(handle.state(), VmState::Stopping);
        assert!(handle.pause().is_err());
        assert!(handle.resume().is_err());
        assert_eq!(handle.stop_signal().reason(), Some(StopReason::UserQuit));
    }
}
