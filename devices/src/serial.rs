//! COM1: a 16550A UART (vm-superio) whose interrupt is an irqfd, with buffered output that never
//! blocks the vCPU (see `console_out`).

use std::io::Write;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::console_out::ConsoleOut;

pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_LEN: u64 = 8;
const IIR_OFFSET: u64 = 2;
const LSR_OFFSET: u64 = 5;
/// Output is handed out in chunks of at most this, or sooner (see `SerialDevice`).
const OUT_BUFFER: usize = 4096;

/// Raises the UART's interrupt line by signalling its irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Tells the VMM's loop when the guest has drained the receive FIFO, so it can feed more input.
pub struct InputDrained(pub EventFd);

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // A full eventfd counter still wakes the reader.
        let _ = self.0.write(1);
    }
}

/// Collects transmitted bytes; `SerialDevice` decides when they go out.
struct Pending(Vec<u8>);

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The UART plus where its output goes.
///
/// Transmitted bytes are handed to the console's writer at a newline, when 4 KiB have gathered,
/// or when the guest reads the status registers (it is waiting for the transmitter, so it has
/// nothing more to send right now). That keeps the console prompt-exact while sparing a lock and
/// a wake-up per byte.
pub struct SerialDevice {
    uart: Serial<IrqTrigger, InputDrained, Pending>,
    out: ConsoleOut,
}

impl SerialDevice {
    pub fn new(irq: EventFd, input_drained: EventFd, out: ConsoleOut) -> Self {
        SerialDevice {
            uart: Serial::with_events(
                IrqTrigger(irq),
                InputDrained(input_drained),
                Pending(Vec::with_capacity(OUT_BUFFER)),
            ),
            out,
        }
    }

    /// Queues host input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Hands whatever the guest has transmitted to the console's writer; never blocks.
    pub fn flush(&mut self) {
        let pending = &mut self.uart.writer_mut().0;
        if !pending.is_empty() {
            self.out.push(pending);
            pending.clear();
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if matches!(offset, IIR_OFFSET | LSR_OFFSET) {
            self.flush();
        }
        let value = match u8::try_from(offset) {
            Ok(reg) if data.len() == 1 => self.uart.read(reg),
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(reg), [value]) = (u8::try_from(offset), data) {
            // Errors are only the irqfd or the in-memory buffer failing: nothing to recover.
            let _ = self.uart.write(reg, *value);
            let pending = &self.uart.writer_mut().0;
            if pending.len() >= OUT_BUFFER || pending.last() == Some(&b'\n') {
                self.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console_out::console_out;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    /// A UART whose output stays in its console buffer (no writer runs), to be looked at.
    fn device() -> (SerialDevice, ConsoleOut, EventFd, EventFd) {
        let (out, _writer) = console_out(Box::new(std::io::sink()));
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let drained = EventFd::new(EFD_NONBLOCK).unwrap();
        let dev = SerialDevice::new(
            irq.try_clone().unwrap(),
            drained.try_clone().unwrap(),
            out.clone(),
        );
        (dev, out, irq, drained)
    }

    #[test]
    fn output_goes_out_at_newline_or_status_read() {
        let (mut dev, out, _, _) = device();
        for b in b"# " {
            dev.write(0, &[*b]);
        }
        assert!(out.buffered().is_empty());
        let mut lsr = [0];
        dev.read(LSR_OFFSET, &mut lsr);
        assert_eq!(out.buffered(), b"# ");
        for b in b"ok\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(out.buffered(), b"# ok\n");
    }

    #[test]
    fn input_raises_the_interrupt_and_reports_drain() {
        let (mut dev, _, irq, drained) = device();
        dev.write(1, &[0x01]); // IER: received-data interrupt
        assert_eq!(dev.enqueue_input(b"hi"), 2);
        assert!(irq.read().is_ok());
        let mut b = [0];
        dev.read(0, &mut b);
        assert_eq!(b, [b'h']);
        dev.read(0, &mut b);
        assert_eq!(b, [b'i']);
        assert!(drained.read().is_ok());
    }

    #[test]
    fn wide_or_out_of_range_accesses_are_harmless() {
        let (mut dev, out, _, _) = device();
        dev.write(0, &[1, 2, 3, 4]);
        let mut wide = [0u8; 4];
        dev.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        dev.write(300, &[1]);
        dev.flush();
        assert!(out.buffered().is_empty());
    }
}
