//! The receive buffers a virtio-net device has taken from its rx queue and not yet filled.

use std::collections::VecDeque;

use super::MAX_BUFFER;
use crate::virtio::iovec::{IoVecs, IOV_MAX};

/// One receive buffer (a descriptor chain) taken from the rx queue.
pub(super) struct RxChain {
    pub(super) head: u16,
    /// Number of iovecs it has in `RxBuffers::iov`.
    pub(super) iovs: usize,
    /// Bytes it holds (at most `MAX_BUFFER`).
    pub(super) len: usize,
}

/// Receive buffers taken from the rx queue and not yet used, in queue order.
pub struct RxBuffers {
    pub(super) chains: VecDeque<RxChain>,
    /// The iovecs of all chains, concatenated in order.
    pub(super) iov: IoVecs,
    /// Bytes in all chains.
    pub(super) capacity: usize,
}

impl RxBuffers {
    pub fn new() -> Self {
        RxBuffers {
            chains: VecDeque::with_capacity(usize::from(super::QUEUE_SIZE)),
            iov: IoVecs::with_capacity(IOV_MAX),
            capacity: 0,
        }
    }

    /// Enough buffers to receive any frame.
    pub(super) fn ready(&self, mrg: bool) -> bool {
        if mrg {
            self.capacity >= MAX_BUFFER
        } else {
            !self.chains.is_empty()
        }
    }

    /// The leading chains that together can take a largest frame (or the first chain only,
    /// without mergeable buffers): (number of chains, number of iovecs).
    pub(super) fn span(&self, mrg: bool) -> (usize, usize) {
        let (mut chains, mut iovs, mut bytes) = (0, 0, 0);
        for c in &self.chains {
            if iovs + c.iovs > IOV_MAX {
                break;
            }
            chains += 1;
            iovs += c.iovs;
            bytes += c.len;
            if !mrg || bytes >= MAX_BUFFER {
                break;
            }
        }
        (chains, iovs)
    }
}
