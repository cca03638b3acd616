//! Attaching virtio devices: MMIO window, interrupt line, queue ioeventfds, event loop, and the
//! kernel command-line entry that announces each one.

use std::sync::{Arc, Mutex};

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
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::vm::Subscriber;
use crate::{DeviceConfig, Error, Result};

pub struct VirtioBuilder<'a> {
    pub vm: &'a VmFd,
    pub mem: &'a GuestMemory,
    pub mmio: &'a mut Bus,
    pub events: &'a mut EventManager<Subscriber>,
    /// Kernel command line, to which each device's entry is appended.
    pub cmdline: &'a mut String,
    /// First KVM memory slot free for pmem regions.
    pub next_slot: u32,
    /// First guest address free for pmem regions (above RAM).
    pub next_pmem_addr: u64,
    pub count: u32,
}

impl VirtioBuilder<'_> {
    /// First guest address above RAM where pmem regions may go.
    pub fn pmem_base(ram_end: u64) -> u64 {
        ram_end.max(MMIO_GAP_END).next_multiple_of(pmem::ALIGNMENT)
    }

    pub fn add(&mut self, config: &DeviceConfig) -> Result<()> {
        match config.clone() {
            DeviceConfig::Block(c) => self.attach(Block::new(c)?),
            DeviceConfig::Net(c) => self.attach(Net::new(c)?),
            DeviceConfig::Vsock(c) => self.attach(Vsock::new(c)?),
            DeviceConfig::Pmem(c) => {
                let dev = Pmem::open(c, self.next_pmem_addr)?;
                self.map_pmem(&dev)?;
                self.attach(dev)
            }
        }
    }

    fn map_pmem(&mut self, dev: &Pmem) -> Result<()> {
        let m = dev.mapping();
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
        // SAFETY: the mapping is owned by the pmem device, which lives as long as the VM (the
        // event manager holds it until `run` returns, after the vCPUs are joined).
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(Error::kvm("map a pmem file into the guest"))?;
        self.next_slot += 1;
        self.next_pmem_addr = (m.guest_addr + m.len).next_multiple_of(pmem::ALIGNMENT);
        Ok(())
    }

    fn attach<D>(&mut self, device: D) -> Result<()>
    where
        D: VirtioDevice + MutEventSubscriber + Send + 'static,
    {
        let index = self.count;
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
        let transport = MmioTransport::new(
            device.clone(),
            self.mem.clone(),
            Arc::new(Interrupt::new(irqfd)),
        );
        self.mmio
            .insert(base, VIRTIO_MMIO_SIZE, Arc::new(Mutex::new(transport)))
            .map_err(|e| Error::setup("the device map")(std::io::Error::other(e)))?;
        self.events.add_subscriber(device);
        self.cmdline
            .push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{irq}"));
        self.count += 1;
        Ok(())
    }
}
