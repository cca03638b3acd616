//! The virtio-mmio transport, version 2 ("modern") registers (virtio 1.2, section 4.2.2).

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_mmio as mmio;
use virtio_queue::{Queue, QueueT};

use super::{
    GuestMemoryMmap, Interrupt, QueueContext, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use crate::bus::{lock, BusDevice};

const MAGIC_VALUE: u64 = mmio::VIRTIO_MMIO_MAGIC_VALUE as u64;
const VERSION: u64 = mmio::VIRTIO_MMIO_VERSION as u64;
const DEVICE_ID: u64 = mmio::VIRTIO_MMIO_DEVICE_ID as u64;
const VENDOR_ID: u64 = mmio::VIRTIO_MMIO_VENDOR_ID as u64;
const DEVICE_FEATURES: u64 = mmio::VIRTIO_MMIO_DEVICE_FEATURES as u64;
const DEVICE_FEATURES_SEL: u64 = mmio::VIRTIO_MMIO_DEVICE_FEATURES_SEL as u64;
const DRIVER_FEATURES: u64 = mmio::VIRTIO_MMIO_DRIVER_FEATURES as u64;
const DRIVER_FEATURES_SEL: u64 = mmio::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
const QUEUE_SEL: u64 = mmio::VIRTIO_MMIO_QUEUE_SEL as u64;
const QUEUE_NUM_MAX: u64 = mmio::VIRTIO_MMIO_QUEUE_NUM_MAX as u64;
const QUEUE_NUM: u64 = mmio::VIRTIO_MMIO_QUEUE_NUM as u64;
const QUEUE_READY: u64 = mmio::VIRTIO_MMIO_QUEUE_READY as u64;
const QUEUE_NOTIFY: u64 = mmio::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
const INTERRUPT_STATUS: u64 = mmio::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
const INTERRUPT_ACK: u64 = mmio::VIRTIO_MMIO_INTERRUPT_ACK as u64;
const STATUS: u64 = mmio::VIRTIO_MMIO_STATUS as u64;
const QUEUE_DESC_LOW: u64 = mmio::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
const QUEUE_DESC_HIGH: u64 = mmio::VIRTIO_MMIO_QUEUE_DESC_HIGH as u64;
const QUEUE_AVAIL_LOW: u64 = mmio::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
const QUEUE_AVAIL_HIGH: u64 = mmio::VIRTIO_MMIO_QUEUE_AVAIL_HIGH as u64;
const QUEUE_USED_LOW: u64 = mmio::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
const QUEUE_USED_HIGH: u64 = mmio::VIRTIO_MMIO_QUEUE_USED_HIGH as u64;
const SHM_SEL: u64 = mmio::VIRTIO_MMIO_SHM_SEL as u64;
const SHM_LEN_LOW: u64 = mmio::VIRTIO_MMIO_SHM_LEN_LOW as u64;
const SHM_BASE_HIGH: u64 = mmio::VIRTIO_MMIO_SHM_BASE_HIGH as u64;
const CONFIG_GENERATION: u64 = mmio::VIRTIO_MMIO_CONFIG_GENERATION as u64;
const CONFIG: u64 = mmio::VIRTIO_MMIO_CONFIG as u64;

/// Offset of QueueNotify: the VMM registers one ioeventfd per queue here, matching the index.
pub const NOTIFY_OFFSET: u64 = QUEUE_NOTIFY;

const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR: u32 = 0x4c54_4d56; // "VMTL"

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    use virtio_bindings::virtio_config as config;
    pub const ACKNOWLEDGE: u32 = config::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    pub const DRIVER: u32 = config::VIRTIO_CONFIG_S_DRIVER;
    pub const DRIVER_OK: u32 = config::VIRTIO_CONFIG_S_DRIVER_OK;
    pub const FEATURES_OK: u32 = config::VIRTIO_CONFIG_S_FEATURES_OK;
    pub const NEEDS_RESET: u32 = config::VIRTIO_CONFIG_S_NEEDS_RESET;
    pub const FAILED: u32 = config::VIRTIO_CONFIG_S_FAILED;
}
use status::*;

