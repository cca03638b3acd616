//! The i8042 keyboard controller, reduced to what a PC guest uses to reset the machine:
//! vm-superio's device, whose reset line stops the VM.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Data port 0x60 (offset 0) and command/status port 0x64 (offset 4): insert at 0x60, length 5.
pub const I8042_BASE: u64 = 0x60;
pub const I8042_LEN: u64 = 5;

/// The CPU reset line: ends the VM with `StopReason::Reset`.
pub struct ResetLine(Arc<StopSignal>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.stop(StopReason::Reset);
        Ok(())
    }
}

pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    pub fn new(stop: Arc<StopSignal>) -> Self {
        I8042(I8042Device::new(ResetLine(stop)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status and data read as 0: output buffer empty, input buffer empty, nothing queued.
        // Linux's reboot path polls the status for "input buffer empty" before the reset.
        let value = match (u8::try_from(offset), data.len()) {
            (Ok(offset), 1) => self.0.read(offset),
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [value]) = (u8::try_from(offset), data) {
            let Ok(()) = self.0.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA_OFFSET: u64 = 0;
    const COMMAND_OFFSET: u64 = 4;
    /// Pulse the output port's bit 0: the CPU reset line.
    const CMD_RESET_CPU: u8 = 0xFE;

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
