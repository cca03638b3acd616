//! The PVH boot protocol's `hvm_start_info`, its memory map and module list.
//!
//! Serialized by hand (little-endian, fixed offsets from xen/include/public/arch-x86/hvm/start_info.h)
//! rather than through `unsafe` byte views of the structs.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{CMDLINE_ADDR, PVH_INFO_ADDR};
use crate::memory::{GuestMemory, RamLayout};
use crate::zeropage::{e820_ram, InitrdPlacement};
use crate::{Error, Result};

const XEN_HVM_START_MAGIC: u32 = 0x336E_C578;
const START_INFO_SIZE: u64 = 56;
const MODLIST_ENTRY_SIZE: u64 = 32;
const MEMMAP_ENTRY_SIZE: u64 = 24;
const MEMMAP_TYPE_RAM: u32 = 1;

/// Writes `hvm_start_info` at PVH_INFO_ADDR, then the module list (the initrd) and the memory map.
pub fn write_start_info(
    mem: &GuestMemory,
    layout: &RamLayout,
    initrd: Option<InitrdPlacement>,
) -> Result<()> {
    let modlist_addr = PVH_INFO_ADDR + START_INFO_SIZE.next_multiple_of(16);
    let nr_modules = u32::from(initrd.is_some());
    let memmap_addr = modlist_addr + MODLIST_ENTRY_SIZE * u64::from(nr_modules);
    let map = e820_ram(layout);

    let mut info = Vec::with_capacity(START_INFO_SIZE as usize);
    info.extend_from_slice(&XEN_HVM_START_MAGIC.to_le_bytes());
    info.extend_from_slice(&1u32.to_le_bytes()); // version 1: has the memory map
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&nr_modules.to_le_bytes());
    info.extend_from_slice(&(if nr_modules > 0 { modlist_addr } else { 0 }).to_le_bytes());
    info.extend_from_slice(&CMDLINE_ADDR.to_le_bytes());
    info.extend_from_slice(&0u64.to_le_bytes()); // rsdp_paddr: no ACPI
    info.extend_from_slice(&memmap_addr.to_le_bytes());
    info.extend_from_slice(&(map.len() as u32).to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes());
    write(mem, PVH_INFO_ADDR, &info)?;

    if let Some(rd) = initrd {
        let mut entry = Vec::with_capacity(MODLIST_ENTRY_SIZE as usize);
        entry.extend_from_slice(&rd.addr.to_le_bytes());
        entry.extend_from_slice(&rd.size.to_le_bytes());
        entry.extend_from_slice(&0u64.to_le_bytes()); // the module's own command line: none
        entry.extend_from_slice(&0u64.to_le_bytes());
        write(mem, modlist_addr, &entry)?;
    }

    let mut table = Vec::with_capacity(map.len() * MEMMAP_ENTRY_SIZE as usize);
    for (addr, size) in map {
        table.extend_from_slice(&addr.to_le_bytes());
        table.extend_from_slice(&size.to_le_bytes());
        table.extend_from_slice(&MEMMAP_TYPE_RAM.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
    }
    write(mem, memmap_addr, &table)
}

fn write(mem: &GuestMemory, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|e| Error::guest_write(addr, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_points_at_cmdline_modules_and_memmap() {
        let layout = RamLayout::new(64).unwrap();
        let mem = layout.allocate().unwrap();
        let rd = InitrdPlacement {
            addr: 0x200_0000,
            size: 4096,
        };
        write_start_info(&mem, &layout, Some(rd)).unwrap();
        let magic: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
        let nr_modules: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDR + 12)).unwrap();
        let cmdline: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDR + 24)).unwrap();
        let memmap: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDR + 40)).unwrap();
        let entries: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDR + 48)).unwrap();
        let modlist: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDR + 16)).unwrap();
        let module_addr: u64 = mem.read_obj(GuestAddress(modlist)).unwrap();
        let second_ram: u64 = mem
            .read_obj(GuestAddress(memmap + MEMMAP_ENTRY_SIZE))
            .unwrap();
        assert_eq!(magic, XEN_HVM_START_MAGIC);
        assert_eq!(nr_modules, 1);
        assert_eq!(cmdline, CMDLINE_ADDR);
        assert_eq!(entries, 2);
        assert_eq!(module_addr, 0x200_0000);
        assert_eq!(second_ram, 0x10_0000);
    }
}
