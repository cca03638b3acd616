//! The virtio-blk device: its state, features, configuration space, activation and reset.

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::disk::Disk;
use super::request::{Handler, Stats};
use super::{
    features, BlockConfig, DISCARD_ALIGNMENT, MAX_DISCARD_SECTORS, MAX_DISCARD_SEGMENTS,
    MAX_WRITE_ZEROES_SECTORS, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SERIAL_LEN, SIZE_MAX,
};
use crate::virtio::{
    device_type, read_config_bytes, ActivateError, GuestMemoryMmap, Interrupt, QueueContext,
    VirtioDevice, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::{Error, Result};

/// `struct virtio_blk_config` up to the write-zeroes fields (no secure erase, no zones).
const CONFIG_LEN: usize = 60;

/// What the device holds between DRIVER_OK and reset.
pub(super) struct Active {
    pub mem: GuestMemoryMmap,
    pub queue: Queue,
    pub interrupt: Arc<Interrupt>,
}

pub struct Block {
    pub(super) handler: Handler,
    features: u64,
    config: [u8; CONFIG_LEN],
    pub(super) queue_events: [EventFd; 1],
    pub(super) active: Option<Active>,
}

impl Block {
    /// Opens the image (read-only when asked) and prepares the device; fails with a message a
    /// user can act on when the file cannot serve as a disk.
    pub fn new(config: BlockConfig) -> Result<Block> {
        let disk = Disk::open(&config.path, config.read_only)?;
        let serial_bytes = config.serial.as_bytes();
        if serial_bytes.len() > SERIAL_LEN {
            return Err(Error::Invalid(format!(
                "disk serial '{}' is longer than {SERIAL_LEN} bytes",
                config.serial
            )));
        }
        let mut serial = [0u8; SERIAL_LEN];
        serial[..serial_bytes.len()].copy_from_slice(serial_bytes);

        let discard = disk.can_punch() && !disk.read_only();
        let mut features = features::SIZE_MAX
            | features::SEG_MAX
            | features::BLK_SIZE
            | features::FLUSH
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC;
        if disk.read_only() {
            features |= features::RO;
        }
        if discard {
            features |= features::DISCARD | features::WRITE_ZEROES;
        }
        let config = config_space(disk.sectors(), discard);
        let queue_event = EventFd::new(EFD_NONBLOCK).map_err(|source| Error::Io {
            what: format!(
                "virtio-blk {}: cannot create an eventfd",
                disk.path().display()
            ),
            source,
        })?;
        let path = disk.path().to_path_buf();
        let handler = Handler::new(disk, serial, discard).map_err(|source| Error::Io {
            what: format!(
                "virtio-blk {}: cannot start its I/O threads",
                path.display()
            ),
            source,
        })?;
        Ok(Block {
            handler,
            features,
            config,
            queue_events: [queue_event],
            active: None,
        })
    }

    /// Size of the disk in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.handler.disk.sectors()
    }

    /// Request counters since the device was created.
    pub fn stats(&self) -> Stats {
        self.handler.stats
    }

    pub(super) fn queue_event(&self) -> &EventFd {
        &self.queue_events[0]
    }
}

fn config_space(sectors: u64, discard: bool) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let mut put = |offset: usize, bytes: &[u8]| {
        c[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(0, &sectors.to_le_bytes());
    put(8, &SIZE_MAX.to_le_bytes());
    put(12, &SEG_MAX.to_le_bytes());
    put(20, &(SECTOR_SIZE as u32).to_le_bytes());
    if discard {
        put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
        put(40, &(MAX_DISCARD_SEGMENTS as u32).to_le_bytes());
        put(44, &DISCARD_ALIGNMENT.to_le_bytes());
        put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        put(52, &(MAX_DISCARD_SEGMENTS as u32).to_le_bytes());
        put(56, &[1]);
    }
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    // The configuration space is read-only (no CONFIG_WCE): writes are ignored.

    fn activate(&mut self, ctx: QueueContext) -> std::result::Result<(), ActivateError> {
        let mut queues = ctx.queues.into_iter();
        let (Some(queue), None) = (queues.next(), queues.next()) else {
            return Err(ActivateError::QueueNotReady(0));
        };
        self.active = Some(Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
        });
        // Serve whatever the driver made available before its first notification.
        let _ = self.queue_events[0].write(1);
        Ok(())
    }

    fn reset(&mut self) {
        // The driver takes its buffers back: no worker may write them after this returns.
        self.handler.quiesce();
        self.active = None;
    }
}
