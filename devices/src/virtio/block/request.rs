//! One virtio-blk request: its header decoded and checked against the disk on the event loop, its
//! disk operation run by the disk's I/O workers (`io_pool`), and its status written when that
//! completes.
//!
//! Every failure is the request's own (a status byte of IOERR or UNSUPP); nothing here stops the
//! device, except a driver reusing a chain still in flight. A chain without a writable byte
//! cannot even carry a status: it is returned unused.

use std::sync::Arc;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, Le32, Le64};
use vmm_sys_util::eventfd::EventFd;

use super::chain::{ChainError, Layout};
use super::disk::Disk;
use super::io_pool::{Done, IoPool, Job, Op, ZeroRange};
use super::{
    MAX_DISCARD_SECTORS, MAX_DISCARD_SEGMENTS, MAX_REQUEST_BYTES, MAX_WRITE_ZEROES_SECTORS,
    QUEUE_SIZE, SECTOR_SHIFT, SECTOR_SIZE, SERIAL_LEN,
};
use crate::virtio::iovec::{IoVecs, IOV_MAX};
use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// Request types (virtio 1.2, 5.2.6).
pub mod kind {
    use virtio_bindings::virtio_blk as blk;
    pub const IN: u32 = blk::VIRTIO_BLK_T_IN;
    pub const OUT: u32 = blk::VIRTIO_BLK_T_OUT;
    pub const FLUSH: u32 = blk::VIRTIO_BLK_T_FLUSH;
    pub const GET_ID: u32 = blk::VIRTIO_BLK_T_GET_ID;
    pub const DISCARD: u32 = blk::VIRTIO_BLK_T_DISCARD;
    pub const WRITE_ZEROES: u32 = blk::VIRTIO_BLK_T_WRITE_ZEROES;
}

/// Status byte values.
pub mod status {
    use virtio_bindings::virtio_blk as blk;
    pub const OK: u8 = blk::VIRTIO_BLK_S_OK as u8;
    pub const IOERR: u8 = blk::VIRTIO_BLK_S_IOERR as u8;
    pub const UNSUPP: u8 = blk::VIRTIO_BLK_S_UNSUPP as u8;
}

/// `struct virtio_blk_outhdr`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Header {
    pub kind: Le32,
    pub ioprio: Le32,
    pub sector: Le64,
}

// SAFETY: plain little-endian integers, no padding (4 + 4 + 8 bytes, 8-aligned).
unsafe impl ByteValued for Header {}

pub const HEADER_LEN: u64 = std::mem::size_of::<Header>() as u64;

/// `struct virtio_blk_discard_write_zeroes`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Range {
    pub sector: Le64,
    pub num_sectors: Le32,
    pub flags: Le32,
}

// SAFETY: plain little-endian integers, no padding (8 + 4 + 4 bytes, 8-aligned).
unsafe impl ByteValued for Range {}

const RANGE_LEN: u64 = std::mem::size_of::<Range>() as u64;
const RANGE_FLAG_UNMAP: u32 = 1;

/// Counters for tests and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Data bytes moved between the disk and guest memory.
    pub bytes: u64,
    pub unanswerable: u64,
}

/// A request handed to the I/O workers, until it completes.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    status: GuestAddress,
    /// Data bytes written into the chain on success (a read's data).
    data: u32,
    /// Data bytes moved, for the stats.
    bytes: u64,
}

/// What became of a chain handed to [`Handler::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Answered at once (a bad request, GET_ID): return it as used with this length.
    Answered(u32),
    /// Handed to the I/O workers, with the data bytes it moves: [`Handler::finish`] answers it
    /// when it completes.
    Submitted(u64),
    /// Its head is already in flight: the driver reused a chain it had not got back, so the
    /// queue cannot be trusted any more.
    HeadInUse,
}

/// What a checked request asks of the disk.
enum Prepared {
    /// Nothing: done, with this many data bytes written into the chain.
    Now(u32),
    /// A job for the workers, the data bytes it moves, and the bytes of them a read writes into
    /// the chain.
    Job(Op, IoVecs, u64, u32),
}

/// Serves the requests of one disk: checks each on the event loop, runs its disk operation on
/// the disk's I/O workers, and answers it when that completes.
pub struct Handler {
    pub disk: Arc<Disk>,
    pub serial: [u8; SERIAL_LEN],
    /// DISCARD and WRITE_ZEROES were offered.
    pub discard: bool,
    pool: IoPool,
    layout: Layout,
    /// Requests in flight, by chain head (heads are below the queue size).
    in_flight: Vec<Option<InFlight>>,
    in_flight_count: usize,
    /// Iovec lists back from completed jobs, for the next reads and writes.
    spare: Vec<IoVecs>,
    pub stats: Stats,
}

