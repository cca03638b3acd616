//! Guest buffers as host iovecs, for every device: descriptor chains (or guest ranges) checked
//! against guest memory and turned into `iovec`s, so data moves between guest memory and a file,
//! tap or socket with one readv/writev and no bounce buffer.
//!
//! An [`IoVecs`] is scratch space owned by a device: filled from chains, used for a few system
//! calls and copies, and cleared before the device returns to the event loop. Every entry was
//! produced by vm-memory from a range checked against guest memory, which stays mapped for as long
//! as the device holds its `GuestMemoryMmap` (which it does whenever it is active, the only time it
//! fills an `IoVecs`).
//!
//! The guest may write its buffers while we read them (another vCPU, a hostile driver), so the
//! copies in and out go through vm-memory's `VolatileSlice`, never a plain memcpy, which Rust
//! would allow to assume the bytes do not change under it.

use std::fmt;
use std::ops::Range;

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, VolatileSlice};

use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// The most iovecs one chain may produce, and one readv/writev takes (Linux's UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// Why a chain (or a guest range) cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A device-writable descriptor where the device must read, or the reverse.
    WrongDirection,
    /// A descriptor outside guest memory.
    BadAddress,
    /// More bytes than the device takes in one chain.
    TooLong,
    /// More pieces than one system call takes ([`IOV_MAX`]).
    TooManySegments,
    /// The chain does not end: a loop, a `next` out of range, an unreadable descriptor, or no
    /// descriptor at all.
    Unterminated,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::WrongDirection => "descriptor with the wrong direction",
            ChainError::BadAddress => "descriptor outside guest memory",
            ChainError::TooLong => "chain longer than the device takes",
            ChainError::TooManySegments => "chain with too many descriptors",
            ChainError::Unterminated => "chain without an end (a loop?)",
        })
    }
}

/// What to do with the bytes of a chain past the limit `push_chain` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the chain (e.g. a frame to send that is too large).
    Reject,
    /// Use only the bytes up to the limit (e.g. a receive buffer larger than any frame).
    Truncate,
}

/// A list of host iovecs pointing into guest memory.
pub struct IoVecs(Vec<libc::iovec>);

// SAFETY: the iovecs only point into guest memory mappings, which every thread of the VMM shares
// and which outlive the device state holding these lists (see the module comment). The pointers
// carry no thread affinity.
unsafe impl Send for IoVecs {}

impl IoVecs {
    pub fn with_capacity(n: usize) -> Self {
        IoVecs(Vec::with_capacity(n))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

    /// Every iovec, in order.
    pub fn as_slice(&self) -> &[libc::iovec] {
        &self.0
    }

    /// Every iovec, for a system call loop that advances them as bytes move.
    pub fn as_mut_slice(&mut self) -> &mut [libc::iovec] {
        &mut self.0
    }

    /// The range of every iovec (for the range-taking methods).
    pub fn all(&self) -> Range<usize> {
        0..self.0.len()
    }

    /// The iovecs of `range` (empty when it is out of bounds).
    pub fn get(&self, range: Range<usize>) -> &[libc::iovec] {
        self.0.get(range).unwrap_or(&[])
    }

    fn push(&mut self, base: *mut u8, len: usize) {
        self.0.push(libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        });
    }

