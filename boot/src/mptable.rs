//! An Intel MultiProcessor Specification 1.4 table, so Linux finds every vCPU and the IOAPIC
//! without ACPI.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{APIC_ADDR, EBDA_START, IOAPIC_ADDR, IOAPIC_PINS};
use crate::memory::GuestMemory;
use crate::{Error, Result};

/// Highest vCPU count: APIC IDs 0..count-1, and the IOAPIC takes ID `count`, below 0xFF.
pub const MAX_CPUS: u8 = 254;

const MPC_SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
/// Family 6, as a generic modern x86 CPU.
const CPU_SIGNATURE: u32 = 0x600;
/// CPUID.1:EDX FPU and APIC.
const CPU_FEATURES: u32 = 0x201;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_BUS_ID: u8 = 0;
const ALL_LOCAL_APICS: u8 = 0xFF;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The floating pointer and the configuration table, as bytes to place at `addr`.
fn build(addr: u64, cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS as u8 {
        // Polarity and trigger "conform to the bus": edge, active high on ISA.
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_TYPE_INT, 0, 0, ISA_BUS_ID, pin]);
        entries.extend_from_slice(&[ioapic_id, pin]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, ISA_BUS_ID, 0]);
    entries.extend_from_slice(&[ALL_LOCAL_APICS, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, ISA_BUS_ID, 0]);
    entries.extend_from_slice(&[ALL_LOCAL_APICS, 1]);
    count += 2;

    const FLOATING_SIZE: usize = 16;
    const HEADER_SIZE: usize = 44;
    let table_addr = addr + FLOATING_SIZE as u64;
    let mut table = Vec::with_capacity(HEADER_SIZE + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((HEADER_SIZE + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[MPC_SPEC_REV, 0]); // checksum patched below
    table.extend_from_slice(b"VMCTL   ");
    table.extend_from_slice(b"PC-LITE     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_ADDR as u32).to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(FLOATING_SIZE + table.len());
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(table_addr as u32).to_le_bytes());
    floating.extend_from_slice(&[1, MPC_SPEC_REV, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);
    floating.extend_from_slice(&table);
    floating
}

/// Writes the MP table where Linux looks for it (the start of the EBDA).
pub fn write_mptable(mem: &GuestMemory, cpus: u8) -> Result<()> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(cpus));
    }
    mem.write_slice(&build(EBDA_START, cpus), GuestAddress(EBDA_START))
        .map_err(|e| Error::guest_write(EBDA_START, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_zero() {
        let bytes = build(EBDA_START, 4);
        assert_eq!(&bytes[0..4], b"_MP_");
        assert_eq!(bytes[..16].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let len = u16::from_le_bytes([bytes[20], bytes[21]]) as usize;
        assert_eq!(&bytes[16..20], b"PCMP");
        assert_eq!(len, bytes.len() - 16);
        assert_eq!(bytes[16..].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    }

    #[test]
    fn lists_every_cpu_with_the_first_as_boot_processor() {
        let bytes = build(EBDA_START, 3);
        let entries = &bytes[16 + 44..];
        for cpu in 0..3usize {
            let e = &entries[cpu * 20..cpu * 20 + 20];
            assert_eq!(e[0], ENTRY_PROCESSOR);
            assert_eq!(e[1], cpu as u8);
            assert_eq!(e[3] & CPU_BOOT_PROCESSOR != 0, cpu == 0);
        }
        let count = u16::from_le_bytes([bytes[16 + 34], bytes[16 + 35]]);
        assert_eq!(count, 3 + 1 + 1 + IOAPIC_PINS as u16 + 2);
    }

    #[test]
    fn refuses_zero_and_too_many_cpus() {
        let mem = crate::memory::RamLayout::new(16)
            .unwrap()
            .allocate()
            .unwrap();
        assert!(write_mptable(&mem, 0).is_err());
        assert!(write_mptable(&mem, 255).is_err());
        write_mptable(&mem, 254).unwrap();
    }
}
