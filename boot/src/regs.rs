//! Initial vCPU state: general registers, segment/control registers and the FPU.

use kvm_bindings::{kvm_fpu, kvm_regs};
use kvm_ioctls::VcpuFd;

use crate::gdt::{gdt, segment, CpuMode};
use crate::kernel::EntryPoint;
use crate::layout::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, PVH_INFO_ADDR, ZERO_PAGE_ADDR};
use crate::{Error, Result};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Bit 1 of RFLAGS is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// The CPU mode an entry point needs.
pub fn mode_for(entry: EntryPoint) -> CpuMode {
    match entry {
        EntryPoint::Linux64 { .. } => CpuMode::Long,
        EntryPoint::Pvh { .. } => CpuMode::Protected32,
    }
}

/// Points the boot vCPU at the kernel entry, in the mode the entry needs. `cr3` is the identity
/// map's root (used in long mode only).
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: EntryPoint, cr3: u64) -> Result<()> {
    let mode = mode_for(entry);
    let mut sregs = vcpu.get_sregs().map_err(|source| Error::Vcpu {
        what: "special registers (read)",
        source,
    })?;
    let table = gdt(mode);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&table) - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cs = segment(table[1], 1);
    let data = segment(table[2], 2);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(table[3], 3);

    let mut regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    match entry {
        EntryPoint::Linux64 { rip } => {
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.cr3 = cr3;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.efer |= EFER_LME | EFER_LMA;
            regs.rip = rip;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = ZERO_PAGE_ADDR;
        }
        EntryPoint::Pvh { eip } => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rip = eip;
            regs.rbx = PVH_INFO_ADDR;
        }
    }
    vcpu.set_sregs(&sregs).map_err(|source| Error::Vcpu {
        what: "special registers",
        source,
    })?;
    vcpu.set_regs(&regs).map_err(|source| Error::Vcpu {
        what: "registers",
        source,
    })
}

/// Default x87 and SSE control words, as after FNINIT / reset.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|source| Error::Vcpu {
        what: "FPU state",
        source,
    })
}