    /// Appends the descriptors of `chain`, which must all be device-writable (`writable`) or all
    /// device-readable, covering at most `max_len` bytes (`overflow` says what happens to more).
    /// Zero-length descriptors are skipped. Returns the range of the new iovecs and the bytes
    /// they cover; on error nothing is appended.
    pub fn push_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: Chain<'_>,
        writable: bool,
        max_len: usize,
        overflow: Overflow,
    ) -> Result<(Range<usize>, usize), ChainError> {
        let start = self.0.len();
        let result = self.push_descriptors(mem, chain, writable, max_len, overflow, start);
        if result.is_err() {
            self.0.truncate(start);
        }
        result.map(|total| (start..self.0.len(), total))
    }

    fn push_descriptors(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: Chain<'_>,
        writable: bool,
        max_len: usize,
        overflow: Overflow,
        start: usize,
    ) -> Result<usize, ChainError> {
        let mut total = 0usize;
        // The chain iterator stops quietly after `queue size` descriptors (a loop or an
        // over-long chain), at an index out of range, at an unreadable descriptor or indirect
        // table, and before the total length overflows 32 bits. A chain cut short like that ends
        // on a descriptor that still says NEXT, or yields nothing at all.
        let mut ended = false;
        for desc in chain {
            ended = !desc.has_next();
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
                    return Ok(total); // full: the rest of the chain is not looked at
                }
                continue;
            }
            self.push_pieces(mem, desc.addr(), len, start)?;
            total += len;
        }
        if !ended {
            return Err(ChainError::Unterminated);
        }
        Ok(total)
    }

    /// Appends the guest range `addr..addr+len`, one iovec per memory region it crosses, as long
    /// as the iovecs from `start` on stay within [`IOV_MAX`].
    fn push_pieces(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        start: usize,
    ) -> Result<(), ChainError> {
        let mut covered = 0;
        for slice in mem.get_slices(addr, len) {
            let slice = slice.map_err(|_| ChainError::BadAddress)?;
            if self.0.len() - start >= IOV_MAX {
                return Err(ChainError::TooManySegments);
            }
            covered += slice.len();
            self.push(slice.ptr_guard_mut().as_ptr(), slice.len());
        }
        if covered == len {
            Ok(())
        } else {
            Err(ChainError::BadAddress)
        }
    }

    /// Appends the guest range of `len` bytes at `addr` plus `offset`, as long as the whole
    /// list stays within [`IOV_MAX`] iovecs. On error the list may hold part of the range.
    pub fn push_range(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        offset: u64,
        len: usize,
    ) -> Result<(), ChainError> {
        let addr = addr.checked_add(offset).ok_or(ChainError::BadAddress)?;
        self.push_pieces(mem, addr, len, 0)
    }

    /// Copies the bytes from `offset` on of the buffers of `range` into `dst`; returns how many
    /// were copied (fewer when the buffers end first).
    pub fn read_at(&self, range: Range<usize>, offset: usize, dst: &mut [u8]) -> usize {
        let mut done = 0;
        self.walk(range, offset, dst.len(), |piece| {
            done += piece.copy_to(&mut dst[done..]);
        });
        done
    }

    /// Copies `src` into the buffers of `range`, from `offset` on; returns how many bytes fitted.
    pub fn write_at(&self, range: Range<usize>, offset: usize, src: &[u8]) -> usize {
        let mut done = 0;
        self.walk(range, offset, src.len(), |piece| {
            let n = piece.len();
            piece.copy_from(&src[done..done + n]);
            done += n;
        });
        done
    }

    /// Appends to `out` the pieces of the buffers of `range` that cover `max` bytes from
    /// `offset` on (fewer if they end first). Returns the number of bytes covered.
    pub fn sub(&self, range: Range<usize>, offset: usize, max: usize, out: &mut IoVecs) -> usize {
        let mut done = 0;
        self.walk(range, offset, max, |piece| {
            out.push(piece.ptr_guard_mut().as_ptr(), piece.len());
            done += piece.len();
        });
        done
    }

    /// Calls `f` with each piece of the buffers of `range` covering at most `max` bytes from
    /// `offset` on.
    fn walk(
        &self,
        range: Range<usize>,
        mut offset: usize,
        max: usize,
        mut f: impl FnMut(VolatileSlice<'_>),
    ) {
        let mut left = max;
        for iov in self.get(range) {
            if left == 0 {
                break;
            }
            if offset >= iov.iov_len {
                offset -= iov.iov_len;
                continue;
            }
            let n = (iov.iov_len - offset).min(left);
            // SAFETY: `offset + n <= iov_len`, so the piece lies inside one iovec, which points
            // into mapped guest memory (checked by vm-memory when it was pushed, and mapped for
            // as long as the device holds this list: see the module comment). VolatileSlice
            // accesses it with volatile reads and writes, as memory the guest shares.
            let piece = unsafe { VolatileSlice::new(iov.iov_base.cast::<u8>().add(offset), n) };
            f(piece);
            left -= n;
            offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::Bytes;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Runs `f` on a chain of `descs` (address, length, flags); each but the last says NEXT.
    fn with_chain<R>(
        mem: &GuestMemoryMmap,
        descs: &[(u64, u32, u16)],
        f: impl FnOnce(Chain<'_>) -> R,
    ) -> R {
        let vq = MockSplitQueue::new(mem, 16);
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .map(|&(a, l, fl)| RawDescriptor::from(Descriptor::new(a, l, fl, 0)))
            .collect();
        f(vq.build_desc_chain(&raw).unwrap())
    }

    fn push(
        iovs: &mut IoVecs,
        m: &GuestMemoryMmap,
        descs: &[(u64, u32, u16)],
        writable: bool,
        max_len: usize,
        overflow: Overflow,
    ) -> Result<(Range<usize>, usize), ChainError> {
        with_chain(m, descs, |c| {
            iovs.push_chain(m, c, writable, max_len, overflow)
        })
    }

    #[test]
    fn reads_writes_and_sub_ranges_span_descriptors_and_stop_at_the_end() {
        // Arrange
        let m = mem();
        m.write_slice(b"hello world", GuestAddress(0x8000)).unwrap();
        let mut iovs = IoVecs::with_capacity(8);
        let (range, total) = push(
            &mut iovs,
            &m,
            &[(0x8000, 5, 0), (0x8005, 6, 0)],
            false,
            usize::MAX,
            Overflow::Reject,
        )
        .unwrap();
        // Act
        let mut out = [0u8; 8];
        let read = iovs.read_at(range.clone(), 3, &mut out);
        let mut sub = IoVecs::with_capacity(4);
        let covered = iovs.sub(range.clone(), 4, 100, &mut sub);
        let wrote = iovs.write_at(range.clone(), 6, b"WORLD!!");
        let past = iovs.write_at(range.clone(), 11, b"x");
        // Assert
        assert_eq!(total, 11);
        assert_eq!((read, &out), (8, b"lo world"));
        assert_eq!((covered, sub.len()), (7, 2));
        assert_eq!((wrote, past), (5, 0));
        let mut back = [0u8; 11];
        m.read_slice(&mut back, GuestAddress(0x8000)).unwrap();
        assert_eq!(&back, b"hello WORLD");
    }

    #[test]
    fn wrong_direction_bad_addresses_and_long_chains_are_refused_leaving_nothing() {
        // Arrange
        let m = mem();
        let mut iovs = IoVecs::with_capacity(8);
        let any = usize::MAX;
        // Act
        let mixed = push(
            &mut iovs,
            &m,
            &[(0x8000, 5, F_NEXT), (0x9000, 5, F_WRITE)],
            false,
            any,
            Overflow::Reject,
        );
        let readable_for_write = push(
            &mut iovs,
            &m,
            &[(0x8000, 5, 0)],
            true,
            any,
            Overflow::Reject,
        );
        let past_memory = push(
            &mut iovs,
            &m,
            &[(0xF_FFF0, 0x20, 0)],
            false,
            any,
            Overflow::Reject,
        );
        let wrapping = push(
            &mut iovs,
            &m,
            &[(u64::MAX - 4, 0x20, 0)],
            false,
            any,
            Overflow::Reject,
        );
        let too_long = push(
            &mut iovs,
            &m,
            &[(0x8000, 100, 0)],
            false,
            64,
            Overflow::Reject,
        );
        // Assert
        assert_eq!(mixed.unwrap_err(), ChainError::WrongDirection);
        assert_eq!(readable_for_write.unwrap_err(), ChainError::WrongDirection);
        assert_eq!(past_memory.unwrap_err(), ChainError::BadAddress);
        assert_eq!(wrapping.unwrap_err(), ChainError::BadAddress);
        assert_eq!(too_long.unwrap_err(), ChainError::TooLong);
        assert!(iovs.is_empty(), "a refused chain leaves nothing behind");
    }

    #[test]
    fn truncate_keeps_the_bytes_up_to_the_limit() {
        // Arrange
        let m = mem();
        let mut iovs = IoVecs::with_capacity(8);
        // Act
        let (range, total) = push(
            &mut iovs,
            &m,
            &[(0x8000, 40, F_WRITE | F_NEXT), (0x9000, 40, F_WRITE)],
            true,
            64,
            Overflow::Truncate,
        )
        .unwrap();
        // Assert
        assert_eq!(total, 64);
        assert_eq!(range, 0..2);
        assert_eq!(iovs.as_slice()[1].iov_len, 24);
    }

    #[test]
    fn a_range_crossing_two_memory_regions_becomes_two_iovecs() {
        // Arrange: two regions that touch in guest space but not on the host.
        let m = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1000), 0x1000),
        ])
        .unwrap();
        let mut iovs = IoVecs::with_capacity(4);
        // Act
        let crossing = iovs.push_range(&m, GuestAddress(0xF00), 0, 0x200);
        let outside = iovs.push_range(&m, GuestAddress(0x1F00), 0, 0x200);
        // Assert
        assert!(crossing.is_ok());
        assert_eq!(
            iovs.len(),
            3,
            "two for the crossing range, one before the failure"
        );
        assert_eq!(
            iovs.as_slice()[0].iov_len + iovs.as_slice()[1].iov_len,
            0x200
        );
        assert_eq!(outside.unwrap_err(), ChainError::BadAddress);
    }
}
