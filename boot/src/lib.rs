//! x86_64 direct kernel boot for the pc-lite machine.
//!
//! Everything needed to enter a Linux kernel (or a tiny test guest) without firmware: loading the
//! image (ELF vmlinux with or without the PVH note, bzImage), the zero page or PVH start info with
//! the e820 map, the command line and initrd, identity page tables, the GDT, the initial
//! registers, CPUID, MSRs, the LAPIC's local interrupts and an MP table so SMP works without ACPI.

pub mod cpuid;
mod error;
pub mod gdt;
pub mod initrd;
pub mod kernel;
pub mod kernel_share;
pub mod lapic;
pub mod layout;
pub mod memory;
pub mod mptable;
pub mod msrs;
pub mod paging;
pub mod pvh;
pub mod regs;
pub mod zeropage;

pub use error::{Error, Result};
pub use kernel::{load_kernel, EntryPoint, LoadedKernel};
pub use memory::{GuestMemory, RamLayout};
