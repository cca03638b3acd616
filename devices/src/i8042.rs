//! The i8042 keyboard controller, reduced to what a PC guest uses to reset the machine.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Data port 0x60 (offset 0) and command/status port 0x64 (offset 4): insert at 0x60, length 5.
pub const I8042_BASE: u64 = 0x60;
pub const I8042_LEN: u64 = 5;
const DATA_OFFSET: u64 = 0;
const COMMAND_OFFSET: u64 = 4;
/// Pulse the output port's bit 0: the CPU reset line.
const CMD_RESET_CPU: u8 = 0xFE;

pub struct I8042 {
    stop: Arc<StopSignal>,
}

impl I8042 {
    pub fn new(stop: Arc<StopSignal>) -> Self {
        I8042 { stop }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status: output buffer empty, input buffer empty; data: nothing queued. Linux's reboot
        // path polls the status for "input buffer empty" before writing the reset command.
        let value = match offset {
            DATA_OFFSET | COMMAND_OFFSET => 0,
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            self.stop.stop(StopReason::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_stops_the_vm() {
        let stop = Arc::new(StopSignal::new().unwrap());
        let mut dev = I8042::new(stop.clone());
        dev.write(DATA_OFFSET, &[CMD_RESET_CPU]);
        assert!(!stop.is_stopping());
        dev.write(COMMAND_OFFSET, &[0xAD]);
        assert!(!stop.is_stopping());
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
    }

    #[test]
    fn status_reads_as_idle() {
        let mut dev = I8042::new(Arc::new(StopSignal::new().unwrap()));
        let mut status = [0xAA];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
