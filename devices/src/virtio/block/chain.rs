//! A descriptor chain as virtio-blk sees it: device-readable bytes (the header, then data for
//! writes), then device-writable bytes (data for reads) ending with the status byte. Any framing
//! is accepted (virtio 1.x: a header may span descriptors, the status may share one with data);
//! what is checked: the direction order, the addresses against guest memory, and the number of
//! pieces, with every list bounded and reused from request to request.

use std::fmt;

use vm_memory::{Address, Bytes, GuestAddress};

use crate::virtio::iovec::{self, IoVecs, IOV_MAX};
use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// The most descriptors of one direction a request may have (every one needs an iovec).
pub const MAX_SEGMENTS: usize = IOV_MAX;

/// Why a chain cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A device-readable descriptor after a device-writable one.
    ReadableAfterWritable,
    /// More descriptors than one request may have.
    TooManySegments,
    /// A descriptor outside guest memory.
    BadAddress,
    /// Fewer device-readable bytes than the request needs.
    TooShort,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::ReadableAfterWritable => "device-readable descriptor after a writable one",
            ChainError::TooManySegments => "too many descriptors",
            ChainError::BadAddress => "descriptor outside guest memory",
            ChainError::TooShort => "chain too short",
        })
    }
}

/// One descriptor's buffer (never empty).
#[derive(Clone, Copy, Debug)]
struct Segment {
    addr: GuestAddress,
    len: u32,
}

/// The shape of one chain: where its readable and writable bytes are, and its status byte.
pub struct Layout {
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    readable_len: u64,
    /// Writable bytes before the status byte.
    writable_len: u64,
    status: Option<GuestAddress>,
    error: Option<ChainError>,
}

impl Layout {
    pub fn new() -> Self {
        Layout {
            readable: Vec::with_capacity(MAX_SEGMENTS),
            writable: Vec::with_capacity(MAX_SEGMENTS),
            readable_len: 0,
            writable_len: 0,
            status: None,
            error: None,
        }
    }

    /// Walks `chain` (the queue crate bounds it: at most the queue size, or an indirect table's
    /// length, of descriptors, so loops end) and records its shape.
    pub fn parse(&mut self, chain: Chain<'_>) {
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
        self.status = None;
        self.error = None;
        for desc in chain {
            let len = desc.len();
            if len == 0 {
                continue;
            }
            let seg = Segment {
                addr: desc.addr(),
                len,
            };
            if desc.is_write_only() {
                if self.writable.len() == MAX_SEGMENTS {
                    self.error.get_or_insert(ChainError::TooManySegments);
                    // Keep the last writable descriptor: it holds the status byte.
                    self.writable.pop();
                }
                self.writable.push(seg);
                self.writable_len += u64::from(len);
            } else if !self.writable.is_empty() {
                self.error.get_or_insert(ChainError::ReadableAfterWritable);
            } else if self.readable.len() == MAX_SEGMENTS {
                self.error.get_or_insert(ChainError::TooManySegments);
            } else {
                self.readable.push(seg);
                self.readable_len += u64::from(len);
            }
        }
        // The status byte is the last writable byte of the chain.
        if let Some(last) = self.writable.last_mut() {
            self.status = last.addr.checked_add(u64::from(last.len) - 1);
            last.len -= 1;
            self.writable_len -= 1;
            if last.len == 0 {
                self.writable.pop();
            }
        }
    }

    /// The first problem met while walking the chain.
    pub fn error(&self) -> Option<ChainError> {
        self.error
    }

    /// Where the status byte goes; None when the chain has no writable byte.
    pub fn status(&self) -> Option<GuestAddress> {
        self.status
    }

    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Writable bytes before the status byte.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Copies the readable bytes at `offset` into `buf`, all of it or an error.
    pub fn read(
        &self,
        mem: &GuestMemoryMmap,
        mut offset: u64,
        mut buf: &mut [u8],
    ) -> Result<(), ChainError> {
        for seg in &self.readable {
            if buf.is_empty() {
                break;
            }
            let len = u64::from(seg.len);
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = (len - offset).min(buf.len() as u64) as usize;
            let (head, rest) = buf.split_at_mut(n);
            let addr = seg.addr.checked_add(offset).ok_or(ChainError::BadAddress)?;
            mem.read_slice(head, addr)
                .map_err(|_| ChainError::BadAddress)?;
            buf = rest;
            offset = 0;
        }
        if buf.is_empty() {
            Ok(())
        } else {
            Err(ChainError::TooShort)
        }
    }

    /// Copies `data` to the start of the writable bytes (before the status byte); returns how
    /// many bytes fitted.
    pub fn write(&self, mem: &GuestMemoryMmap, mut data: &[u8]) -> Result<usize, ChainError> {
        let total = data.len();
        for seg in &self.writable {
            if data.is_empty() {
                break;
            }
            let n = (seg.len as usize).min(data.len());
            mem.write_slice(&data[..n], seg.addr)
                .map_err(|_| ChainError::BadAddress)?;
            data = &data[n..];
        }
        Ok(total - data.len())
    }

    /// Host iovecs for the readable bytes from `offset` on (the data of a write request).
    pub fn readable_iovecs(
        &self,
        mem: &GuestMemoryMmap,
        offset: u64,
        iovs: &mut IoVecs,
    ) -> Result<(), ChainError> {
        iovecs(mem, &self.readable, offset, iovs)
    }

    /// Host iovecs for the writable bytes before the status byte (the data of a read request).
    pub fn writable_iovecs(
        &self,
        mem: &GuestMemoryMmap,
        iovs: &mut IoVecs,
    ) -> Result<(), ChainError> {
        iovecs(mem, &self.writable, 0, iovs)
    }
}

fn iovecs(
    mem: &GuestMemoryMmap,
    segs: &[Segment],
    mut offset: u64,
    iovs: &mut IoVecs,
) -> Result<(), ChainError> {
    iovs.clear();
    for seg in segs {
        let len = u64::from(seg.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        iovs.push_range(mem, seg.addr, offset, (len - offset) as usize)
            .map_err(|e| match e {
                iovec::ChainError::TooManySegments => ChainError::TooManySegments,
                _ => ChainError::BadAddress,
            })?;
        offset = 0;
    }
    Ok(())
}
