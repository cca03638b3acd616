//! One virtio-blk request: its header decoded, checked against the disk, and carried out.
//!
//! Every failure is the request's own (a status byte of IOERR or UNSUPP); nothing here stops the
//! device. A chain without a writable byte cannot even carry a status: it is returned unused.

use vm_memory::{ByteValued, Bytes, GuestMemoryBackend, Le32, Le64};

use super::chain::{ChainError, Layout};
use super::disk::Disk;
use super::{
    MAX_DISCARD_SECTORS, MAX_DISCARD_SEGMENTS, MAX_REQUEST_BYTES, MAX_WRITE_ZEROES_SECTORS,
    SECTOR_SHIFT, SECTOR_SIZE, SERIAL_LEN,
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

/// Serves requests for one disk; holds the lists reused from one request to the next.
pub struct Handler {
    pub disk: Disk,
    pub serial: [u8; SERIAL_LEN],
    /// DISCARD and WRITE_ZEROES were offered.
    pub discard: bool,
    layout: Layout,
    iovs: IoVecs,
    pub stats: Stats,
}

impl Handler {
    pub fn new(disk: Disk, serial: [u8; SERIAL_LEN], discard: bool) -> Self {
        Handler {
            disk,
            serial,
            discard,
            layout: Layout::new(),
            iovs: IoVecs::with_capacity(IOV_MAX),
            stats: Stats::default(),
        }
    }

    /// Serves one chain; returns the number of bytes written into it (the used length).
    pub fn handle(&mut self, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        self.stats.requests += 1;
        self.layout.parse(chain);
        let result = match self.layout.error() {
            Some(_) => Err(status::IOERR),
            None => self.execute(mem),
        };
        self.iovs.clear();
        let (status, data) = match result {
            Ok(data) => (status::OK, data),
            Err(status) => {
                self.stats.errors += 1;
                (status, 0)
            }
        };
        let answered = self
            .layout
            .status()
            .is_some_and(|addr| mem.write_obj(status, addr).is_ok());
        if !answered {
            self.stats.unanswerable += 1;
            return 0;
        }
        data.saturating_add(1)
    }

    /// Carries out the request the layout describes; the data bytes written into the chain, or
    /// the status of a failed request.
    fn execute(&mut self, mem: &GuestMemoryMmap) -> Result<u32, u8> {
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
        match u32::from(header.kind) {
            kind::IN => {
                // Only the header is device-readable; the data is device-writable.
                if layout.readable_len() != HEADER_LEN {
                    return Err(status::IOERR);
                }
                let len = layout.writable_len();
                let offset = self.check_io(sector, len)?;
                layout
                    .writable_iovecs(mem, &mut self.iovs)
                    .map_err(chain_status)?;
                self.disk
                    .read_at(self.iovs.as_mut_slice(), offset)
                    .map_err(|_| status::IOERR)?;
                self.stats.bytes += len;
                // len <= the chain's total length, which the queue crate keeps below 2^32.
                Ok(u32::try_from(len).unwrap_or(u32::MAX))
            }
            kind::OUT => {
                if layout.writable_len() != 0 {
                    return Err(status::IOERR);
                }
                if self.disk.read_only() {
                    return Err(status::IOERR);
                }
                let len = layout.readable_len().saturating_sub(HEADER_LEN);
                let offset = self.check_io(sector, len)?;
                layout
                    .readable_iovecs(mem, HEADER_LEN, &mut self.iovs)
                    .map_err(chain_status)?;
                self.disk
                    .write_at(self.iovs.as_mut_slice(), offset)
                    .map_err(|_| status::IOERR)?;
                self.stats.bytes += len;
                Ok(0)
            }
            kind::FLUSH => {
                if layout.readable_len() != HEADER_LEN || layout.writable_len() != 0 {
                    return Err(status::IOERR);
                }
                self.disk.flush().map_err(|_| status::IOERR)?;
                Ok(0)
            }
            kind::GET_ID => {
                if layout.readable_len() != HEADER_LEN {
                    return Err(status::IOERR);
                }
                // 20 bytes, zero padded; a shorter buffer gets what fits.
                let n = layout.write(mem, &self.serial).map_err(chain_status)?;
                Ok(n as u32)
            }
            kind::DISCARD | kind::WRITE_ZEROES if self.discard => {
                self.discard_or_zero(mem, u32::from(header.kind) == kind::DISCARD)?;
                Ok(0)
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

    fn discard_or_zero(&mut self, mem: &GuestMemoryMmap, discard: bool) -> Result<(), u8> {
        let layout = &self.layout;
        if layout.writable_len() != 0 {
            return Err(status::IOERR);
        }
        let data = layout.readable_len().saturating_sub(HEADER_LEN);
        let count = data / RANGE_LEN;
        if !data.is_multiple_of(RANGE_LEN) || count == 0 || count > MAX_DISCARD_SEGMENTS as u64 {
            return Err(status::IOERR);
        }
        // Read and check every range before touching the disk: all or nothing.
        let mut ranges = [Range::default(); MAX_DISCARD_SEGMENTS];
        let ranges = &mut ranges[..count as usize];
        for (i, r) in ranges.iter_mut().enumerate() {
            layout
                .read(mem, HEADER_LEN + i as u64 * RANGE_LEN, r.as_mut_slice())
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
            self.check_range(u64::from(r.sector), u64::from(n) << SECTOR_SHIFT)?;
        }
        for r in ranges.iter() {
            let offset = u64::from(r.sector) << SECTOR_SHIFT;
            let len = u64::from(u32::from(r.num_sectors)) << SECTOR_SHIFT;
            if len == 0 {
                continue;
            }
            let result = if discard {
                self.disk.punch_hole(offset, len)
            } else {
                let unmap = u32::from(r.flags) & RANGE_FLAG_UNMAP != 0;
                self.disk.write_zeroes(offset, len, unmap)
            };
            result.map_err(|_| status::IOERR)?;
        }
        Ok(())
    }
}

fn chain_status(_: ChainError) -> u8 {
    status::IOERR
}
