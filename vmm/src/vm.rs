//! Building the machine and running it to its end.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use boot::layout::{
    BOOT_MARKER_MMIO, IOAPIC_ADDR, IOAPIC_PINS, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, MMIO_GAP_END,
    SERIAL_IRQ,
};
use boot::{zeropage, EntryPoint, GuestMemory, RamLayout};
use devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::ioapic::{AbsentPic, IoApic, IOAPIC_SIZE};
use devices::markers::{BootTimer, DebugPort, BOOT_TIMER_LEN, DEBUG_PORT, DEBUG_PORT_LEN};
use devices::serial::{SerialDevice, COM1_BASE, COM1_LEN};
use devices::status_port::{StatusPort, STATUS_PORT, STATUS_PORT_LEN};
use devices::{Bus, StopReason};
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{kvm_enable_cap, kvm_userspace_memory_region, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::{Kvm, VmFd};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::console::{ConsoleInput, StopWatcher};
use crate::irq::KvmMsiRouter;
use crate::vcpu::{BootEntry, Vcpu};
use crate::virtio::VirtioBuilder;
use crate::{kvm, Error, Result, VmConfig};

const PIC_MASTER: u64 = 0x20;
const PIC_SLAVE: u64 = 0xa0;
const PIC_PORTS: u64 = 2;

/// Highest vCPU count the machine supports (the MP table's limit).
pub const MAX_VCPUS: u32 = boot::mptable::MAX_CPUS as u32;

pub(crate) type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Checks the parts of a configuration that need no KVM, so bad input fails first and fast.
pub fn validate(config: &VmConfig) -> Result<()> {
    if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
        return Err(Error::VcpuCount {
            requested: config.vcpus,
            max: MAX_VCPUS,
        });
    }
    RamLayout::new(config.memory_mib)?;
    let host = host_memory_mib();
    if host > 0 && config.memory_mib > host {
        return Err(Error::MemoryTooLarge {
            requested: config.memory_mib,
            host,
        });
    }
    Ok(())
}

fn host_memory_mib() -> u64 {
    // SAFETY: sysinfo only writes into the struct we pass.
    unsafe {
        let mut info: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut info) != 0 {
            return 0;
        }
        (info.totalram as u64).saturating_mul(u64::from(info.mem_unit)) >> 20
    }
}

