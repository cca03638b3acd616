//! Descriptor chains checked against guest memory and turned into host `iovec`s, so frames move
//! between the tap and the guest with one `readv`/`writev` and no copy in between.

use std::fmt;

use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// The most iovecs one `readv`/`writev` takes (Linux's UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// Why a chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A device-writable descriptor where the device must read, or the reverse.
    WrongDirection,
    /// A descriptor outside guest memory.
    BadAddress,
    /// More bytes than a frame can have.
    TooLong,
    /// More pieces than one system call takes.
    TooManyDescriptors,
    /// Too short for a virtio-net header.
    TooShort,
    /// The chain does not end: a loop, a `next` out of range or an unreadable descriptor.
    Unterminated,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::WrongDirection => "descriptor with the wrong direction",
            ChainError::BadAddress => "descriptor outside guest memory",
            ChainError::TooLong => "chain longer than the largest frame",
            ChainError::TooManyDescriptors => "chain with too many descriptors",
            ChainError::TooShort => "chain shorter than a virtio-net header",
            ChainError::Unterminated => "chain without an end (a loop?)",
        })
    }
}

/// What to do with the bytes of a chain past `max_len`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the chain (transmit: the frame would be too large).
    Reject,
    /// Use only the first `max_len` bytes (receive: no frame needs more).
    Truncate,
}

/// A list of host iovecs pointing into guest memory.
pub struct IoVecs(Vec<libc::iovec>);

// SAFETY: the iovecs point into guest memory mappings, which are shared by every thread of the
// VMM and outlive the device state holding these lists (they are dropped together with the
// `GuestMemoryMmap` clone that keeps the mappings alive). The pointers carry no thread affinity.
unsafe impl Send for IoVecs {}

impl IoVecs {
    pub fn with_capacity(n: usize) -> Self {
        IoVecs(Vec::with_capacity(n))
    }

    pub fn as_slice(&self) -> &[libc::iovec] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn truncate(&mut self, n: usize) {
        self.0.truncate(n);
    }

    /// Drops the first `n` iovecs.
    pub fn drain_front(&mut self, n: usize) {
        self.0.drain(..n.min(self.0.len()));
    }

    /// Appends the descriptors of `chain` whose direction is `writable` (all must be), checked
    /// against `mem`, and returns the number of bytes they cover. Zero-length descriptors are
    /// skipped. On error nothing is appended.
    pub fn append_chain(
        &mut self,
        chain: Chain<'_>,
        mem: &GuestMemoryMmap,
        writable: bool,
        max_len: usize,
        overflow: Overflow,
    ) -> Result<usize, ChainError> {
        let start = self.0.len();
        let result = self.append_descriptors(chain, mem, writable, max_len, overflow);
        if result.is_err() {
            self.0.truncate(start);
        }
        result
    }

    fn append_descriptors(
        &mut self,
        chain: Chain<'_>,
        mem: &GuestMemoryMmap,
        writable: bool,
        max_len: usize,
        overflow: Overflow,
    ) -> Result<usize, ChainError> {
        let start = self.0.len();
        let mut total = 0usize;
        // The chain iterator stops on loops (it yields at most queue-size descriptors, or the
        // size of an indirect table) and on descriptors it cannot read; a chain whose last
        // descriptor still says NEXT was cut short there.
        let mut unterminated = false;
        for desc in chain {
            unterminated = desc.has_next();
            if desc.is_write_only() != writable {
                return Err(ChainError::WrongDirection);
            }
            let room = max_len - total;
            let mut len = desc.len() as usize;
            if len > room {
                match overflow {
                    Overflow::Reject => return Err(ChainError::TooLong),
                    Overflow::Truncate => len = room,
                }
            }
            if len == 0 {
                if room == 0 && overflow == Overflow::Truncate {
                    return Ok(total);
                }
                continue;
            }
            // A range may cross from one memory region into the next: one iovec per piece.
            for slice in mem.get_slices(GuestAddress(desc.addr().0), len) {
                let slice = slice.map_err(|_| ChainError::BadAddress)?;
                if self.0.len() - start >= IOV_MAX {
                    return Err(ChainError::TooManyDescriptors);
                }
                self.0.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
            total += len;
        }
        if unterminated {
            return Err(ChainError::Unterminated);
        }
        Ok(total)
    }
}

/// Copies `dst.len()` bytes at `offset` of the area described by `iov` into `dst`; returns how
/// many bytes were there.
pub fn read_at(iov: &[libc::iovec], offset: usize, dst: &mut [u8]) -> usize {
    let mut done = 0;
    for_each_piece(iov, offset, dst.len(), |ptr, at, n| {
        // SAFETY: `ptr..ptr+n` lies inside one iovec, which points into mapped guest memory
        // (checked by `append_chain`); `at..at+n` is inside `dst`. Guest memory may change under
        // us (the guest owns it): the copy only reads bytes, whatever they are.
        unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr().add(at), n) };
        done = at + n;
    });
    done
}

/// Copies `src` into the area described by `iov` at `offset`; returns how many bytes fit.
pub fn write_at(iov: &[libc::iovec], offset: usize, src: &[u8]) -> usize {
    let mut done = 0;
    for_each_piece(iov, offset, src.len(), |ptr, at, n| {
        // SAFETY: as in `read_at`; the iovec is device-writable guest memory.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(at), ptr, n) };
        done = at + n;
    });
    done
}

/// Calls `f(host pointer, offset in the caller's buffer, length)` for each piece of the byte range
/// `offset..offset+len` of the area described by `iov`.
fn for_each_piece(
    iov: &[libc::iovec],
    mut offset: usize,
    len: usize,
    mut f: impl FnMut(*mut u8, usize, usize),
) {
    let mut at = 0;
    for v in iov {
        if at == len {
            break;
        }
        if offset >= v.iov_len {
            offset -= v.iov_len;
            continue;
        }
        let n = (v.iov_len - offset).min(len - at);
        // `offset < iov_len`, so the pointer stays inside the iovec.
        f(v.iov_base.cast::<u8>().wrapping_add(offset), at, n);
        at += n;
        offset = 0;
    }
}
