//! Identity-mapped page tables for entering the kernel in long mode.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{IDENTITY_MAP_GIB, PDPT_ADDR, PD_ADDR, PML4_ADDR};
use crate::memory::GuestMemory;
use crate::{Error, Result};

const PRESENT_WRITABLE: u64 = 0b11;
const PAGE_SIZE_2M: u64 = 1 << 7;

/// Writes a PML4 -> PDPT -> PD hierarchy mapping the first IDENTITY_MAP_GIB GiB 1:1 with 2 MiB
/// pages, and returns the value for CR3.
pub fn write_identity_map(mem: &GuestMemory) -> Result<u64> {
    write_u64s(mem, PML4_ADDR, &[PDPT_ADDR | PRESENT_WRITABLE])?;
    let pdpt: Vec<u64> = (0..IDENTITY_MAP_GIB)
        .map(|gib| (PD_ADDR + gib * 0x1000) | PRESENT_WRITABLE)
        .collect();
    write_u64s(mem, PDPT_ADDR, &pdpt)?;
    for gib in 0..IDENTITY_MAP_GIB {
        let pd: Vec<u64> = (0..512u64)
            .map(|i| ((gib << 30) + (i << 21)) | PAGE_SIZE_2M | PRESENT_WRITABLE)
            .collect();
        write_u64s(mem, PD_ADDR + gib * 0x1000, &pd)?;
    }
    Ok(PML4_ADDR)
}

fn write_u64s(mem: &GuestMemory, addr: u64, words: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|e| Error::guest_write(addr, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::RamLayout;

    #[test]
    fn maps_the_lapic_page_one_to_one() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let cr3 = write_identity_map(&mem).unwrap();
        let va: u64 = 0xFEE0_0000;
        let pml4e: u64 = mem
            .read_obj(GuestAddress(cr3 + ((va >> 39) & 511) * 8))
            .unwrap();
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xFFF) + ((va >> 30) & 511) * 8))
            .unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xFFF) + ((va >> 21) & 511) * 8))
            .unwrap();
        assert_eq!(pde & !0xFFF & !PAGE_SIZE_2M, va);
        assert_ne!(pde & PAGE_SIZE_2M, 0);
    }
}
