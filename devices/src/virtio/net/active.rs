//! What an activated virtio-net device holds, shared by its receive and transmit paths.

use std::sync::Arc;

use virtio_queue::Queue;

use super::features::MRG_RXBUF;
use super::rx_buffers::RxBuffers;
use crate::virtio::iovec::IoVecs;
use crate::virtio::{GuestMemoryMmap, Interrupt};

/// Counters, for tests and debugging.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames the tap had for the guest that could not be delivered.
    pub rx_dropped: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Guest frames refused (bad chain or header) or refused by the tap.
    pub tx_dropped: u64,
    /// Chains refused for their shape (direction, addresses, lengths).
    pub bad_chains: u64,
}

/// The state of an activated device.
pub(super) struct Active {
    pub mem: GuestMemoryMmap,
    pub rx_queue: Queue,
    pub tx_queue: Queue,
    pub interrupt: Arc<Interrupt>,
    pub acked: u64,
    /// Receive buffers taken from the rx queue, not yet used.
    pub rx: RxBuffers,
    /// Scratch list for the frame being transmitted.
    pub tx_iov: IoVecs,
    /// The driver broke a queue: the device waits for a reset.
    pub broken: bool,
}

impl Active {
    pub fn mrg_rxbuf(&self) -> bool {
        self.acked & MRG_RXBUF != 0
    }

    /// The driver broke a queue: stop and ask for a reset.
    pub fn fail(&mut self) {
        self.broken = true;
        self.interrupt.fail_device();
    }
}
