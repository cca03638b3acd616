//! The virtio-vsock device: configuration space, activation and reset, and moving packets
//! between its queues and the muxer.
//!
//! Queues: 0 rx (device to driver), 1 tx (driver to device), 2 event (unused: we never send
//! transport events, so its buffers stay with us).

use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use super::muxer::{Muxer, RxChain, MAX_CHAINS_PER_READ};
use super::packet::{self, Header, Invalid, HDR_LEN, OP_RW};
use super::VsockConfig;
use crate::virtio::iovec::{IoVecs, Overflow, IOV_MAX};
use crate::virtio::queue::{drain, Budget, Chain, Served};
use crate::virtio::{
    device_type, read_config_bytes, ActivateError, GuestMemoryMmap, Interrupt, QueueContext,
    VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::{Error, Result};

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const EVENT_QUEUE: usize = 2;
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];
/// Packets taken from the TX queue per turn of the event loop (see `queue::Budget`); past it the
/// device kicks its own TX eventfd and comes back on the next turn.
pub(super) const TX_BUDGET: Budget = Budget {
    chains: 128,
    bytes: 16 << 20,
};

pub(super) struct Active {
    pub mem: GuestMemoryMmap,
    pub rx: Queue,
    pub tx: Queue,
    pub interrupt: Arc<Interrupt>,
}

pub struct Vsock {
    pub(super) cid: u64,
    pub(super) queue_events: Vec<EventFd>,
    /// Wakes the event loop after activation and reset (which run in a vCPU thread).
    pub(super) wake: EventFd,
    pub(super) timer: TimerFd,
    pub(super) muxer: Muxer,
    pub(super) active: Option<Active>,
    // Scratch space kept between calls so that the data path allocates nothing.
    rx_iovs: IoVecs,
    tx_iovs: IoVecs,
    batch: TxBatch,
    payload: IoVecs,
    scratch: IoVecs,
    rx_chains: Vec<RxChain>,
    used: Vec<u32>,
    /// Used buffers were added since the last interrupt decision.
    irq_pending_tx: bool,
    irq_pending_rx: bool,
}

