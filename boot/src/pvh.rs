//! The PVH boot protocol's `hvm_start_info`, its memory map and module list, as linux-loader
//! defines and writes them.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::GuestAddress;

use crate::layout::{CMDLINE_ADDR, PVH_INFO_ADDR};
use crate::memory::{GuestMemory, RamLayout};
use crate::zeropage::{e820_ram, InitrdPlacement};
use crate::{Error, Result};

const XEN_HVM_START_MAGIC: u32 = 0x336E_C578;
const START_INFO_SIZE: u64 = std::mem::size_of::<hvm_start_info>() as u64;
const MODLIST_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_modlist_entry>() as u64;
#[cfg(test)]
const MEMMAP_ENTRY_SIZE: u64 = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
const MEMMAP_TYPE_RAM: u32 = 1;

/// Writes `hvm_start_info` at PVH_INFO_ADDR, then the module list (the initrd) and the memory map.
pub fn write_start_info(
    mem: &GuestMemory,
    layout: &RamLayout,
    initrd: Option<InitrdPlacement>,
) -> Result<()> {
    let modlist_addr = PVH_INFO_ADDR + START_INFO_SIZE.next_multiple_of(16);
    let modules: Vec<hvm_modlist_entry> = initrd
        .iter()
        .map(|rd| hvm_modlist_entry {
            paddr: rd.addr,
            size: rd.size,
            ..Default::default() // the module's own command line: none
        })
        .collect();
    let memmap_addr = modlist_addr + MODLIST_ENTRY_SIZE * modules.len() as u64;
    let memmap: Vec<hvm_memmap_table_entry> = e820_ram(layout)
        .into_iter()
        .map(|(addr, size)| hvm_memmap_table_entry {
            addr,
            size,
            type_: MEMMAP_TYPE_RAM,
            reserved: 0,
        })
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1, // has the memory map
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() { 0 } else { modlist_addr },
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: 0, // no ACPI
        memmap_paddr: memmap_addr,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
    params.set_sections(&memmap, GuestAddress(memmap_addr));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(modlist_addr));
    }
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| Error::guest_write(PVH_INFO_ADDR, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

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