impl Handler {
    pub fn new(disk: Disk, serial: [u8; SERIAL_LEN], discard: bool) -> std::io::Result<Self> {
        let disk = Arc::new(disk);
        Ok(Handler {
            pool: IoPool::start(disk.clone())?,
            disk,
            serial,
            discard,
            layout: Layout::new(),
            in_flight: vec![None; usize::from(QUEUE_SIZE)],
            in_flight_count: 0,
            spare: Vec::new(),
            stats: Stats::default(),
        })
    }

    /// Signalled when a request's disk operation completes.
    pub fn done_event(&self) -> &EventFd {
        self.pool.done_event()
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight_count
    }

    /// Checks the request in `chain` and starts it: answered at once when it fails or needs no
    /// disk, else handed to the workers.
    pub fn start(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> Started {
        let head = chain.head_index();
        match self.in_flight.get(usize::from(head)) {
            Some(None) => {}
            // In flight already, or past the queue (the queue crate never yields one).
            _ => return Started::HeadInUse,
        }
        self.stats.requests += 1;
        self.layout.parse(chain);
        let prepared = match self.layout.error() {
            Some(_) => Err(status::IOERR),
            None => self.prepare(mem),
        };
        let at = self.layout.status();
        match (prepared, at) {
            (Ok(Prepared::Job(op, iovs, bytes, data)), Some(status)) => {
                self.in_flight[usize::from(head)] = Some(InFlight {
                    status,
                    data,
                    bytes,
                });
                self.in_flight_count += 1;
                self.pool.submit(Job { head, op, iovs });
                Started::Submitted(bytes)
            }
            (Ok(Prepared::Now(data)), _) => {
                Started::Answered(self.answer(mem, at, status::OK, data))
            }
            (Ok(Prepared::Job(_, iovs, ..)), None) => {
                // `prepare` refuses a request without a status byte; never reached.
                self.spare.push(iovs);
                Started::Answered(0)
            }
            (Err(failed), _) => Started::Answered(self.answer(mem, at, failed, 0)),
        }
    }

    /// Answers the request a completed job belongs to: returns its head and used length, or
    /// None for a job the device no longer waits for.
    pub fn finish(&mut self, mem: &GuestMemoryMmap, done: Done) -> Option<(u16, u32)> {
        self.spare.push(done.iovs);
        let request = self.in_flight.get_mut(usize::from(done.head))?.take()?;
        self.in_flight_count -= 1;
        let used = if done.result.is_ok() {
            self.stats.bytes += request.bytes;
            self.answer(mem, Some(request.status), status::OK, request.data)
        } else {
            self.answer(mem, Some(request.status), status::IOERR, 0)
        };
        Some((done.head, used))
    }

    /// A completion waiting to be answered, if any.
    pub fn try_done(&self) -> Option<Done> {
        self.pool.try_done()
    }

    /// Waits for every request in flight to complete and answers none of them: on a reset the
    /// driver has given them up, and no worker may touch its memory afterwards.
    pub fn quiesce(&mut self) {
        while self.in_flight_count > 0 {
            let Some(done) = self.pool.wait_done() else {
                break;
            };
            self.spare.push(done.iovs);
            if let Some(slot) = self.in_flight.get_mut(usize::from(done.head)) {
                if slot.take().is_some() {
                    self.in_flight_count -= 1;
                }
            }
        }
    }

    /// Writes the status byte; returns the used length (0 when it could not be written).
    fn answer(
        &mut self,
        mem: &GuestMemoryMmap,
        at: Option<GuestAddress>,
        code: u8,
        data: u32,
    ) -> u32 {
        if code != status::OK {
            self.stats.errors += 1;
        }
        if at.is_none_or(|addr| mem.write_obj(code, addr).is_err()) {
            self.stats.unanswerable += 1;
            return 0;
        }
        data.saturating_add(1)
    }

    /// An iovec list for a read or write, reused when one is spare.
    fn iovs(&mut self) -> IoVecs {
        self.spare
            .pop()
            .unwrap_or_else(|| IoVecs::with_capacity(IOV_MAX))
    }

    /// Checks the request the layout describes against the chain and the disk: what the disk
    /// must do, or the status of a failed request.
    fn prepare(&mut self, mem: &GuestMemoryMmap) -> Result<Prepared, u8> {
        let layout = &self.layout;
        // A request that cannot report its outcome is not carried out.
        match layout.status() {
            Some(addr) if mem.check_range(addr, 1) => {}
            _ => return Err(status::IOERR),
        }
        let mut header = Header::default();
        layout
            .read(mem, 0, header.as_mut_slice())
            .map_err(chain_status)?;
        let sector = u64::from(header.sector);
        let none = || IoVecs::with_capacity(0);
        match u32::from(header.kind) {
            kind::IN => {
                // Only the header is device-readable; the data is device-writable.
                if self.layout.readable_len() != HEADER_LEN {
                    return Err(status::IOERR);
                }
                let len = self.layout.writable_len();
                let offset = self.check_io(sector, len)?;
                let mut iovs = self.iovs();
                if let Err(e) = self.layout.writable_iovecs(mem, &mut iovs) {
                    self.spare.push(iovs);
                    return Err(chain_status(e));
                }
                // len <= the chain's total length, which the queue crate keeps below 2^32.
                let data = u32::try_from(len).unwrap_or(u32::MAX);
                Ok(Prepared::Job(Op::Read { offset }, iovs, len, data))
            }
            kind::OUT => {
                if self.layout.writable_len() != 0 || self.disk.read_only() {
                    return Err(status::IOERR);
                }
                let len = self.layout.readable_len().saturating_sub(HEADER_LEN);
                let offset = self.check_io(sector, len)?;
                let mut iovs = self.iovs();
                if let Err(e) = self.layout.readable_iovecs(mem, HEADER_LEN, &mut iovs) {
                    self.spare.push(iovs);
                    return Err(chain_status(e));
                }
                Ok(Prepared::Job(Op::Write { offset }, iovs, len, 0))
            }
            kind::FLUSH => {
                if layout.readable_len() != HEADER_LEN || layout.writable_len() != 0 {
                    return Err(status::IOERR);
                }
                Ok(Prepared::Job(Op::Flush, none(), 0, 0))
            }
            kind::GET_ID => {
                if layout.readable_len() != HEADER_LEN {
                    return Err(status::IOERR);
                }
                // 20 bytes, zero padded; a shorter buffer gets what fits.
                let n = layout.write(mem, &self.serial).map_err(chain_status)?;
                Ok(Prepared::Now(n as u32))
            }
            kind::DISCARD | kind::WRITE_ZEROES if self.discard => {
                let discard = u32::from(header.kind) == kind::DISCARD;
                let ranges = self.zero_ranges(mem, discard)?;
                let op = if discard {
                    Op::Discard(ranges)
                } else {
                    Op::WriteZeroes(ranges)
                };
                Ok(Prepared::Job(op, none(), 0, 0))
            }
            _ => Err(status::UNSUPP),
        }
    }

    /// As `check_range`, for the data of a read or write: also at most what the driver was told
    /// a request may carry (`seg_max` segments of `size_max` bytes).
    fn check_io(&self, sector: u64, len: u64) -> Result<u64, u8> {
        if len > MAX_REQUEST_BYTES {
            return Err(status::IOERR);
        }
        self.check_range(sector, len)
    }

    /// The byte offset of `len` bytes at `sector`, if that is a whole number of sectors inside
    /// the disk.
    fn check_range(&self, sector: u64, len: u64) -> Result<u64, u8> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(status::IOERR);
        }
        let offset = sector.checked_mul(SECTOR_SIZE).ok_or(status::IOERR)?;
        if !self.disk.contains(offset, len) {
            return Err(status::IOERR);
        }
        Ok(offset)
    }

    /// The ranges of a DISCARD or WRITE_ZEROES request, every one read and checked before the
    /// disk is touched: all or nothing.
    fn zero_ranges(&self, mem: &GuestMemoryMmap, discard: bool) -> Result<Vec<ZeroRange>, u8> {
        let layout = &self.layout;
        if layout.writable_len() != 0 {
            return Err(status::IOERR);
        }
        let data = layout.readable_len().saturating_sub(HEADER_LEN);
        let count = data / RANGE_LEN;
        if !data.is_multiple_of(RANGE_LEN) || count == 0 || count > MAX_DISCARD_SEGMENTS as u64 {
            return Err(status::IOERR);
        }
        let mut ranges = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut r = Range::default();
            layout
                .read(mem, HEADER_LEN + i * RANGE_LEN, r.as_mut_slice())
                .map_err(chain_status)?;
            let flags = u32::from(r.flags);
            let allowed = if discard { 0 } else { RANGE_FLAG_UNMAP };
            if flags & !allowed != 0 {
                return Err(status::UNSUPP);
            }
            let max = if discard {
                MAX_DISCARD_SECTORS
            } else {
                MAX_WRITE_ZEROES_SECTORS
            };
            let n = u32::from(r.num_sectors);
            if n > max {
                return Err(status::IOERR);
            }
            let len = u64::from(n) << SECTOR_SHIFT;
            let offset = self.check_range(u64::from(r.sector), len)?;
            if len > 0 {
                ranges.push(ZeroRange {
                    offset,
                    len,
                    unmap: flags & RANGE_FLAG_UNMAP != 0,
                });
            }
        }
        Ok(ranges)
    }
}

fn chain_status(_: ChainError) -> u8 {
    status::IOERR
}
