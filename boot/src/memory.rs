//! Guest RAM: where it sits in the guest physical address space, and its allocation.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};
use crate::{Error, Result};

/// Guest memory as the VMM maps it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// The smallest guest the machine accepts: room for the boot structures and a tiny kernel.
pub const MIN_MEMORY_MIB: u64 = 16;

/// The RAM ranges of a guest of a given size: below the 32-bit MMIO gap, then above 4 GiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamLayout {
    ranges: Vec<(u64, u64)>,
}

impl RamLayout {
    pub fn new(mib: u64) -> Result<Self> {
        if mib < MIN_MEMORY_MIB {
            return Err(Error::MemoryTooSmall {
                mib,
                min: MIN_MEMORY_MIB,
            });
        }
        let bytes = mib.checked_mul(1 << 20).ok_or(Error::MemoryAlloc {
            mib,
            reason: "size overflows".into(),
        })?;
        let low = bytes.min(MMIO_GAP_START);
        let mut ranges = vec![(0, low)];
        if bytes > low {
            ranges.push((MMIO_GAP_END, bytes - low));
        }
        Ok(RamLayout { ranges })
    }

    /// (start, length) of each RAM range, in address order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// End of the RAM below the MMIO gap.
    pub fn low_end(&self) -> u64 {
        self.ranges[0].1
    }

    /// First address above all RAM.
    pub fn end(&self) -> u64 {
        self.ranges.last().map_or(0, |&(start, len)| start + len)
    }

    /// Maps anonymous memory for every range. Pages are not touched, so only what the guest uses
    /// becomes resident.
    pub fn allocate(&self) -> Result<GuestMemory> {
        let ranges: Vec<(GuestAddress, usize)> = self
            .ranges
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len as usize))
            .collect();
        GuestMemory::from_ranges(&ranges).map_err(|e| Error::MemoryAlloc {
            mib: self.ranges.iter().map(|r| r.1).sum::<u64>() >> 20,
            reason: e.to_string(),
        })
    }
}

/// Host address and size of each region, for registering them with KVM.
pub fn host_regions(mem: &GuestMemory) -> Vec<(u64, u64, u64)> {
    mem.iter()
        .map(|r| {
            // A region's own start is always inside it.
            let host = r
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_or(0, |p| p as u64);
            (r.start_addr().0, r.len(), host)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_range() {
        let layout = RamLayout::new(128).unwrap();
        assert_eq!(layout.ranges(), &[(0, 128 << 20)]);
        assert_eq!(layout.end(), 128 << 20);
    }

    #[test]
    fn large_guest_continues_above_4g() {
        let layout = RamLayout::new(4096).unwrap();
        assert_eq!(
            layout.ranges(),
            &[
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, (4096 << 20) - MMIO_GAP_START)
            ]
        );
        assert_eq!(layout.low_end(), MMIO_GAP_START);
    }

    #[test]
    fn too_small_is_refused() {
        assert!(matches!(
            RamLayout::new(1),
            Err(Error::MemoryTooSmall { mib: 1, .. })
        ));
    }
}
