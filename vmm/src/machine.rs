//! The pc-lite machine's fixed parts: the KVM VM with its RAM, the legacy devices on their buses,
//! and the guest's kernel, initrd and boot structures in memory.

use std::path::Path;
use std::sync::{Arc, Mutex};

use boot::layout::{
    BOOT_MARKER_MMIO, IOAPIC_ADDR, IOAPIC_PINS, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, MMIO_GAP_END,
    SERIAL_IRQ,
};
use boot::{zeropage, EntryPoint, GuestMemory, RamLayout};
use devices::console_out::ConsoleOut;
use devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::ioapic::{AbsentPic, IoApic, IOAPIC_SIZE};
use devices::markers::{BootTimer, DebugPort, BOOT_TIMER_LEN, DEBUG_PORT, DEBUG_PORT_LEN};
use devices::serial::{SerialDevice, COM1_BASE, COM1_LEN};
use devices::status_port::{StatusPort, STATUS_PORT, STATUS_PORT_LEN};
use devices::{Bus, StopSignal, Timeline};
use kvm_bindings::{kvm_enable_cap, kvm_userspace_memory_region, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::{Kvm, VmFd};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::irq::KvmMsiRouter;
use crate::vcpu::BootEntry;
use crate::{Error, Result};

const PIC_MASTER: u64 = 0x20;
const PIC_SLAVE: u64 = 0xa0;
const PIC_PORTS: u64 = 2;

/// The VM: LAPICs in the kernel, the IOAPIC in userspace (KVM's split irqchip), no PIT, no PIC.
///
/// Why split: creating KVM's in-kernel PIC and IOAPIC registers I/O devices whose RCU grace
/// periods cost 6-20 ms of VM set-up and teardown; the guest needs neither a PIT nor a PIC
/// (kvmclock, the TSC-deadline LAPIC timer, MP-table IOAPIC routing).
pub fn create_vm(kvm: &Kvm, mem: &GuestMemory) -> Result<VmFd> {
    let vm = kvm.create_vm().map_err(Error::kvm("create a VM"))?;
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(Error::kvm("set the TSS address"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
        .map_err(Error::kvm("set the identity map address"))?;
    let mut split = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        ..Default::default()
    };
    split.args[0] = u64::from(IOAPIC_PINS);
    vm.enable_cap(&split)
        .map_err(Error::kvm("create the split irqchip"))?;
    for (slot, (gpa, len, host)) in boot::memory::host_regions(mem).into_iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM keeps (its vCPUs and
        // devices hold clones) for as long as it runs; KVM only reads and writes guest RAM
        // through it.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(Error::kvm("register guest memory"))?;
    }
    Ok(vm)
}

/// The legacy devices, on the buses the vCPU threads serve.
pub struct Legacy {
    pub pio: Bus,
    pub mmio: Bus,
    pub serial: Arc<Mutex<SerialDevice>>,
    /// Signalled when the guest has drained the UART's receive FIFO (console input waits on it).
    pub input_drained: EventFd,
}

/// COM1, the i8042 reset line, the exit-status port, the boot markers, the absent PIC and the
/// IOAPIC, wired to `vm`.
pub fn legacy_devices(
    vm: &Arc<VmFd>,
    vcpus: u32,
    output: ConsoleOut,
    stop: &Arc<StopSignal>,
    timeline: &Arc<Timeline>,
) -> Result<Legacy> {
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(Error::setup("the serial irqfd"))?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .map_err(Error::kvm("connect the serial interrupt"))?;
    let input_drained = EventFd::new(EFD_NONBLOCK).map_err(Error::setup("the console"))?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        serial_irq,
        input_drained
            .try_clone()
            .map_err(Error::setup("the console"))?,
        output,
    )));

    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let inserted = [
        pio.insert(COM1_BASE, COM1_LEN, serial.clone()),
        pio.insert(
            I8042_BASE,
            I8042_LEN,
            Arc::new(Mutex::new(I8042::new(stop.clone()))),
        ),
        pio.insert(
            STATUS_PORT,
            STATUS_PORT_LEN,
            Arc::new(Mutex::new(StatusPort::new(stop.clone()))),
        ),
        pio.insert(
            DEBUG_PORT,
            DEBUG_PORT_LEN,
            Arc::new(Mutex::new(DebugPort::new(timeline.clone()))),
        ),
        pio.insert(PIC_MASTER, PIC_PORTS, Arc::new(Mutex::new(AbsentPic))),
        pio.insert(PIC_SLAVE, PIC_PORTS, Arc::new(Mutex::new(AbsentPic))),
        mmio.insert(
            IOAPIC_ADDR,
            IOAPIC_SIZE,
            Arc::new(Mutex::new(IoApic::new(
                vcpus as u8,
                Box::new(KvmMsiRouter(vm.clone())),
            ))),
        ),
        mmio.insert(
            BOOT_MARKER_MMIO,
            BOOT_TIMER_LEN,
            Arc::new(Mutex::new(BootTimer::new(
                BOOT_MARKER_MMIO,
                timeline.clone(),
            ))),
        ),
    ];
    for r in inserted {
        r.map_err(|e| Error::setup("the device map")(std::io::Error::other(e)))?;
    }
    Ok(Legacy {
        pio,
        mmio,
        serial,
        input_drained,
    })
}

/// Loads kernel, initrd and boot structures; returns where the boot vCPU starts.
#[allow(clippy::too_many_arguments)]
pub fn load_guest(
    kernel: &Path,
    share_kernel_pages: bool,
    initrd: Option<&Path>,
    cmdline: &str,
    vcpus: u32,
    layout: &RamLayout,
    mem: &GuestMemory,
) -> Result<BootEntry> {
    let path = kernel;
    let kernel = boot::load_kernel(mem, path)?;
    if let (true, Some(pages)) = (share_kernel_pages, &kernel.file_pages) {
        boot::kernel_share::share_kernel_pages(mem, path, pages)?;
    }
    let initrd = match initrd {
        Some(path) => {
            let limit = kernel
                .setup_header
                .map_or(MMIO_GAP_END, |h| u64::from(h.initrd_addr_max) + 1);
            Some(boot::initrd::load_initrd(
                mem, layout, path, kernel.end, limit,
            )?)
        }
        None => None,
    };
    zeropage::write_cmdline(mem, cmdline)?;
    boot::mptable::write_mptable(mem, vcpus as u8)?;
    let mode = boot::regs::mode_for(kernel.entry);
    boot::gdt::write_tables(mem, mode)?;
    let cr3 = match kernel.entry {
        EntryPoint::Linux64 { .. } => {
            zeropage::write_zero_page(mem, layout, kernel.setup_header, cmdline.len(), initrd)?;
            boot::paging::write_identity_map(mem)?
        }
        EntryPoint::Pvh { .. } => {
            boot::pvh::write_start_info(mem, layout, initrd)?;
            0
        }
    };
    Ok(BootEntry {
        entry: kernel.entry,
        cr3,
    })
}
