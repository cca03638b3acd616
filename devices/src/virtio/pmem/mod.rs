//! virtio-pmem: a file mapped into guest physical memory for DAX.
//!
//! The file is mapped into the VMM (`backend`) and the VMM registers that mapping as a KVM memory
//! slot above guest RAM, so the guest's loads and stores reach the file's pages directly: with
//! `mount -o dax` (ext4, erofs) it reads and writes the file without copies and without exits.
//! The device itself only announces the region (config space `start`, `size`) and serves the one
//! request the driver sends, FLUSH, which makes the host `fsync` the file (`flush`, on a worker
//! thread so a slow disk never stalls the VMM's event loop).
//!
//! - Read-write: `MAP_SHARED`, guest writes land in the host page cache of the file; FLUSH makes
//!   them durable.
//! - Read-only: the file is opened `O_RDONLY` and mapped `MAP_PRIVATE`. The guest may still write
//!   (its view stays consistent: a guest that mounts read-write does not corrupt its own file
//!   system), but writes go to private copy-on-write pages and never reach the file. A KVM
//!   read-only slot was not used: it turns every guest store into an MMIO exit that the bus drops,
//!   so a guest file system would see its own writes vanish (and some store instructions cannot be
//!   emulated at all).
//! - Size: Linux maps the region with `memremap_pages`, which needs 2 MiB (a memory subsection,
//!   with SPARSEMEM_VMEMMAP) alignment of start and size. A file whose size is not a multiple of
//!   [`ALIGNMENT`] is padded: the tail past the file's last page is anonymous zero memory that
//!   reads as zeros and whose writes are not kept (file systems made for the file's size never
//!   touch it).
//!
//! - First touch: each page of the region costs the guest a VM exit the first time; for a file in
//!   tmpfs a background thread has the host back it with 2 MiB pages (`hugepages`), so KVM maps
//!   2 MiB per exit.
//!
//! Files: `device` (state, `VirtioDevice`, queue processing), `event_handler` (event-loop
//! dispatch), `request` (parsing a descriptor chain), `flush` (the fsync worker), `backend` (the
//! file and its mapping), `hugepages` (huge pages behind tmpfs files).

mod backend;
mod device;
mod event_handler;
mod flush;
mod hugepages;
mod request;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use device::{Pmem, QUEUE_SIZE};

/// How the VMM asks for a persistent-memory device.
#[derive(Clone, Debug)]
pub struct PmemConfig {
    pub path: PathBuf,
    /// A private mapping: guest writes never reach the file.
    pub read_only: bool,
}

/// Guest-physical alignment (and size granularity) of pmem regions: Linux 6.1 hot-plugs device
/// memory in subsections of 2 MiB (`check_pfn_span` with SPARSEMEM_VMEMMAP), and 2 MiB also lets
/// the guest use huge-page (PMD) DAX mappings.
pub const ALIGNMENT: u64 = 2 << 20;

/// Where a pmem file sits in guest physical memory and in the VMM's address space.
#[derive(Clone, Copy, Debug)]
pub struct PmemMapping {
    pub guest_addr: u64,
    /// The region's length: the file's size rounded up to [`ALIGNMENT`].
    pub len: u64,
    pub host_addr: u64,
    /// The mapping is private (guest writes stay in the VMM's memory). KVM maps it writable all
    /// the same.
    pub read_only: bool,
}