impl Vsock {
    /// Listens on `config.uds_path` (replacing a stale socket left there).
    pub fn new(config: VsockConfig) -> Result<Vsock> {
        if !(3..u64::from(u32::MAX)).contains(&config.guest_cid) {
            return Err(Error::Invalid(format!(
                "vsock cid {} is reserved: use 3 to 4294967294",
                config.guest_cid
            )));
        }
        let setup = |what: &str| {
            let what = what.to_string();
            move |source| Error::Io { what, source }
        };
        let queue_events = (0..QUEUE_SIZES.len())
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(setup("cannot create the vsock queue eventfds"))?;
        let wake = EventFd::new(EFD_NONBLOCK).map_err(setup("cannot create the vsock eventfd"))?;
        let timer = TimerFd::new()
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
            .and_then(|t| set_nonblocking(t.as_raw_fd()).map(|()| t))
            .map_err(setup("cannot create the vsock timer"))?;
        let muxer = Muxer::new(config.guest_cid, &config.uds_path)?;
        Ok(Vsock {
            cid: config.guest_cid,
            queue_events,
            wake,
            timer,
            muxer,
            active: None,
            rx_iovs: IoVecs::with_capacity(MAX_CHAINS_PER_READ * 2),
            tx_iovs: IoVecs::with_capacity(8),
            batch: TxBatch {
                token: None,
                iovs: IoVecs::with_capacity(64),
                bytes: 0,
                heads: Vec::with_capacity(64),
            },
            payload: IoVecs::with_capacity(8),
            scratch: IoVecs::with_capacity(MAX_CHAINS_PER_READ * 2),
            rx_chains: Vec::with_capacity(MAX_CHAINS_PER_READ),
            used: Vec::with_capacity(MAX_CHAINS_PER_READ),
            irq_pending_tx: false,
            irq_pending_rx: false,
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.cid
    }

    /// The driver broke a queue itself (rings or indexes it cannot have meant): stop, report
    /// DEVICE_NEEDS_RESET, and drop every connection.
    fn fail(&mut self) {
        if let Some(a) = self.active.take() {
            a.interrupt.fail_device();
        }
        self.muxer.reset();
    }

    /// Serves the packets the driver put on the TX queue, within [`TX_BUDGET`]. The interrupt,
    /// if the driver wants one, is left to [`Vsock::signal`], so that TX and RX completions share
    /// it.
    pub(super) fn process_tx(&mut self, now: Instant) {
        match self.drain_tx(now) {
            Ok(true) => {
                // Budget spent with packets left: come back on the next turn.
                let _ = self.queue_events[TX_QUEUE].write(1);
            }
            Ok(false) => {}
            Err(_) => self.fail(),
        }
    }

    /// Returns whether packets may be left on the queue because the budget ran out.
    fn drain_tx(&mut self, now: Instant) -> std::result::Result<bool, virtio_queue::Error> {
        let Some(a) = self.active.as_mut() else {
            return Ok(false);
        };
        let (mem, cid) = (&a.mem, self.cid);
        let (batch, muxer, iovs, payload) = (
            &mut self.batch,
            &mut self.muxer,
            &mut self.tx_iovs,
            &mut self.payload,
        );
        let irq_pending = &mut self.irq_pending_tx;
        let pass = drain(&mut a.tx, mem, TX_BUDGET, |tx, chain| {
            *irq_pending = true;
            let head = chain.head_index();
            // Only this chain's iovecs are needed: a batch keeps copies of its own.
            iovs.clear();
            let (hdr, range) = match parse_tx(mem, chain, cid, iovs) {
                TxParse::Drop => return Ok(Served::used(0, 0)),
                TxParse::Reset(hdr) => {
                    batch.flush(muxer, tx, mem)?;
                    muxer.reset_packet(&hdr);
                    return Ok(Served::used(0, 0));
                }
                TxParse::Packet(hdr, range) => (hdr, range),
            };
            let len = hdr.len as usize;
            if hdr.op == OP_RW && len > 0 {
                // Data for the connection being batched joins the batch; anything else goes
                // after it.
                let token = muxer.token_of(&hdr);
                if batch.token.is_some()
                    && (batch.token != token || !batch.has_room(range.len(), len))
                {
                    batch.flush(muxer, tx, mem)?;
                }
                if let Some(token) = muxer.accept_direct(&hdr) {
                    batch.token = Some(token);
                    batch.bytes += iovs.sub(range, HDR_LEN, len, &mut batch.iovs);
                    batch.heads.push(head);
                    return Ok(Served::kept(len as u64));
                }
            }
            batch.flush(muxer, tx, mem)?;
            payload.clear();
            iovs.sub(range, HDR_LEN, len, payload);
            muxer.guest_packet(&hdr, payload, 0..payload.len(), now);
            payload.clear();
            Ok(Served::used(0, len as u64))
        });
        self.tx_iovs.clear();
        let pass = pass?;
        self.batch.flush(&mut self.muxer, &mut a.tx, mem)?;
        Ok(pass.more)
    }

    /// Interrupts the driver once for everything put in the used rings since the last call, if
    /// it asked to be.
    pub(super) fn signal(&mut self) {
        let (tx, rx) = (
            std::mem::take(&mut self.irq_pending_tx),
            std::mem::take(&mut self.irq_pending_rx),
        );
        let Some(a) = self.active.as_mut() else {
            return;
        };
        // needs_notification must see every queue that got used buffers (it also resets the
        // queue's count of them), so both are asked.
        let tx_wants = tx && a.tx.needs_notification(&a.mem).unwrap_or(true);
        let rx_wants = rx && a.rx.needs_notification(&a.mem).unwrap_or(true);
        if tx_wants || rx_wants {
            a.interrupt.signal_used_queue();
        }
    }

    /// The driver added RX buffers: from now on we ask for a kick only when we run out.
    pub(super) fn rx_kicked(&mut self) {
        if let Some(a) = self.active.as_mut() {
            if a.rx.disable_notification(&a.mem).is_err() {
                self.fail();
            }
        }
    }

    /// Fills RX buffers for as long as the muxer has packets and the driver has buffers.
    pub(super) fn process_rx(&mut self, now: Instant) {
        if self.active.is_none() || !self.muxer.has_rx() {
            return;
        }
        let result = self.fill_rx_queue(now);
        self.rx_iovs.clear();
        self.scratch.clear();
        self.rx_chains.clear();
        self.used.clear();
        if result.is_err() {
            self.fail();
        }
    }

    fn fill_rx_queue(&mut self, now: Instant) -> std::result::Result<(), virtio_queue::Error> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let mut used_any = false;
        while self.muxer.has_rx() {
            self.rx_iovs.clear();
            self.rx_chains.clear();
            self.used.clear();
            while self.rx_chains.len() < MAX_CHAINS_PER_READ {
                let Some(chain) = a.rx.iter(&a.mem)?.next() else {
                    break;
                };
                let head = chain.head_index();
                match self
                    .rx_iovs
                    .push_chain(&a.mem, chain, true, usize::MAX, Overflow::Reject)
                {
                    Ok((range, cap)) if cap >= HDR_LEN => {
                        self.rx_chains.push(RxChain { head, range, cap })
                    }
                    // Not a usable buffer (wrong direction, outside RAM, too small for a
                    // header): given back empty, in order with the ones before it.
                    _ if self.rx_chains.is_empty() => {
                        a.rx.add_used(&a.mem, head, 0)?;
                        used_any = true;
                    }
                    _ => {
                        a.rx.go_to_previous_position();
                        break;
                    }
                }
            }
            if self.rx_chains.is_empty() {
                // Out of buffers: ask for a kick, unless more arrived meanwhile.
                if a.rx.enable_notification(&a.mem)? {
                    continue;
                }
                break;
            }
            self.muxer.fill_rx(
                &self.rx_iovs,
                &self.rx_chains,
                &mut self.used,
                &mut self.scratch,
                now,
            );
            for (chain, &len) in self.rx_chains.iter().zip(self.used.iter()) {
                a.rx.add_used(&a.mem, chain.head, len)?;
                used_any = true;
            }
            // The buffers not used go back, newest first (they were popped last).
            for _ in self.used.len()..self.rx_chains.len() {
                a.rx.go_to_previous_position();
            }
            if self.used.len() < self.rx_chains.len() {
                break;
            }
        }
        if used_any {
            self.irq_pending_rx = true;
        }
        Ok(())
    }
}

/// What a TX chain holds.
enum TxParse {
    /// Nothing we can trust (unusable chain, truncated header, foreign CIDs): dropped.
    Drop,
    /// Good addressing, bad contents: answered with an RST.
    Reset(Header),
    /// A valid packet; its payload starts `HDR_LEN` bytes into `iovs[range]`.
    Packet(Header, Range<usize>),
}

/// Reads and checks a TX chain: a header, then `len` bytes of payload, all device-readable.
fn parse_tx(mem: &GuestMemoryMmap, chain: Chain<'_>, cid: u64, iovs: &mut IoVecs) -> TxParse {
    iovs.clear();
    // Unusable chains (wrong direction, outside RAM, loops) are dropped: without a header we
    // could trust, there is nobody to answer.
    let Ok((range, total)) = iovs.push_chain(mem, chain, false, usize::MAX, Overflow::Reject)
    else {
        return TxParse::Drop;
    };
    if total < HDR_LEN {
        return TxParse::Drop;
    }
    let mut bytes = [0u8; HDR_LEN];
    iovs.read_at(range.clone(), 0, &mut bytes);
    let hdr = Header::from_bytes(&bytes);
    match packet::validate(&hdr, cid, total - HDR_LEN) {
        Err(Invalid::Drop) => TxParse::Drop,
        Err(Invalid::Reset) => TxParse::Reset(hdr),
        Ok(()) => TxParse::Packet(hdr, range),
    }
}

/// RW packets of one connection, written to its host socket with one sendmsg. Their chains go
/// back to the driver only after the write: until then the data is read from guest memory.
struct TxBatch {
    token: Option<u32>,
    iovs: IoVecs,
    bytes: usize,
    heads: Vec<u16>,
}

/// The most bytes one batched write carries.
const MAX_BATCH_BYTES: usize = 1 << 20;

impl TxBatch {
    fn has_room(&self, segments: usize, bytes: usize) -> bool {
        self.iovs.len() + segments <= IOV_MAX && self.bytes + bytes <= MAX_BATCH_BYTES
    }

    fn flush(
        &mut self,
        muxer: &mut Muxer,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> std::result::Result<(), virtio_queue::Error> {
        if let Some(token) = self.token.take() {
            muxer.write_direct(token, &self.iovs, self.bytes);
        }
        self.iovs.clear();
        self.bytes = 0;
        for head in self.heads.drain(..) {
            queue.add_used(mem, head, 0)?;
        }
        Ok(())
    }
}

fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own, with flag arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; }
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, ctx: QueueContext) -> std::result::Result<(), ActivateError> {
        let mut queues = ctx.queues.into_iter();
        let (Some(rx), Some(tx), Some(_event)) = (queues.next(), queues.next(), queues.next())
        else {
            return Err(ActivateError::QueueNotReady(EVENT_QUEUE));
        };
        self.active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            interrupt: ctx.interrupt,
        });
        // Connections the host made before the driver was ready have packets waiting.
        let _ = self.wake.write(1);
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        // Every connection is stale now; the event loop unregisters and closes their sockets.
        self.muxer.reset();
        let _ = self.wake.write(1);
    }
}