/// One virtio device behind the MMIO register window.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    device_type: u32,
    offered: u64,
    features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<Queue>,
    status: u32,
    active: bool,
}

impl MmioTransport {
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        let (device_type, offered, queues) = {
            let d = lock(&device);
            let queues = d
                .queue_max_sizes()
                .iter()
                // Queue::new only fails for a max size that is 0, above 32768 or not a power of
                // two: a device bug, so such a queue stays unusable (size 0) rather than panic.
                .map(|&max| Queue::new(max).unwrap_or_else(|_| Queue::new(1).expect("size 1")))
                .collect();
            (d.device_type(), d.features() | VIRTIO_F_VERSION_1, queues)
        };
        MmioTransport {
            device,
            mem,
            interrupt,
            device_type,
            offered,
            features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            status: 0,
            active: false,
        }
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue registers may change only between FEATURES_OK and DRIVER_OK, on a queue not ready.
    fn queue_writable(&self) -> bool {
        self.status & FEATURES_OK != 0 && self.status & DRIVER_OK == 0
    }

    fn device_status(&self) -> u32 {
        if self.interrupt.needs_reset() {
            self.status | NEEDS_RESET
        } else {
            self.status
        }
    }

    fn reset(&mut self) {
        if self.active {
            lock(&self.device).reset();
        }
        self.active = false;
        self.status = 0;
        self.features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.reset();
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver only ever adds bits; anything else is ignored.
        if value & self.status != self.status {
            return;
        }
        let mut value = value;
        let added = value & !self.status;
        if added & FEATURES_OK != 0 {
            let acceptable = self.driver_features & !self.offered == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0
                && self.status & DRIVER != 0;
            if !acceptable {
                value &= !FEATURES_OK;
            }
        }
        if added & DRIVER_OK != 0 {
            if value & FEATURES_OK == 0 || self.active {
                return;
            }
            self.status = value;
            self.activate();
            return;
        }
        self.status = value;
    }

