//! Parsing one request chain: a device-readable `struct virtio_pmem_req { le32 type; }` followed
//! by a device-writable `struct virtio_pmem_resp { le32 ret; }` (virtio 1.2, 5.19.6).
//!
//! Everything in the chain is guest-controlled, so each descriptor is checked against guest
//! memory, the chain's length is bounded, and its shape (readable part first, then writable) is
//! enforced. Framing is free: header and status may each be split over several descriptors.

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// The only request type.
pub const REQ_TYPE_FLUSH: u32 = 0;
/// `ret` for success.
pub const RESP_OK: u32 = 0;
/// `ret` for any failure (as QEMU and Cloud Hypervisor answer; Linux turns any non-zero into EIO).
pub const RESP_EIO: u32 = 1;
/// Most descriptors a request may have. Linux sends 2; a longer chain (up to 65535 through an
/// indirect table) is refused rather than walked.
pub const MAX_DESCRIPTORS: usize = 16;

const HEADER_LEN: usize = 4;
const STATUS_LEN: usize = 4;

/// How a chain broke the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A descriptor points (partly) outside guest memory.
    OutOfRange,
    /// A device-readable descriptor after a device-writable one.
    ReadableAfterWritable,
    /// The chain does not end: a loop, a `next` out of the table, an unreadable descriptor or a
    /// bad indirect table.
    Unterminated,
    /// More than [`MAX_DESCRIPTORS`] descriptors.
    TooLong,
    /// Fewer than 4 device-readable bytes: no request type.
    TruncatedHeader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Flush,
    Unsupported(u32),
    Malformed(Fault),
}

/// Where the 4-byte status goes: up to 4 pieces of device-writable guest memory, all checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusLoc {
    pieces: [(u64, u8); STATUS_LEN],
    count: u8,
    bytes: u8,
}

impl StatusLoc {
    /// Takes up to the missing status bytes from `addr..addr + len`; returns how many.
    fn take(&mut self, addr: GuestAddress, len: u32) -> usize {
        let missing = STATUS_LEN - usize::from(self.bytes);
        let n = missing.min(len as usize);
        if n == 0 {
            return 0;
        }
        if let Some(slot) = self.pieces.get_mut(usize::from(self.count)) {
            // n <= 4, so the casts cannot truncate.
            *slot = (addr.0, n as u8);
            self.count += 1;
            self.bytes += n as u8;
            n
        } else {
            0
        }
    }

    fn complete(&self) -> bool {
        usize::from(self.bytes) == STATUS_LEN
    }

    /// Writes `ret` (little endian); false if guest memory refused a piece.
    pub fn write(&self, mem: &GuestMemoryMmap, ret: u32) -> bool {
        let bytes = ret.to_le_bytes();
        let mut done = 0usize;
        let pieces = self.pieces.get(..usize::from(self.count)).unwrap_or(&[]);
        for &(addr, n) in pieces {
            let n = usize::from(n);
            let Some(src) = bytes.get(done..done + n) else {
                return false;
            };
            if mem.write_slice(src, GuestAddress(addr)).is_err() {
                return false;
            }
            done += n;
        }
        done == STATUS_LEN
    }

    /// Bytes the device writes into the chain when answering (the used length).
    pub const LEN: u32 = STATUS_LEN as u32;
}

/// A parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub head: u16,
    pub kind: Kind,
    /// None when the chain has no 4 valid device-writable bytes: it cannot be answered, only
    /// returned with a used length of 0.
    pub status: Option<StatusLoc>,
}

/// Reads the request in `chain`. Never fails: a bad chain becomes `Kind::Malformed`.
pub fn parse(mem: &GuestMemoryMmap, chain: Chain<'_>) -> Request {
    let head = chain.head_index();
    let mut header = [0u8; HEADER_LEN];
    let mut header_len = 0usize;
    let mut status = StatusLoc::default();
    let mut fault: Option<Fault> = None;
    let mut seen_writable = false;
    let mut count = 0usize;
    let mut ended = false;

    for desc in chain {
        count += 1;
        if count > MAX_DESCRIPTORS {
            fault.get_or_insert(Fault::TooLong);
            ended = true; // stop: the length is the fault, not the ending.
            break;
        }
        ended = !desc.has_next();
        let (addr, len) = (desc.addr(), desc.len());
        let access = if desc.is_write_only() {
            Permissions::Write
        } else {
            Permissions::Read
        };
        if !mem.check_range(addr, len as usize, access) {
            fault.get_or_insert(Fault::OutOfRange);
            continue;
        }
        if desc.is_write_only() {
            seen_writable = true;
            status.take(addr, len);
        } else if seen_writable {
            fault.get_or_insert(Fault::ReadableAfterWritable);
        } else {
            let n = (HEADER_LEN - header_len).min(len as usize);
            if let Some(dst) = header.get_mut(header_len..header_len + n) {
                if n > 0 && mem.read_slice(dst, addr).is_err() {
                    fault.get_or_insert(Fault::OutOfRange);
                    continue;
                }
                header_len += n;
            }
        }
    }
    if !ended {
        fault.get_or_insert(Fault::Unterminated);
    }
    if fault.is_none() && header_len < HEADER_LEN {
        fault = Some(Fault::TruncatedHeader);
    }
    let kind = match fault {
        Some(f) => Kind::Malformed(f),
        None => match u32::from_le_bytes(header) {
            REQ_TYPE_FLUSH => Kind::Flush,
            other => Kind::Unsupported(other),
        },
    };
    Request {
        head,
        kind,
        status: status.complete().then_some(status),
    }
}
