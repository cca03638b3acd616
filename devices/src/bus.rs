//! Address-range dispatch of guest port-I/O and MMIO accesses to devices.

use std::sync::{Arc, Mutex};

/// A device reached through a bus. `offset` is relative to the range the device was inserted at.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bus range {base:#x}+{len:#x} overlaps a device already there or is empty")]
pub struct BusOverlap {
    pub base: u64,
    pub len: u64,
}

struct Entry {
    base: u64,
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// A set of non-overlapping address ranges, each served by one device.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusOverlap> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let overlaps = |e: &Entry| base < e.base + e.len && e.base < end.unwrap_or(u64::MAX);
        if end.is_none() || self.entries.iter().any(overlaps) {
            return Err(BusOverlap { base, len });
        }
        let at = self.entries.partition_point(|e| e.base < base);
        self.entries.insert(at, Entry { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&Entry, u64)> {
        let i = self
            .entries
            .partition_point(|e| e.base <= addr)
            .checked_sub(1)?;
        let e = &self.entries[i];
        let offset = addr - e.base;
        // The whole access must fall inside the device's range.
        (offset.checked_add(size as u64)? <= e.len).then_some((e, offset))
    }

    /// Reads through the device at `addr`; `false` when nothing is there (data is then all ones,
    /// as an open bus reads).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((e, offset)) => {
                lock(&e.device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Writes through the device at `addr`; `false` when nothing is there (the write is dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((e, offset)) => {
                lock(&e.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device even if a thread panicked while holding it: device state stays usable, and a
/// poisoned lock must not take the VMM down.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    fn echo() -> Arc<Mutex<Echo>> {
        Arc::new(Mutex::new(Echo(Vec::new())))
    }

    #[test]
    fn dispatches_by_range_with_relative_offsets() {
        let mut bus = Bus::new();
        let dev = echo();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fa, &mut data));
        assert_eq!(data, [2]);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().unwrap().0, vec![(7, vec![7])]);
    }

    #[test]
    fn unclaimed_reads_are_all_ones() {
        let bus = Bus::new();
        let mut data = [0u8; 4];
        assert!(!bus.read(0x87, &mut data));
        assert_eq!(data, [0xff; 4]);
    }

    #[test]
    fn access_straddling_the_end_is_refused() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 4, echo()).unwrap();
        let mut data = [0u8; 4];
        assert!(!bus.read(0x1002, &mut data));
        assert!(!bus.write(u64::MAX - 1, &[0; 4]));
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut bus = Bus::new();
        bus.insert(0x60, 1, echo()).unwrap();
        assert!(bus.insert(0x5f, 2, echo()).is_err());
        assert!(bus.insert(0x10, 0, echo()).is_err());
        bus.insert(0x64, 1, echo()).unwrap();
    }
}
