//! Transmit: frames from the guest's tx queue to the tap, one `writev` each, header included.
//!
//! A chain that is not a well-formed frame (device-writable descriptors, addresses outside guest
//! memory, shorter than a header, longer than the largest frame) or whose header asks for an
//! offload the driver did not negotiate is dropped: it is returned as used and nothing is sent.

use super::active::{Active, Stats};
use super::features::{CSUM, HOST_TSO4, HOST_TSO6, HOST_UFO};
use super::tap::Tap;
use super::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, HDR_F_NEEDS_CSUM, HDR_LEN, MAX_BUFFER};
use crate::virtio::iovec::{IoVecs, Overflow};
use crate::virtio::queue::{drain, notify, Budget, Chain, Served};
use crate::virtio::GuestMemoryMmap;

/// Frames sent in one pass before the event loop gets a turn (receive must not starve).
pub const TX_BATCH: usize = 256;
const TX_BUDGET: Budget = Budget {
    chains: TX_BATCH,
    bytes: u64::MAX,
};

/// Why a transmit pass stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStop {
    /// The queue is empty (and the driver will notify when it adds more).
    Done,
    /// A batch is done with more frames waiting: come back soon.
    More,
    /// The driver broke the tx queue: the device needs a reset.
    Broken,
}

/// Whether the header of a guest frame asks only for what the driver negotiated.
pub fn header_ok(hdr: &[u8; HDR_LEN], acked: u64) -> bool {
    let (flags, gso_type) = (hdr[0], hdr[1]);
    if flags & !HDR_F_NEEDS_CSUM != 0 {
        return false;
    }
    if flags & HDR_F_NEEDS_CSUM != 0 && acked & CSUM == 0 {
        return false;
    }
    let needed = match gso_type {
        GSO_NONE => return true,
        GSO_TCPV4 => HOST_TSO4,
        GSO_TCPV6 => HOST_TSO6,
        GSO_UDP => HOST_UFO,
        // With GSO_ECN (HOST_ECN is not offered), or unknown.
        _ => return false,
    };
    let gso_size = u16::from_le_bytes([hdr[4], hdr[5]]);
    acked & needed != 0 && gso_size != 0
}

impl Active {
    /// Sends what the driver queued, up to a batch; interrupts the driver if it asked to be.
    pub fn process_tx(&mut self, tap: &Tap, stats: &mut Stats) -> TxStop {
        if self.broken {
            return TxStop::Broken;
        }
        let (mem, iov, acked) = (&self.mem, &mut self.tx_iov, self.acked);
        let result = drain(&mut self.tx_queue, mem, TX_BUDGET, |_, chain| {
            send_chain(chain, mem, iov, acked, tap, stats);
            Ok::<_, virtio_queue::Error>(Served::used(0, 0))
        })
        .and_then(|pass| {
            if pass.used {
                notify(&mut self.tx_queue, &self.mem, &self.interrupt)?;
            }
            Ok(pass)
        });
        match result {
            Ok(pass) if pass.more => TxStop::More,
            Ok(_) => TxStop::Done,
            Err(_) => {
                self.fail();
                TxStop::Broken
            }
        }
    }
}

/// Sends one chain as a frame, or drops it.
fn send_chain(
    chain: Chain<'_>,
    mem: &GuestMemoryMmap,
    iov: &mut IoVecs,
    acked: u64,
    tap: &Tap,
    stats: &mut Stats,
) {
    iov.clear();
    let len = match iov.push_chain(mem, chain, false, MAX_BUFFER, Overflow::Reject) {
        Ok((_, len)) if len >= HDR_LEN => len,
        _ => {
            stats.bad_chains += 1;
            stats.tx_dropped += 1;
            return;
        }
    };
    let mut hdr = [0u8; HDR_LEN];
    iov.read_at(iov.all(), 0, &mut hdr);
    if !header_ok(&hdr, acked) {
        stats.tx_dropped += 1;
        return;
    }
    // The tap checks the header again (gso sizes, checksum offsets) and refuses a bad one
    // with EINVAL: that frame is dropped.
    match tap.write_iov(iov.as_slice()) {
        Ok(_) => {
            stats.tx_frames += 1;
            stats.tx_bytes += (len - HDR_LEN) as u64;
        }
        Err(_) => stats.tx_dropped += 1,
    }
}
