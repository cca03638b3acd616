//! Guest memory as the VMM maps it, shared by the crates that touch it (boot loads the kernel
//! into it, devices serve queues from it, vmm registers it with KVM): the type, and the owner
//! of each RAM mapping vmctl makes itself.

use std::io;
use std::ptr::null_mut;

use vm_memory::bitmap::{Bitmap, NewBitmap, WithBitmapSlice};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Guest memory as the VMM maps it.
pub type GuestMemory = vm_memory::GuestMemoryMmap<RamMapping>;

/// Guest RAM ranges start on a huge-page boundary of the host too, so that where the host backs
/// them with transparent huge pages KVM maps the guest 2 MiB at a time (it can only when guest and
/// host addresses agree modulo 2 MiB). Measured in the test host (nested KVM): `vmctl boot -- true`
/// 1.34 s -> 1.16 s.
pub const HOST_ALIGN: usize = 2 << 20;

/// Owns a guest RAM mapping vmctl made itself, carried in the slot vm-memory keeps beside each
/// region for a dirty-page bitmap. vm-memory unmaps only the mappings it makes (at addresses it
/// cannot align), and this slot lives exactly as long as the region, so the mapping goes when the
/// last clone of the guest memory does. It tracks no dirty pages. `Default` (what vm-memory's
/// own allocations get, e.g. from `GuestMemory::from_ranges` in tests) owns nothing.
#[derive(Debug, Default)]
pub struct RamMapping {
    /// The whole mapping: (address, length), if this owns one.
    mapping: Option<(usize, usize)>,
    /// Where the guest's range starts inside it.
    aligned: usize,
}

impl RamMapping {
    /// How guest RAM is mapped: private anonymous memory, reserved lazily.
    pub const FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

    /// Maps `len` bytes of anonymous memory starting on a [`HOST_ALIGN`] boundary: maps
    /// `HOST_ALIGN` more than asked and keeps the aligned part's start.
    pub fn map_aligned(len: usize) -> io::Result<Self> {
        let total = len
            .checked_add(HOST_ALIGN)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: a new private anonymous mapping at an address the kernel picks: no existing
        // memory is affected.
        let addr = unsafe {
            libc::mmap(
                null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                Self::FLAGS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let addr = addr as usize;
        Ok(RamMapping {
            mapping: Some((addr, total)),
            aligned: addr.next_multiple_of(HOST_ALIGN),
        })
    }

    /// Where the guest's range starts: the first [`HOST_ALIGN`] boundary inside the mapping.
    pub fn aligned(&self) -> usize {
        self.aligned
    }
}

impl Drop for RamMapping {
    fn drop(&mut self) {
        if let Some((addr, len)) = self.mapping.take() {
            // SAFETY: the mapping is ours (made in `map_aligned`) and its only user, the region
            // this rides in, is being dropped.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
}

impl WithBitmapSlice<'_> for RamMapping {
    type S = ();
}

impl Bitmap for RamMapping {
    fn mark_dirty(&self, _offset: usize, _len: usize) {}

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    fn slice_at(&self, _offset: usize) {}
}

impl NewBitmap for RamMapping {
    fn with_len(_len: usize) -> Self {
        RamMapping::default()
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
