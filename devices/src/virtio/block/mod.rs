//! virtio-blk backed by a raw image file.
//!
//! - [`device`]: the device state, its configuration space and the `VirtioDevice` impl.
//! - [`event_handler`]: the event-loop side: queue notifications, draining the queue.
//! - [`chain`]: a descriptor chain checked (directions, addresses, sizes) and mapped to iovecs.
//! - [`request`]: a request's header decoded, checked against the disk and carried out.
//! - [`disk`]: the raw image backend (`preadv`/`pwritev`, `fdatasync`, `fallocate`).
//!
//! Requests are served synchronously in the VMM's event-loop thread, in queue order, with data
//! moved by one `preadv`/`pwritev` between the image and guest memory (no copy, no allocation
//! per request). The image goes through the host page cache; FLUSH is `fdatasync`.

mod chain;
mod device;
mod disk;
mod event_handler;
mod io_pool;
mod request;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use device::Block;

/// How the VMM asks for a disk.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// Returned by VIRTIO_BLK_T_GET_ID (at most 20 bytes).
    pub serial: String,
}

const SECTOR_SHIFT: u32 = 9;
const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
/// VIRTIO_BLK_ID_BYTES.
const SERIAL_LEN: usize = 20;

/// The one request queue and its size.
const QUEUE_SIZE: u16 = 256;
/// Data segments per request the driver may use (`seg_max`): the queue size less the header and
/// status descriptors, so a request fits the ring even without indirect descriptors.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest data segment (`size_max`).
const SIZE_MAX: u32 = 1 << 20;
/// Largest read or write: what a driver that honours `seg_max` and `size_max` can send (Linux
/// sends at most 1.25 MiB unless told otherwise); anything larger fails.
const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// Ranges per DISCARD / WRITE_ZEROES request, and sectors per range.
const MAX_DISCARD_SEGMENTS: usize = 32;
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 22;
/// Discard granularity in sectors (4 KiB: the page and block size of the usual host file system).
const DISCARD_ALIGNMENT: u32 = 8;

/// Feature bits (virtio 1.2, 5.2.3).
pub mod features {
    use virtio_bindings::virtio_blk as blk;
    pub const SIZE_MAX: u64 = 1 << blk::VIRTIO_BLK_F_SIZE_MAX;
    pub const SEG_MAX: u64 = 1 << blk::VIRTIO_BLK_F_SEG_MAX;
    pub const RO: u64 = 1 << blk::VIRTIO_BLK_F_RO;
    pub const BLK_SIZE: u64 = 1 << blk::VIRTIO_BLK_F_BLK_SIZE;
    pub const FLUSH: u64 = 1 << blk::VIRTIO_BLK_F_FLUSH;
    pub const DISCARD: u64 = 1 << blk::VIRTIO_BLK_F_DISCARD;
    pub const WRITE_ZEROES: u64 = 1 << blk::VIRTIO_BLK_F_WRITE_ZEROES;
}
