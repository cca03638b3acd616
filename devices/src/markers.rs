//! Boot markers guests built for other VMMs already emit, recorded on the timeline.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::timeline::Timeline;

/// Cloud Hypervisor's debug port: one byte; 0x40-0x5f from the kernel, 0x60-0x7f from user space.
pub const DEBUG_PORT: u64 = 0x80;
pub const DEBUG_PORT_LEN: u64 = 1;
/// Firecracker's boot timer: a 1-byte MMIO write of 123.
pub const BOOT_TIMER_LEN: u64 = 0x1000;
const BOOT_TIMER_MAGIC: u8 = 123;

/// Port 0x80. Linux also writes here for I/O delays with arbitrary values, so only the marker
/// ranges are recorded.
pub struct DebugPort {
    timeline: Arc<Timeline>,
}

impl DebugPort {
    pub fn new(timeline: Arc<Timeline>) -> Self {
        DebugPort { timeline }
    }
}

impl BusDevice for DebugPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let [code @ 0x40..=0x7f] = data {
            let origin = if *code < 0x60 { "kernel" } else { "user space" };
            self.timeline
                .record(|| format!("marker port 0x80 = {code:#04x} ({origin})"));
        }
    }
}

/// Firecracker's boot-timer device.
pub struct BootTimer {
    addr: u64,
    timeline: Arc<Timeline>,
}

impl BootTimer {
    pub fn new(addr: u64, timeline: Arc<Timeline>) -> Self {
        BootTimer { addr, timeline }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data == [BOOT_TIMER_MAGIC] {
            let addr = self.addr;
            self.timeline.record(|| {
                format!("marker mmio {addr:#x} = {BOOT_TIMER_MAGIC} (firecracker boot timer)")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn debug_port_records_marker_ranges_only() {
        let t = Arc::new(Timeline::new(Instant::now(), true));
        let mut port = DebugPort::new(t.clone());
        port.write(0, &[0x00]);
        port.write(0, &[0x41]);
        port.write(0, &[0x61]);
        port.write(0, &[0x80]);
        let events: Vec<String> = t.events().into_iter().map(|e| e.1).collect();
        assert_eq!(
            events,
            [
                "marker port 0x80 = 0x41 (kernel)",
                "marker port 0x80 = 0x61 (user space)"
            ]
        );
    }

    #[test]
    fn boot_timer_needs_the_magic_byte() {
        let t = Arc::new(Timeline::new(Instant::now(), true));
        let mut dev = BootTimer::new(0xC000_0000, t.clone());
        dev.write(0, &[1]);
        dev.write(0, &[123, 0]);
        dev.write(0, &[123]);
        let events = t.events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].1,
            "marker mmio 0xc0000000 = 123 (firecracker boot timer)"
        );
    }
}
