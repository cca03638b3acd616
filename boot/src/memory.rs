//! Guest RAM: where it sits in the guest physical address space, and its allocation.

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestAddress, GuestRegionMmap};

use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};
use crate::{Error, Result};

pub use guest_memory::{host_regions, GuestMemory, RamMapping, HOST_ALIGN};

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

    /// Maps anonymous memory for every range, each on a 2 MiB boundary of the host (see
    /// [`HOST_ALIGN`]). Pages are not touched, so only what the guest uses becomes resident.
    pub fn allocate(&self) -> Result<GuestMemory> {
        let mib = self.ranges.iter().map(|r| r.1).sum::<u64>() >> 20;
        let fail = |reason: String| Error::MemoryAlloc { mib, reason };
        let mut regions = Vec::with_capacity(self.ranges.len());
        for &(start, len) in &self.ranges {
            let len = usize::try_from(len).map_err(|e| fail(e.to_string()))?;
            let mapping = RamMapping::map_aligned(len).map_err(|e| fail(e.to_string()))?;
            let addr = mapping.aligned();
            // SAFETY: `addr..addr + len` lies inside the mapping `mapping` made, which stays
            // mapped until `mapping`, handed to the region below, is dropped with it.
            let region = unsafe {
                MmapRegionBuilder::new_with_bitmap(len, mapping)
                    .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                    .with_mmap_flags(RamMapping::FLAGS)
                    .with_raw_mmap_pointer(addr as *mut u8)
            }
            .build()
            .map_err(|e| fail(e.to_string()))?;
            let region = GuestRegionMmap::new(region, GuestAddress(start))
                .ok_or_else(|| fail(format!("the range at {start:#x} overflows")))?;
            regions.push(region);
        }
        GuestMemory::from_regions(regions).map_err(|e| fail(e.to_string()))
    }
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
    fn every_range_starts_on_a_host_huge_page_boundary() {
        let layout = RamLayout::new(4096).unwrap();

        let mem = layout.allocate().unwrap();

        let regions = host_regions(&mem);
        assert_eq!(regions.len(), 2);
        for (_, _, host) in regions {
            assert_eq!(host % HOST_ALIGN as u64, 0, "host address {host:#x}");
        }
    }

    #[test]
    fn the_mapping_goes_with_the_last_clone() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let host = host_regions(&mem)[0].2 as usize;
        let clone = mem.clone();

        drop(mem);
        assert!(is_mapped(host), "unmapped while a clone lives");
        drop(clone);

        assert!(!is_mapped(host));
    }

    /// Whether the page at `addr` is mapped in this process (msync fails with ENOMEM if not).
    fn is_mapped(addr: usize) -> bool {
        // SAFETY: msync only inspects the mapping; MS_ASYNC on anonymous memory does nothing.
        unsafe { libc::msync(addr as *mut libc::c_void, 4096, libc::MS_ASYNC) == 0 }
    }

    #[test]
    fn too_small_is_refused() {
        assert!(matches!(
            RamLayout::new(1),
            Err(Error::MemoryTooSmall { mib: 1, .. })
        ));
    }
}
