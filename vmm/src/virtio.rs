//! Attaching virtio devices: MMIO window, interrupt line, queue ioeventfds, and the handles the VM
//! keeps. Attaching needs no part of the VM that only exists before it starts (the MMIO bus is
//! shared behind a lock, the device's event-loop subscriber is handed back to the caller), so the
//! same path can attach a device to a running VM.

use std::sync::{Arc, Mutex, RwLock};

use boot::layout::{
    IOAPIC_PINS, MMIO_GAP_END, VIRTIO_IRQ_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE,
};
use boot::GuestMemory;
use devices::virtio::block::Block;
use devices::virtio::mmio::{MmioTransport, NOTIFY_OFFSET};
use devices::virtio::net::Net;
use devices::virtio::pmem::{self, Pmem};
use devices::virtio::vsock::Vsock;
use devices::virtio::{Interrupt, VirtioDevice};
use devices::Bus;
use event_manager::MutEventSubscriber;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::event_loop::Subscriber;
use crate::{DeviceConfig, Error, Result};

/// A virtio device attached to the VM, with the handles the VM keeps for its whole life.
pub struct AttachedDevice {
    config: DeviceConfig,
    mmio_base: u64,
    irq: u32,
    device: Arc<Mutex<dyn VirtioDevice>>,
    transport: Arc<Mutex<MmioTransport>>,
}

impl AttachedDevice {
    /// What it was attached from.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Guest-physical address of its 4 KiB MMIO window.
    pub fn mmio_base(&self) -> u64 {
        self.mmio_base
    }

    /// Its IOAPIC pin (= GSI).
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// The kernel command-line entry that announces it to Linux.
    pub fn cmdline_entry(&self) -> String {
        format!("virtio_mmio.device=4K@{:#x}:{}", self.mmio_base, self.irq)
    }

    /// The device model (shared with its transport and its event-loop subscriber).
    pub fn device(&self) -> &Arc<Mutex<dyn VirtioDevice>> {
        &self.device
    }

    /// Its virtio-mmio transport, as the guest's MMIO accesses reach it.
    pub fn transport(&self) -> &Arc<Mutex<MmioTransport>> {
        &self.transport
    }
}

/// Where the next virtio device goes, and the devices attached so far.
pub struct VirtioSlots {
    vm: Arc<VmFd>,
    mem: GuestMemory,
    mmio: Arc<RwLock<Bus>>,
    /// First KVM memory slot free for pmem regions.
    next_slot: u32,
    /// First guest address free for pmem regions (above RAM).
    next_pmem_addr: u64,
    /// The pmem regions mapped so far, in bytes (KVM's cost grows with it: `host_budget`).
    pmem_bytes: u64,
    attached: Vec<AttachedDevice>,
}

impl VirtioSlots {
    /// Slots for a VM whose RAM uses KVM memory slots below `first_free_slot` and ends at
    /// `ram_end`.
    pub fn new(
        vm: Arc<VmFd>,
        mem: GuestMemory,
        mmio: Arc<RwLock<Bus>>,
        first_free_slot: u32,
        ram_end: u64,
    ) -> Self {
        VirtioSlots {
            vm,
            mem,
            mmio,
            next_slot: first_free_slot,
            next_pmem_addr: ram_end.max(MMIO_GAP_END).next_multiple_of(pmem::ALIGNMENT),
            pmem_bytes: 0,
            attached: Vec::new(),
        }
    }

    pub fn attached(&self) -> &[AttachedDevice] {
        &self.attached
    }

    /// Attaches the device `config` describes at the next free window. Returns the device's
    /// event-loop subscriber: the caller registers it with the loop that serves the VM.
    pub fn attach(&mut self, config: &DeviceConfig) -> Result<Subscriber> {
        match config.clone() {
            DeviceConfig::Block(c) => self.attach_device(config, Block::new(c)?),
            DeviceConfig::Net(c) => self.attach_device(config, Net::new(c)?),
            DeviceConfig::Vsock(c) => self.attach_device(config, Vsock::new(c)?),
            DeviceConfig::Pmem(c) => {
                let dev = Pmem::open(c, self.next_pmem_addr)?;
                self.map_pmem(&dev)?;
                self.attach_device(config, dev)
            }
        }
    }

    fn map_pmem(&mut self, dev: &Pmem) -> Result<()> {
        let m = dev.mapping();
        let pmem_bytes = self.pmem_bytes.saturating_add(m.len);
        crate::host_budget::check_pmem(pmem_bytes)?;
        let region = kvm_userspace_memory_region {
            slot: self.next_slot,
            guest_phys_addr: m.guest_addr,
            memory_size: m.len,
            userspace_addr: m.host_addr,
            // Writable even for a read-only pmem: its mapping is private, so guest writes stay in
            // the VMM's copy-on-write pages and never reach the file. A KVM_MEM_READONLY slot
            // would turn every guest store into an MMIO exit the bus drops, and the guest's
            // (DAX) file system would see its own writes vanish.
            flags: 0,
        };
        // SAFETY: the mapping is owned by the pmem device, which lives as long as the VM: these
        // slots keep it in `attached`, and the VM drops them only after its vCPUs are joined.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(Error::kvm("map a pmem file into the guest"))?;
        self.next_slot += 1;
        self.pmem_bytes = pmem_bytes;
        self.next_pmem_addr = (m.guest_addr + m.len).next_multiple_of(pmem::ALIGNMENT);
        Ok(())
    }

    fn attach_device<D>(&mut self, config: &DeviceConfig, device: D) -> Result<Subscriber>
    where
        D: VirtioDevice + MutEventSubscriber + Send + 'static,
    {
        let index = self.attached.len() as u32;
        let irq = VIRTIO_IRQ_BASE + index;
        if irq >= IOAPIC_PINS {
            return Err(Error::TooManyDevices(index as usize + 1));
        }
        let base = VIRTIO_MMIO_BASE + u64::from(index) * VIRTIO_MMIO_SIZE;
        let irqfd = EventFd::new(EFD_NONBLOCK).map_err(Error::setup("a virtio irqfd"))?;
        self.vm
            .register_irqfd(&irqfd, irq)
            .map_err(Error::kvm("connect a virtio interrupt"))?;
        for (queue, evt) in device.queue_events().iter().enumerate() {
            self.vm
                .register_ioevent(
                    evt,
                    &IoEventAddress::Mmio(base + NOTIFY_OFFSET),
                    queue as u32,
                )
                .map_err(Error::kvm("register a virtio queue notifier"))?;
        }
        let device = Arc::new(Mutex::new(device));
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device.clone(),
            self.mem.clone(),
            Arc::new(Interrupt::new(irqfd)),
        )));
        self.mmio
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(base, VIRTIO_MMIO_SIZE, transport.clone())
            .map_err(|e| Error::setup("the device map")(std::io::Error::other(e)))?;
        self.attached.push(AttachedDevice {
            config: config.clone(),
            mmio_base: base,
            irq,
            device: device.clone(),
            transport,
        });
        Ok(device)
    }
}
