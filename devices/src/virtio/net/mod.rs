//! virtio-net backed by a TAP device.
//!
//! - [`device`]: the device state, its configuration space and the `VirtioDevice` impl.
//! - [`event_handler`]: the event-loop side (queue notifications, tap readiness, activation).
//! - [`rx`] / [`tx`]: moving frames from the tap to the guest and back.
//! - [`tap`]: the TAP backend (open or create, vnet header, offloads).
//!
//! Frames travel with a 12-byte `virtio_net_hdr_v1` in front, which the tap understands as is
//! (IFF_VNET_HDR with TUNSETVNETHDRSZ 12), so both directions move data with one `readv`/`writev`
//! straight between the tap and guest memory.

use virtio_bindings::virtio_net;

mod active;
mod device;
mod event_handler;
mod rx;
mod rx_buffers;
mod tap;
mod tx;

#[cfg(test)]
mod tests;

pub use device::Net;

/// How the VMM asks for a network interface.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// An existing TAP interface to attach to, or one to create (and remove at the end).
    pub tap: String,
    pub mac: Option<[u8; 6]>,
}

/// Feature bits (virtio 1.2, section 5.1.3).
pub mod features {
    use virtio_bindings::virtio_net as net;
    pub const CSUM: u64 = 1 << net::VIRTIO_NET_F_CSUM;
    pub const GUEST_CSUM: u64 = 1 << net::VIRTIO_NET_F_GUEST_CSUM;
    pub const MAC: u64 = 1 << net::VIRTIO_NET_F_MAC;
    pub const GUEST_TSO4: u64 = 1 << net::VIRTIO_NET_F_GUEST_TSO4;
    pub const GUEST_TSO6: u64 = 1 << net::VIRTIO_NET_F_GUEST_TSO6;
    pub const GUEST_UFO: u64 = 1 << net::VIRTIO_NET_F_GUEST_UFO;
    pub const HOST_TSO4: u64 = 1 << net::VIRTIO_NET_F_HOST_TSO4;
    pub const HOST_TSO6: u64 = 1 << net::VIRTIO_NET_F_HOST_TSO6;
    pub const HOST_UFO: u64 = 1 << net::VIRTIO_NET_F_HOST_UFO;
    pub const MRG_RXBUF: u64 = 1 << net::VIRTIO_NET_F_MRG_RXBUF;
    pub const STATUS: u64 = 1 << net::VIRTIO_NET_F_STATUS;
}

/// `struct virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
/// num_buffers.
pub const HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;
/// The largest Ethernet frame either way: a 64 KiB GSO frame with its headers.
pub const MAX_FRAME: usize = 65550;
/// The largest buffer a frame needs, header included.
pub const MAX_BUFFER: usize = HDR_LEN + MAX_FRAME;

/// Receive and transmit queue indices, and their size.
const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZE: u16 = 256;

const STATUS_LINK_UP: u16 = virtio_net::VIRTIO_NET_S_LINK_UP as u16;

/// Header flags and GSO types (virtio 1.2, section 5.1.6).
const HDR_F_NEEDS_CSUM: u8 = virtio_net::VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
const GSO_NONE: u8 = virtio_net::VIRTIO_NET_HDR_GSO_NONE as u8;
const GSO_TCPV4: u8 = virtio_net::VIRTIO_NET_HDR_GSO_TCPV4 as u8;
const GSO_UDP: u8 = virtio_net::VIRTIO_NET_HDR_GSO_UDP as u8;
const GSO_TCPV6: u8 = virtio_net::VIRTIO_NET_HDR_GSO_TCPV6 as u8;
