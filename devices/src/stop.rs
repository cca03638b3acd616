//! How a running VM asks to end: the first reason wins, and an eventfd wakes the VMM's loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest reset the machine (i8042 reset line, or KVM's reset system event).
    Reset,
    /// The guest shut the machine down (KVM's shutdown system event, or a halt KVM hands back).
    Shutdown,
    /// The guest crashed: a triple fault (KVM_EXIT_SHUTDOWN). The text says which vCPU and holds
    /// its registers at the fault, for the kernel developer.
    Crashed(String),
    /// The guest reported an exit status on the exit-status port.
    ExitStatus(u8),
    /// The VMM could not go on (an exit it cannot serve, a failed vCPU ioctl, ...).
    Failed(String),
    /// The user asked to quit (escape key, signal).
    UserQuit,
}

pub struct StopSignal {
    reason: Mutex<Option<StopReason>>,
    /// Set once a reason is recorded: what the vCPU threads check after every exit, without a lock.
    stopping: AtomicBool,
    event: EventFd,
}

impl StopSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(StopSignal {
            reason: Mutex::new(None),
            stopping: AtomicBool::new(false),
            event: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless the VM is already stopping, and wakes whoever waits on the event.
    pub fn stop(&self, reason: StopReason) {
        let mut slot = crate::bus::lock(&self.reason);
        if slot.is_none() {
            *slot = Some(reason);
            self.stopping.store(true, Ordering::Release);
        }
        // A full eventfd counter still wakes the reader, so a failed write loses nothing.
        let _ = self.event.write(1);
    }

    pub fn reason(&self) -> Option<StopReason> {
        crate::bus::lock(&self.reason).clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let s = StopSignal::new().unwrap();
        assert!(!s.is_stopping());
        s.stop(StopReason::ExitStatus(3));
        s.stop(StopReason::Reset);
        assert_eq!(s.reason(), Some(StopReason::ExitStatus(3)));
        assert_eq!(s.event().read().unwrap(), 2);
    }
}
