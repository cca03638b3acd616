//! The local APIC's local interrupt pins, as a PC's firmware leaves them.

use kvm_ioctls::VcpuFd;

use crate::{Error, Result};

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn set_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// LINT0 delivers the legacy PIC's ExtINT, LINT1 delivers NMIs.
pub fn setup_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(|source| Error::Vcpu {
        what: "LAPIC state (read)",
        source,
    })?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
        let value = set_delivery_mode(u32::from_le_bytes(bytes), mode);
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            lapic.regs[offset + i] = b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(|source| Error::Vcpu {
        what: "LAPIC state",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_replaces_bits_8_to_10_only() {
        assert_eq!(set_delivery_mode(0x0001_0700, APIC_MODE_NMI), 0x0001_0400);
        assert_eq!(set_delivery_mode(0, APIC_MODE_EXTINT), 0x700);
    }
}
