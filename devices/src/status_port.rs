//! The exit-status port: a 1-byte OUT of S ends the VM and `vmctl boot` exits with S.
//!
//! It sits where QEMU's isa-debug-exit sits by default (0x501), but the value is the status as is.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

pub const STATUS_PORT: u64 = 0x501;
pub const STATUS_PORT_LEN: u64 = 1;

pub struct StatusPort {
    stop: Arc<StopSignal>,
}

impl StatusPort {
    pub fn new(stop: Arc<StopSignal>) -> Self {
        StatusPort { stop }
    }
}

impl BusDevice for StatusPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        // Only a 1-byte access is the documented interface; wider ones are ignored.
        if let [status] = data {
            self.stop.stop(StopReason::ExitStatus(*status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_write_reports_the_status() {
        let stop = Arc::new(StopSignal::new().unwrap());
        let mut port = StatusPort::new(stop.clone());
        port.write(0, &[1, 2]);
        assert!(!stop.is_stopping());
        port.write(0, &[3]);
        assert_eq!(stop.reason(), Some(StopReason::ExitStatus(3)));
    }
}