/// Builds the VM described by `config`, runs it until it stops, and says why it stopped.
pub fn run(config: VmConfig) -> Result<StopReason> {
    validate(&config)?;
    let kvm = kvm::open()?;
    let max = MAX_VCPUS.min(kvm.get_max_vcpus() as u32);
    if config.vcpus > max {
        return Err(Error::VcpuCount {
            requested: config.vcpus,
            max,
        });
    }
    let layout = RamLayout::new(config.memory_mib)?;
    let mem = layout.allocate()?;
    let vm = Arc::new(create_vm(&kvm, &mem)?);

    let stop = config.stop.clone();
    let timeline = config.timeline.clone();
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(Error::setup("the serial irqfd"))?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .map_err(Error::kvm("connect the serial interrupt"))?;
    let input_drained = EventFd::new(EFD_NONBLOCK).map_err(Error::setup("the console"))?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        serial_irq,
        input_drained
            .try_clone()
            .map_err(Error::setup("the console"))?,
        config.console.output,
    )));

    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let buses = [
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
                config.vcpus as u8,
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
    for r in buses {
        r.map_err(|e| Error::setup("the device map")(std::io::Error::other(e)))?;
    }

    let mut events = EventManager::<Subscriber>::new()
        .map_err(|e| Error::setup("the event loop")(std::io::Error::other(format!("{e:?}"))))?;
    events.add_subscriber(Arc::new(Mutex::new(StopWatcher { stop: stop.clone() })));
    if let Some(fd) = config.console.input {
        events.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(
            fd,
            config.console.escape,
            serial.clone(),
            input_drained,
            stop.clone(),
        ))));
    }

    let mut cmdline = config.cmdline.clone();
    if !config.devices.is_empty() {
        let mut virtio = VirtioBuilder {
            vm: &vm,
            mem: &mem,
            mmio: &mut mmio,
            events: &mut events,
            cmdline: &mut cmdline,
            next_slot: layout.ranges().len() as u32,
            next_pmem_addr: VirtioBuilder::pmem_base(layout.end()),
            count: 0,
        };
        for device in &config.devices {
            virtio.add(device)?;
        }
        let n = config.devices.len();
        timeline.record(|| format!("devices ready ({n} virtio)"));
    }
    let (pio, mmio) = (Arc::new(pio), Arc::new(mmio));
    let entry = load_guest(
        &config.kernel,
        config.initrd.as_deref(),
        &cmdline,
        config.vcpus,
        &layout,
        &mem,
    )?;

    install_kick_handler()?;
    let base_cpuid = Arc::new(boot::cpuid::supported_with_emulated(&kvm)?);
    let filter = crate::seccomp::vcpu_filter()
        .map_err(|e| Error::setup("the vCPU seccomp filter")(std::io::Error::other(e)))?;
    let filter = Arc::new(filter);
    let host_is_kvm_pvm = crate::kvm::is_kvm_pvm();
    let mut vcpus = Vec::with_capacity(config.vcpus as usize);
    for index in 0..config.vcpus as u8 {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(Error::kvm("create a vCPU"))?;
        vcpus.push(Vcpu {
            index,
            count: config.vcpus as u8,
            fd,
            base_cpuid: base_cpuid.clone(),
            boot: (index == 0).then_some(entry),
            pio: pio.clone(),
            mmio: mmio.clone(),
            mem: mem.clone(),
            stop: stop.clone(),
            timeline: timeline.clone(),
            seccomp: filter.clone(),
            host_is_kvm_pvm,
        });
    }
    timeline.record(|| "vmm ready".into());
    let mut threads = Vec::with_capacity(vcpus.len());
    for vcpu in vcpus {
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{}", vcpu.index))
            .stack_size(256 << 10)
            .spawn(move || vcpu.run());
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.stop(StopReason::Failed(format!(
                    "cannot start a vCPU thread: {e}"
                )));
                break;
            }
        }
    }

    while !stop.is_stopping() {
        // The timeout is only a safety net: the stop eventfd wakes the loop.
        if let Err(e) = events.run_with_timeout(1000) {
            stop.stop(StopReason::Failed(format!("event loop failed: {e:?}")));
        }
    }
    let reason = stop.reason().unwrap_or(StopReason::UserQuit);
    timeline.record(|| format!("guest exit: {}", describe(&reason)));
    kick_and_join(threads);
    devices::bus::lock(&serial).flush();
    Ok(reason)
}

/// A short description of why the VM stopped, for the timeline.
pub fn describe(reason: &StopReason) -> String {
    match reason {
        StopReason::ExitStatus(s) => format!("status {s}"),
        StopReason::Reset => "reset".into(),
        StopReason::Shutdown => "shutdown".into(),
        StopReason::Failed(_) => "vmm error".into(),
        StopReason::UserQuit => "quit by the user".into(),
    }
}

/// The VM: LAPICs in the kernel, the IOAPIC in userspace (KVM's split irqchip), no PIT, no PIC.
///
/// Why split: creating KVM's in-kernel PIC and IOAPIC registers I/O devices whose RCU grace
/// periods cost 6-20 ms of VM set-up and teardown; the guest needs neither a PIT nor a PIC
/// (kvmclock, the TSC-deadline LAPIC timer, MP-table IOAPIC routing).
fn create_vm(kvm: &Kvm, mem: &GuestMemory) -> Result<VmFd> {
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
        // SAFETY: the region is a live mapping owned by `mem`, which the caller keeps for as long
        // as the VM runs; KVM only reads and writes guest RAM through it.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(Error::kvm("register guest memory"))?;
    }
    Ok(vm)
}

/// Loads kernel, initrd and boot structures; returns where the boot vCPU starts.
fn load_guest(
    kernel: &std::path::Path,
    initrd: Option<&std::path::Path>,
    cmdline: &str,
    vcpus: u32,
    layout: &RamLayout,
    mem: &GuestMemory,
) -> Result<BootEntry> {
    let kernel = boot::load_kernel(mem, kernel)?;
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

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// vCPU threads are kicked out of KVM_RUN with a real-time signal whose handler does nothing.
fn install_kick_handler() -> Result<()> {
    register_signal_handler(SIGRTMIN(), kick_handler)
        .map_err(|e| Error::setup("the vCPU kick signal")(std::io::Error::from(e)))
}

fn kick_and_join(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        // A kick can land just before the thread re-enters KVM_RUN and be lost: repeat it.
        while !t.is_finished() {
            let _ = t.kill(SIGRTMIN());
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = t.join();
    }
}