    fn activate(&mut self) {
        let mem = &self.mem;
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        // The device gets its own copies of the queues; ours keep answering register reads.
        let queues: Option<Vec<Queue>> = self
            .queues
            .iter()
            .map(|q| {
                (q.ready() && q.is_valid(mem))
                    .then(|| Queue::try_from(q.state()).ok())
                    .flatten()
                    .map(|mut q| {
                        q.set_event_idx(event_idx);
                        q
                    })
            })
            .collect();
        let result = match queues {
            Some(queues) => lock(&self.device).activate(QueueContext {
                mem: self.mem.clone(),
                queues,
                interrupt: self.interrupt.clone(),
                acked_features: self.driver_features,
            }),
            None => Err(super::ActivateError::QueueNotReady(
                self.queues
                    .iter()
                    .position(|q| !(q.ready() && q.is_valid(mem)))
                    .unwrap_or(0),
            )),
        };
        match result {
            Ok(()) => self.active = true,
            Err(_) => self.interrupt.fail_device(),
        }
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            MAGIC_VALUE => MMIO_MAGIC,
            VERSION => MMIO_VERSION,
            DEVICE_ID => self.device_type,
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.features_sel {
                0 => self.offered as u32,
                1 => (self.offered >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt.status(),
            STATUS => self.device_status(),
            // No shared memory regions: length and base read as all ones.
            SHM_LEN_LOW..=SHM_BASE_HIGH => u32::MAX,
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let writable = self.queue_writable();
        match offset {
            DEVICE_FEATURES_SEL => self.features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES if self.status & DRIVER != 0 && self.status & FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ => {}
                }
            }
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM if writable => {
                if let Some(q) = self.selected_queue().filter(|q| !q.ready()) {
                    // An invalid size leaves the queue unusable; activation then fails.
                    q.set_size(value.min(u32::from(u16::MAX)) as u16);
                }
            }
            QUEUE_READY if writable => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_AVAIL_LOW | QUEUE_AVAIL_HIGH
            | QUEUE_USED_LOW | QUEUE_USED_HIGH
                if writable =>
            {
                if let Some(q) = self.selected_queue().filter(|q| !q.ready()) {
                    let (low, high) = if offset & 4 == 0 {
                        (Some(value), None)
                    } else {
                        (None, Some(value))
                    };
                    match offset & !4 {
                        QUEUE_DESC_LOW => q.set_desc_table_address(low, high),
                        QUEUE_AVAIL_LOW => q.set_avail_ring_address(low, high),
                        _ => q.set_used_ring_address(low, high),
                    }
                }
            }
            // Normally caught by the queue's ioeventfd in KVM; relay any that reach us.
            QUEUE_NOTIFY if self.active => {
                let d = lock(&self.device);
                if let Some(evt) = d.queue_events().get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            INTERRUPT_ACK => self.interrupt.ack(value),
            STATUS => self.set_status(value),
            SHM_SEL => {}
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            lock(&self.device).read_config(offset - CONFIG, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            // Registers are 32-bit wide and aligned; other accesses read as zero.
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_register(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG {
            if self.status & FAILED == 0 {
                lock(&self.device).write_config(offset - CONFIG, data);
            }
            return;
        }
        if let (Ok(bytes), 0) = (<[u8; 4]>::try_from(data), offset % 4) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::ActivateError;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    struct Dummy {
        events: Vec<EventFd>,
        activated: Option<QueueContext>,
        resets: u32,
        config: [u8; 8],
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn queue_events(&self) -> &[EventFd] {
            &self.events
        }
        fn features(&self) -> u64 {
            1 << 5
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            crate::virtio::read_config_bytes(&self.config, offset, data)
        }
        fn activate(&mut self, ctx: QueueContext) -> Result<(), ActivateError> {
            self.activated = Some(ctx);
            Ok(())
        }
        fn reset(&mut self) {
            self.activated = None;
            self.resets += 1;
        }
    }

    fn setup() -> (MmioTransport, Arc<Mutex<Dummy>>) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let dev = Arc::new(Mutex::new(Dummy {
            events: vec![EventFd::new(EFD_NONBLOCK).unwrap()],
            activated: None,
            resets: 0,
            config: *b"CONFIG!!",
        }));
        let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        (MmioTransport::new(dev.clone(), mem, irq), dev)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn negotiate(t: &mut MmioTransport, features_hi: u32) {
        w(t, STATUS, ACKNOWLEDGE);
        w(t, STATUS, ACKNOWLEDGE | DRIVER);
        w(t, DRIVER_FEATURES_SEL, 1);
        w(t, DRIVER_FEATURES, features_hi);
        w(t, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    }

    fn program_queue(t: &mut MmioTransport, size: u32) {
        w(t, QUEUE_SEL, 0);
        w(t, QUEUE_NUM, size);
        w(t, QUEUE_DESC_LOW, 0x1000);
        w(t, QUEUE_AVAIL_LOW, 0x2000);
        w(t, QUEUE_USED_LOW, 0x3000);
        w(t, QUEUE_READY, 1);
    }

    #[test]
    fn identifies_as_virtio_mmio_v2() {
        let (mut t, _) = setup();
        assert_eq!(r(&mut t, MAGIC_VALUE), MMIO_MAGIC);
        assert_eq!(r(&mut t, VERSION), 2);
        assert_eq!(r(&mut t, DEVICE_ID), 2);
        w(&mut t, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, DEVICE_FEATURES), 1);
        assert_eq!(r(&mut t, QUEUE_NUM_MAX), 16);
        w(&mut t, QUEUE_SEL, 7);
        assert_eq!(r(&mut t, QUEUE_NUM_MAX), 0);
    }

    #[test]
    fn full_handshake_activates_the_device() {
        let (mut t, dev) = setup();
        negotiate(&mut t, 1);
        assert_ne!(r(&mut t, STATUS) & FEATURES_OK, 0);
        program_queue(&mut t, 16);
        w(
            &mut t,
            STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
        let d = dev.lock().unwrap();
        let ctx = d.activated.as_ref().expect("activated");
        assert_eq!(ctx.queues[0].size(), 16);
        assert_eq!(ctx.acked_features, VIRTIO_F_VERSION_1);
    }

    #[test]
    fn features_without_version_1_are_refused() {
        let (mut t, _) = setup();
        negotiate(&mut t, 0);
        assert_eq!(r(&mut t, STATUS) & FEATURES_OK, 0);
    }

    #[test]
    fn features_not_offered_are_refused() {
        let (mut t, _) = setup();
        w(&mut t, STATUS, ACKNOWLEDGE | DRIVER);
        w(&mut t, DRIVER_FEATURES_SEL, 0);
        w(&mut t, DRIVER_FEATURES, 1 << 6);
        w(&mut t, DRIVER_FEATURES_SEL, 1);
        w(&mut t, DRIVER_FEATURES, 1);
        w(&mut t, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        assert_eq!(r(&mut t, STATUS) & FEATURES_OK, 0);
    }

    #[test]
    fn bad_queue_size_or_addresses_give_needs_reset_not_a_crash() {
        for (size, desc) in [
            (15u32, 0x1000u32),
            (16, 0xFFFF_F000),
            (0, 0x1000),
            (65535, 0),
        ] {
            let (mut t, dev) = setup();
            negotiate(&mut t, 1);
            program_queue(&mut t, size);
            w(&mut t, QUEUE_READY, 0);
            w(&mut t, QUEUE_DESC_LOW, desc);
            w(&mut t, QUEUE_DESC_HIGH, 7);
            w(&mut t, QUEUE_READY, 1);
            w(
                &mut t,
                STATUS,
                ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
            );
            assert!(dev.lock().unwrap().activated.is_none());
            assert_ne!(r(&mut t, STATUS) & NEEDS_RESET, 0);
            // A reset revives it.
            w(&mut t, STATUS, 0);
            assert_eq!(r(&mut t, STATUS), 0);
        }
    }

    #[test]
    fn driver_ok_without_features_ok_is_ignored() {
        let (mut t, dev) = setup();
        w(&mut t, STATUS, ACKNOWLEDGE | DRIVER);
        w(&mut t, STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
        assert!(dev.lock().unwrap().activated.is_none());
        assert_eq!(r(&mut t, STATUS), ACKNOWLEDGE | DRIVER);
    }

    #[test]
    fn reset_resets_an_active_device() {
        let (mut t, dev) = setup();
        negotiate(&mut t, 1);
        program_queue(&mut t, 8);
        w(
            &mut t,
            STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
        w(&mut t, STATUS, 0);
        let d = dev.lock().unwrap();
        assert!(d.activated.is_none());
        assert_eq!(d.resets, 1);
        drop(d);
        assert_eq!(r(&mut t, QUEUE_READY), 0);
    }

    #[test]
    fn queue_registers_are_frozen_after_driver_ok() {
        let (mut t, dev) = setup();
        negotiate(&mut t, 1);
        program_queue(&mut t, 8);
        w(
            &mut t,
            STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
        w(&mut t, QUEUE_READY, 0);
        assert_eq!(r(&mut t, QUEUE_READY), 1);
        assert!(dev.lock().unwrap().activated.is_some());
    }

    #[test]
    fn odd_sized_register_accesses_are_ignored_and_config_is_bounded() {
        let (mut t, _) = setup();
        let mut two = [0xAAu8; 2];
        t.read(MAGIC_VALUE, &mut two);
        assert_eq!(two, [0, 0]);
        t.write(STATUS, &[1]);
        assert_eq!(r(&mut t, STATUS), 0);
        let mut cfg = [0u8; 4];
        t.read(CONFIG + 6, &mut cfg);
        assert_eq!(&cfg, b"!!\0\0");
        t.read(u64::MAX, &mut cfg);
    }

    #[test]
    fn notify_reaching_the_transport_is_relayed_to_the_queue_event() {
        let (mut t, dev) = setup();
        negotiate(&mut t, 1);
        program_queue(&mut t, 8);
        w(
            &mut t,
            STATUS,
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK,
        );
        w(&mut t, QUEUE_NOTIFY, 0);
        w(&mut t, QUEUE_NOTIFY, 99);
        assert_eq!(dev.lock().unwrap().events[0].read().unwrap(), 1);
    }
}
