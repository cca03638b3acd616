//! Receive: frames from the tap into the guest's receive buffers.
//!
//! Buffers are taken from the rx queue ahead of need and kept, already checked and turned into
//! iovecs, in [`RxBuffers`]. Each frame is read with one `readv` straight into them: with
//! VIRTIO_NET_F_MRG_RXBUF into as many buffers as a largest frame needs (the unused ones stay for
//! the next frame), without it into one buffer. The device then writes `num_buffers` into the
//! header and returns the buffers it filled as used.

use std::io;

use virtio_queue::{QueueOwnedT, QueueT};

use super::active::{Active, Stats};
use super::rx_buffers::RxChain;
use super::tap::Tap;
use super::{HDR_LEN, MAX_BUFFER, NUM_BUFFERS_OFFSET};
use crate::virtio::iovec::{Overflow, IOV_MAX};

/// Frames received in one pass before the event loop gets a turn (and the guest an interrupt).
const RX_BATCH: usize = 64;

/// Why a receive pass stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStop {
    /// The tap has no frame (or the batch is done): watch the tap.
    TapEmpty,
    /// The guest gave too few buffers: stop watching the tap until it gives more.
    NoBuffers,
    /// The tap fails reads (its interface was deleted, say): stop watching it, or the event loop
    /// would spin on its error state; the next rx notification tries again.
    TapError,
    /// The driver broke the rx queue: the device needs a reset.
    Broken,
}

impl Active {
    /// Takes buffers from the rx queue until a largest frame fits (or the queue is empty, in which
    /// case the driver is asked to notify when it adds more). Bad chains are returned as used
    /// with length 0. Returns whether any chain was returned, and whether the queue may hold
    /// more than this call took (its budget ran out).
    fn fill_rx(&mut self, stats: &mut Stats) -> Result<(bool, bool), virtio_queue::Error> {
        let mrg = self.mrg_rxbuf();
        let mut used_any = false;
        // A driver publishing bad chains as fast as they are returned must not hold the event
        // loop: at most a queue's worth of chains per call.
        let mut budget = self.rx_queue.size();
        while !self.rx.ready(mrg) && self.rx.iov.len() < IOV_MAX {
            if budget == 0 {
                return Ok((used_any, true));
            }
            budget -= 1;
            let Some(chain) = self.rx_queue.iter(&self.mem)?.next() else {
                // Nothing more for now: ask for a notification, unless the driver raced us.
                if self.rx_queue.enable_notification(&self.mem)? {
                    continue;
                }
                break;
            };
            let head = chain.head_index();
            let before = self.rx.iov.len();
            let parsed =
                self.rx
                    .iov
                    .push_chain(&self.mem, chain, true, MAX_BUFFER, Overflow::Truncate);
            // A buffer must hold at least the virtio-net header.
            match parsed.ok().filter(|&(_, len)| len >= HDR_LEN) {
                Some((iovs, len)) => {
                    self.rx.chains.push_back(RxChain {
                        head,
                        iovs: iovs.len(),
                        len,
                    });
                    self.rx.capacity += len;
                }
                None => {
                    self.rx.iov.truncate(before);
                    stats.bad_chains += 1;
                    self.rx_queue.add_used(&self.mem, head, 0)?;
                    used_any = true;
                }
            }
        }
        Ok((used_any, false))
    }

    /// Whether a frame may be read now: enough buffers, or all the guest can give.
    fn can_receive(&self) -> bool {
        let mrg = self.mrg_rxbuf();
        self.rx.ready(mrg)
            || (!self.rx.chains.is_empty()
                && (self.rx.chains.len() >= usize::from(self.rx_queue.size())
                    || self.rx.iov.len() >= IOV_MAX))
    }

