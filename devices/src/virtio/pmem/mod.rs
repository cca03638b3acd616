//! virtio-pmem: a file mapped into guest physical memory for DAX.

use std::path::PathBuf;

/// How the VMM asks for a persistent-memory device.
#[derive(Clone, Debug)]
pub struct PmemConfig {
    pub path: PathBuf,
    /// A private mapping: guest writes never reach the file.
    pub read_only: bool,
}
crate::placeholder_device!(Pmem, PmemConfig, "virtio-pmem");

/// Guest-physical alignment of pmem regions.
pub const ALIGNMENT: u64 = 2 << 20;

/// Where a pmem file sits in guest physical memory and in the VMM's address space.
#[derive(Clone, Copy, Debug)]
pub struct PmemMapping {
    pub guest_addr: u64,
    pub len: u64,
    pub host_addr: u64,
    pub read_only: bool,
}

impl Pmem {
    pub fn open(config: PmemConfig, _guest_addr: u64) -> crate::Result<Self> {
        Self::new(config)
    }
    pub fn mapping(&self) -> PmemMapping {
        match self._never {}
    }
}
