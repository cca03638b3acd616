//! virtio 1.x over MMIO: the transport, and one folder per device.
//!
//! Threads: the transport's registers are accessed from vCPU threads (MMIO exits); queue
//! notifications arrive on ioeventfds and are served by each device in the VMM's event loop.
//! A device is shared between the two as `Arc<Mutex<D>>`; the transport only touches it for
//! configuration, feature negotiation, activation and reset.

pub mod block;
mod device;
mod interrupt;
pub mod iovec;
pub mod mmio;
pub mod net;
pub mod pmem;
pub mod queue;
#[cfg(test)]
pub(crate) mod test_queue;
pub mod vsock;

pub use device::{ActivateError, QueueContext, VirtioDevice};
pub use interrupt::Interrupt;
pub use mmio::MmioTransport;
use virtio_bindings::{virtio_config, virtio_ring};

/// Guest memory as devices see it.
pub type GuestMemoryMmap = guest_memory::GuestMemory;

/// The device follows virtio 1.x (mandatory for MMIO version 2).
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;
/// The driver may use indirect descriptor tables.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
/// used_event / avail_event notification suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// Device IDs (virtio 1.2, section 5).
pub mod device_type {
    use virtio_bindings::virtio_ids as ids;
    pub const NET: u32 = ids::VIRTIO_ID_NET;
    pub const BLOCK: u32 = ids::VIRTIO_ID_BLOCK;
    pub const VSOCK: u32 = ids::VIRTIO_ID_VSOCK;
    pub const PMEM: u32 = ids::VIRTIO_ID_PMEM;
}

/// Copies the part of `config` at `offset` into `data`; bytes past the end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_are_bounded() {
        let config = [1u8, 2, 3, 4];
        let mut d = [0xffu8; 4];
        read_config_bytes(&config, 2, &mut d);
        assert_eq!(d, [3, 4, 0, 0]);
        read_config_bytes(&config, 100, &mut d);
        assert_eq!(d, [0; 4]);
        read_config_bytes(&config, u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
