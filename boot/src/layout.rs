//! Guest physical memory map of the pc-lite machine (see docs/design.md).

/// GDT, read by the CPU while it enters the kernel.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT: nothing may fault before the kernel installs its own.
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info`, followed by its memory map.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack for the 64-bit entry; the kernel switches to its own at once.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 of the boot identity map.
pub const PML4_ADDR: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPT_ADDR: u64 = 0xA000;
/// First of the page directories (one per GiB mapped).
pub const PD_ADDR: u64 = 0xB000;
/// GiB of address space identity-mapped at boot (the low RAM, the MMIO gap, the LAPIC).
pub const IDENTITY_MAP_GIB: u64 = 4;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Linux's x86 COMMAND_LINE_SIZE, including the terminating NUL.
pub const CMDLINE_MAX: usize = 2048;
/// Start of the extended BIOS data area: the MP table goes here, where Linux scans for it.
pub const EBDA_START: u64 = 0x9FC00;
/// End of conventional memory seen by the guest as RAM.
pub const LOW_RAM_END: u64 = EBDA_START;
/// Where "high" memory, and the kernel, starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap: RAM above this continues at 4 GiB.
pub const MMIO_GAP_START: u64 = 0xC000_0000;
/// End of the 32-bit MMIO gap.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Firecracker's boot timer: a 1-byte MMIO write of 123 here marks "boot done".
pub const BOOT_MARKER_MMIO: u64 = 0xC000_0000;
/// First virtio-mmio device; each takes one 4 KiB page.
pub const VIRTIO_MMIO_BASE: u64 = 0xD000_0000;
/// Size of one virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// KVM's three-page TSS region and its identity-map page, both in the gap.
pub const KVM_TSS_ADDR: u64 = 0xFFFB_D000;
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xFFFB_C000;
/// IOAPIC registers (in-kernel irqchip).
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
/// LAPIC registers (in-kernel irqchip).
pub const APIC_ADDR: u64 = 0xFEE0_0000;
/// Pins of the in-kernel IOAPIC.
pub const IOAPIC_PINS: u32 = 24;
/// COM1's interrupt line.
pub const SERIAL_IRQ: u32 = 4;
/// First interrupt line given to virtio-mmio devices.
pub const VIRTIO_IRQ_BASE: u32 = 5;

/// What vmctl writes into low memory before the kernel runs, as (name, start, end): an ELF
/// kernel whose segments land on any of these would be overwritten by them, or overwrite them.
pub const BOOT_STRUCTURES: [(&str, u64, u64); 8] = [
    ("GDT", GDT_ADDR, IDT_ADDR),
    ("IDT", IDT_ADDR, IDT_ADDR + 8),
    ("PVH start info", PVH_INFO_ADDR, ZERO_PAGE_ADDR),
    ("zero page", ZERO_PAGE_ADDR, ZERO_PAGE_ADDR + 0x1000),
    ("boot stack", ZERO_PAGE_ADDR + 0x1000, PML4_ADDR),
    (
        "boot page tables",
        PML4_ADDR,
        PD_ADDR + IDENTITY_MAP_GIB * 0x1000,
    ),
    (
        "kernel command line",
        CMDLINE_ADDR,
        CMDLINE_ADDR + CMDLINE_MAX as u64,
    ),
    // The MP table grows with the vCPU count (20 bytes each): the whole EBDA and legacy hole.
    ("MP table", EBDA_START, HIMEM_START),
];
