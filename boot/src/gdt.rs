//! The boot GDT and the segment registers derived from it.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress};

use crate::layout::{GDT_ADDR, IDT_ADDR};
use crate::memory::GuestMemory;
use crate::{Error, Result};

/// Which mode the vCPU starts in decides the code segment's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// 64-bit code segment (Linux 64-bit boot protocol).
    Long,
    /// 32-bit flat protected mode (PVH).
    Protected32,
}

/// Packs a GDT descriptor from flags (access byte in bits 0-7, flags in 12-15), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The GDT: null, code, data, TSS (selectors 0x8, 0x10, 0x18).
pub fn gdt(mode: CpuMode) -> [u64; 4] {
    match mode {
        CpuMode::Long => [
            0,
            gdt_entry(0xa09b, 0, 0xfffff),
            gdt_entry(0xc093, 0, 0xfffff),
            gdt_entry(0x808b, 0, 0xfffff),
        ],
        CpuMode::Protected32 => [
            0,
            gdt_entry(0xc09b, 0, 0xffff_ffff),
            gdt_entry(0xc093, 0, 0xffff_ffff),
            gdt_entry(0x008b, 0, 0x67),
        ],
    }
}

/// Decodes a descriptor into the segment register KVM loads.
pub fn segment(entry: u64, table_index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let mut limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    if g == 1 {
        limit = (limit << 12) | 0xfff;
    }
    kvm_segment {
        base,
        limit,
        selector: u16::from(table_index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: u8::from(((entry >> 47) & 1) == 0),
    }
}

/// Writes the GDT and an empty IDT into guest memory.
pub fn write_tables(mem: &GuestMemory, mode: CpuMode) -> Result<()> {
    let bytes: Vec<u8> = gdt(mode).iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(GDT_ADDR))
        .map_err(|e| Error::guest_write(GDT_ADDR, e))?;
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(|e| Error::guest_write(IDT_ADDR, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_code_segment_decodes() {
        let cs = segment(gdt(CpuMode::Long)[1], 1);
        assert_eq!(cs.selector, 0x8);
        assert_eq!(cs.l, 1);
        assert_eq!(cs.db, 0);
        assert_eq!(cs.present, 1);
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
    }

    #[test]
    fn protected_mode_code_segment_is_32_bit_flat() {
        let cs = segment(gdt(CpuMode::Protected32)[1], 1);
        assert_eq!(cs.db, 1);
        assert_eq!(cs.l, 0);
        assert_eq!(cs.base, 0);
        assert_eq!(cs.limit, 0xffff_ffff);
    }

    #[test]
    fn tss_is_not_unusable() {
        let tr = segment(gdt(CpuMode::Long)[3], 3);
        assert_eq!(tr.unusable, 0);
        assert_eq!(tr.type_, 0xb);
    }
}
