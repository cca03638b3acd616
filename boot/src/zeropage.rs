//! The Linux zero page (`struct boot_params`), its e820 map, and the command line.

use linux_loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use vm_memory::{Bytes, GuestAddress};

use crate::layout::{CMDLINE_ADDR, CMDLINE_MAX, HIMEM_START, LOW_RAM_END, ZERO_PAGE_ADDR};
use crate::memory::{GuestMemory, RamLayout};
use crate::{Error, Result};

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xAA55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// "Undefined" boot loader: we are not one of the registered ones.
const KERNEL_LOADER_OTHER: u8 = 0xFF;
/// Alignment a relocatable kernel loaded from an ELF image is told about.
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;

/// A RAM range of the e820 map: (start, length).
pub fn e820_ram(layout: &RamLayout) -> Vec<(u64, u64)> {
    let mut map = vec![(0, LOW_RAM_END)];
    let low_end = layout.low_end();
    if low_end > HIMEM_START {
        map.push((HIMEM_START, low_end - HIMEM_START));
    }
    map.extend(layout.ranges().iter().skip(1).copied());
    map
}

/// Writes the NUL-terminated command line where the boot structures point to it.
pub fn write_cmdline(mem: &GuestMemory, cmdline: &str) -> Result<()> {
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len() + 1,
            max: CMDLINE_MAX,
        });
    }
    if cmdline.contains('\0') {
        return Err(Error::CmdlineNul);
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| Error::guest_write(CMDLINE_ADDR, e))
}

/// Where the initrd was put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub addr: u64,
    pub size: u64,
}

/// Fills and writes the zero page for the Linux 64-bit boot protocol.
pub fn write_zero_page(
    mem: &GuestMemory,
    layout: &RamLayout,
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
) -> Result<()> {
    let mut params = boot_params::default();
    match header {
        Some(hdr) => params.hdr = hdr,
        None => params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES,
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some(rd) = initrd {
        params.hdr.ramdisk_image = rd.addr as u32;
        params.hdr.ramdisk_size = rd.size as u32;
        params.ext_ramdisk_image = (rd.addr >> 32) as u32;
        params.ext_ramdisk_size = (rd.size >> 32) as u32;
    }
    let map = e820_ram(layout);
    for (slot, &(addr, size)) in params.e820_table.iter_mut().zip(map.iter()) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = map.len().min(params.e820_table.len()) as u8;
    let params = BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR));
    LinuxBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| Error::guest_write(ZERO_PAGE_ADDR, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn e820_skips_the_legacy_hole_and_the_mmio_gap() {
        let layout = RamLayout::new(4096).unwrap();
        let map = e820_ram(&layout);
        assert_eq!(map[0], (0, LOW_RAM_END));
        assert_eq!(map[1], (HIMEM_START, 0xC000_0000 - HIMEM_START));
        assert_eq!(map[2], (0x1_0000_0000, (4096u64 << 20) - 0xC000_0000));
    }

    #[test]
    fn zero_page_points_at_cmdline_and_initrd() {
        let layout = RamLayout::new(64).unwrap();
        let mem = layout.allocate().unwrap();
        let rd = InitrdPlacement {
            addr: 0x300_0000,
            size: 0x1234,
        };
        write_zero_page(&mem, &layout, None, 10, Some(rd)).unwrap();
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
        assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
        assert_eq!({ params.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ params.hdr.ramdisk_size }, 0x1234);
        assert_eq!({ params.hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!(params.e820_entries, 2);
    }

    #[test]
    fn cmdline_longer_than_linux_accepts_is_refused() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let long = "x".repeat(CMDLINE_MAX);
        assert!(matches!(
            write_cmdline(&mem, &long),
            Err(Error::CmdlineTooLong { .. })
        ));
        write_cmdline(&mem, &"y".repeat(CMDLINE_MAX - 1)).unwrap();
    }
}