    /// Moves frames from the tap into the guest until the tap is empty, the guest's buffers run
    /// out, or a batch is done; interrupts the driver if it asked to be.
    pub fn process_rx(&mut self, tap: &Tap, stats: &mut Stats) -> RxStop {
        if self.broken {
            return RxStop::Broken;
        }
        let mut used_any = false;
        let stop = self.receive_frames(tap, stats, &mut used_any);
        let stop = match stop {
            Ok(stop) => stop,
            Err(_) => {
                self.fail();
                return RxStop::Broken;
            }
        };
        if used_any && self.notify_rx().is_err() {
            self.fail();
            return RxStop::Broken;
        }
        stop
    }

    /// Interrupts the driver if it asked to hear about the buffers used so far. With EVENT_IDX
    /// this is checked after every frame, so the driver hears about the first one at once; it
    /// then polls and asks for no more interrupts until it is done, so a burst still costs one.
    fn notify_rx(&mut self) -> Result<(), virtio_queue::Error> {
        if self.rx_queue.needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }

    fn receive_frames(
        &mut self,
        tap: &Tap,
        stats: &mut Stats,
        used_any: &mut bool,
    ) -> Result<RxStop, virtio_queue::Error> {
        for _ in 0..RX_BATCH {
            let (returned, more) = self.fill_rx(stats)?;
            *used_any |= returned;
            if !self.can_receive() {
                // Out of buffers; unless the budget ran out with more waiting, in which case the
                // tap (still readable) brings us back.
                return Ok(if more {
                    RxStop::TapEmpty
                } else {
                    RxStop::NoBuffers
                });
            }
            let mrg = self.mrg_rxbuf();
            let (_, iovs) = self.rx.span(mrg);
            let all = self.rx.iov.as_slice();
            let n = match tap.read_iov(all.get(..iovs).unwrap_or(all)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => match e.raw_os_error() {
                    // The frame did not fit the buffers, or was bad: the tap dropped it.
                    Some(libc::EFAULT | libc::EMSGSIZE | libc::EINVAL | libc::ENOBUFS) => {
                        stats.rx_dropped += 1;
                        continue;
                    }
                    _ => return Ok(RxStop::TapError),
                },
            };
            if n == 0 {
                // End of file: not something a tap does, but a backend that is gone.
                return Ok(RxStop::TapError);
            }
            if n < HDR_LEN {
                // Not a frame (a tap always gives a header); the buffers stay ours.
                stats.rx_dropped += 1;
                continue;
            }
            self.complete_frame(n, stats)?;
            if self.rx_queue.event_idx_enabled() {
                self.notify_rx()?;
                *used_any = false;
            } else {
                // Without EVENT_IDX every check says yes: one interrupt per pass.
                *used_any = true;
            }
        }
        // Buffers in hand: the driver need not tell us about more (without EVENT_IDX this sets
        // VRING_USED_F_NO_NOTIFY; with it, nothing).
        self.rx_queue.disable_notification(&self.mem)?;
        Ok(RxStop::TapEmpty)
    }

    /// A frame of `n` bytes (header included) landed in the leading buffers: fill in
    /// `num_buffers` and return them as used.
    fn complete_frame(&mut self, n: usize, stats: &mut Stats) -> Result<(), virtio_queue::Error> {
        let mut count = 0u16;
        let mut left = n;
        for c in &self.rx.chains {
            if left == 0 {
                break;
            }
            left -= left.min(c.len);
            count += 1;
        }
        // Every buffer holds at least a header, which so lies in the first one.
        self.rx
            .iov
            .write_at(self.rx.iov.all(), NUM_BUFFERS_OFFSET, &count.to_le_bytes());
        let mut left = n;
        for _ in 0..count {
            let Some(c) = self.rx.chains.pop_front() else {
                break;
            };
            let len = left.min(c.len);
            left -= len;
            self.rx.capacity -= c.len;
            self.rx.iov.drain_front(c.iovs);
            // `len` is at most MAX_BUFFER, far below u32::MAX.
            self.rx_queue.add_used(&self.mem, c.head, len as u32)?;
        }
        stats.rx_frames += 1;
        stats.rx_bytes += (n - HDR_LEN) as u64;
        Ok(())
    }
}
