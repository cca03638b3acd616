//! Guest buffers as host iovecs, so data moves between guest memory and the host sockets with one
//! readv/writev and no copy through a bounce buffer.
//!
//! A [`GuestIovs`] is scratch space owned by the device: it is filled from descriptor chains,
//! used for a few system calls, and cleared before the device returns to the event loop. Every
//! entry was produced by vm-memory from a descriptor checked against guest memory, and guest
//! memory stays mapped for as long as the device holds its `GuestMemoryMmap` (which it does
//! whenever it is active, the only time it fills a `GuestIovs`).

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;

use vm_memory::GuestMemoryBackend;

use crate::virtio::queue::Chain;
use crate::virtio::GuestMemoryMmap;

/// The most segments a single chain may contribute (and the most one readv/writev takes).
pub const MAX_SEGMENTS: usize = 1024;

/// Why a descriptor chain cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A descriptor has the wrong direction (device-readable where writable is needed, or
    /// the other way round).
    WrongDirection,
    /// A descriptor points outside guest RAM.
    BadAddress,
    /// More segments than [`MAX_SEGMENTS`].
    TooLong,
    /// A loop, an over-long chain, a next index out of range, or an empty chain.
    Malformed,
}

pub struct GuestIovs {
    iovs: Vec<libc::iovec>,
}

// SAFETY: the iovecs only point into guest memory, which is shared with (and safe to access from)
// any thread; they are plain addresses and lengths with no thread affinity.
unsafe impl Send for GuestIovs {}

impl GuestIovs {
    pub fn with_capacity(n: usize) -> Self {
        GuestIovs {
            iovs: Vec::with_capacity(n),
        }
    }

    pub fn clear(&mut self) {
        self.iovs.clear();
    }

    pub fn len(&self) -> usize {
        self.iovs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.iovs.is_empty()
    }

    pub fn get(&self, range: Range<usize>) -> &[libc::iovec] {
        self.iovs.get(range).unwrap_or(&[])
    }

    fn push(&mut self, base: *mut u8, len: usize) {
        self.iovs.push(libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        });
    }

    /// Appends every descriptor of `chain`, which must all be device-writable (`writable`) or
    /// all device-readable. Zero-length descriptors are skipped. On error nothing is appended.
    /// Returns the range of the new entries and their total length.
    pub fn push_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: Chain<'_>,
        writable: bool,
    ) -> Result<(Range<usize>, usize), ChainError> {
        let start = self.iovs.len();
        let result = self.push_chain_inner(mem, chain, writable, start);
        if result.is_err() {
            self.iovs.truncate(start);
        }
        result.map(|total| (start..self.iovs.len(), total))
    }

    fn push_chain_inner(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: Chain<'_>,
        writable: bool,
        start: usize,
    ) -> Result<usize, ChainError> {
        let mut total = 0usize;
        // The chain iterator stops quietly after `queue size` descriptors (a loop or an
        // over-long chain), at a descriptor index out of range, at an unreadable descriptor or
        // indirect table, and before the total length overflows 32 bits. A chain cut short like
        // that ends on a descriptor that still says NEXT, or yields nothing at all.
        let mut ended = false;
        for desc in chain {
            ended = !desc.has_next();
            if desc.is_write_only() != writable {
                return Err(ChainError::WrongDirection);
            }
            let len = desc.len() as usize;
            if len == 0 {
                continue;
            }
            for slice in mem.get_slices(desc.addr(), len) {
                let slice = slice.map_err(|_| ChainError::BadAddress)?;
                if self.iovs.len() - start >= MAX_SEGMENTS {
                    return Err(ChainError::TooLong);
                }
                self.push(slice.ptr_guard_mut().as_ptr(), slice.len());
            }
            total = total.checked_add(len).ok_or(ChainError::TooLong)?;
        }
        if !ended {
            return Err(ChainError::Malformed);
        }
        Ok(total)
    }

    /// Copies bytes starting `offset` bytes into the buffers of `range` into `dst`; returns how
    /// many were copied (fewer when the buffers end first).
    pub fn copy_out(&self, range: Range<usize>, offset: usize, dst: &mut [u8]) -> usize {
        let mut done = 0;
        self.walk(range, offset, dst.len(), |ptr, n| {
            // SAFETY: `ptr..ptr+n` lies inside one iovec built from a checked guest memory
            // slice (see the module comment); `dst[done..done+n]` is in bounds because `walk`
            // never yields more than `dst.len()` bytes in all.
            unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr().add(done), n) };
            done += n;
        });
        done
    }

    /// Copies `src` into the buffers of `range`, starting `offset` bytes in; returns how many
    /// bytes were copied.
    pub fn copy_in(&self, range: Range<usize>, offset: usize, src: &[u8]) -> usize {
        let mut done = 0;
        self.walk(range, offset, src.len(), |ptr, n| {
            // SAFETY: as in `copy_out`, with guest memory as the destination.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(done), ptr, n) };
            done += n;
        });
        done
    }

    /// Appends to `out` the pieces of the buffers of `range` that cover `max` bytes from
    /// `offset` on (fewer if they end first). Returns the number of bytes covered.
    pub fn sub(
        &self,
        range: Range<usize>,
        offset: usize,
        max: usize,
        out: &mut GuestIovs,
    ) -> usize {
        let mut done = 0;
        self.walk(range, offset, max, |ptr, n| {
            out.push(ptr, n);
            done += n;
        });
        done
    }

    /// Calls `f(pointer, length)` for each piece of the buffers of `range` covering at most
    /// `max` bytes starting `offset` bytes in.
    fn walk(
        &self,
        range: Range<usize>,
        mut offset: usize,
        max: usize,
        mut f: impl FnMut(*mut u8, usize),
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
            // `offset < iov_len`, so the pointer stays inside the iovec.
            f(iov.iov_base.cast::<u8>().wrapping_add(offset), n);
            left -= n;
            offset = 0;
        }
    }
}

/// `readv` into guest buffers; at most [`MAX_SEGMENTS`] of them are used.
pub fn readv(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<usize> {
    let n = iovs.len().min(MAX_SEGMENTS);
    // SAFETY: each iovec describes writable guest memory that stays mapped during the call (see
    // the module comment); the kernel writes at most `iov_len` bytes into each.
    let r = unsafe { libc::readv(fd, iovs.as_ptr(), n as libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `writev` to a socket (as `sendmsg` with MSG_NOSIGNAL, so a peer that went away gives EPIPE
/// and no SIGPIPE); at most [`MAX_SEGMENTS`] buffers are used.
pub fn writev(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<usize> {
    let n = iovs.len().min(MAX_SEGMENTS);
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_ptr().cast_mut();
    msg.msg_iovlen = n as _;
    // SAFETY: `msg` points at `n` iovecs describing readable memory (guest memory or our own
    // buffers) that stays valid during the call; the kernel only reads from them.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const F_WRITE: u16 = 2;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

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

    #[test]
    fn collects_copies_and_splits() {
        let m = mem();
        m.write_slice(b"hello world", GuestAddress(0x8000)).unwrap();
        let mut iovs = GuestIovs::with_capacity(8);
        let (range, total) = with_chain(&m, &[(0x8000, 5, 0), (0x8005, 6, 0)], |c| {
            iovs.push_chain(&m, c, false).unwrap()
        });
        assert_eq!(total, 11);
        let mut out = [0u8; 8];
        assert_eq!(iovs.copy_out(range.clone(), 3, &mut out), 8);
        assert_eq!(&out, b"lo world");
        let mut sub = GuestIovs::with_capacity(4);
        assert_eq!(iovs.sub(range.clone(), 4, 100, &mut sub), 7);
        assert_eq!(sub.len(), 2);
        assert_eq!(iovs.copy_in(range.clone(), 6, b"WORLD!!"), 5);
        let mut back = [0u8; 11];
        m.read_slice(&mut back, GuestAddress(0x8000)).unwrap();
        assert_eq!(&back, b"hello WORLD");
    }

    #[test]
    fn wrong_direction_and_bad_addresses_are_refused() {
        let m = mem();
        let mut iovs = GuestIovs::with_capacity(8);
        let r = with_chain(&m, &[(0x8000, 5, 0), (0x9000, 5, F_WRITE)], |c| {
            iovs.push_chain(&m, c, false)
        });
        assert_eq!(r.unwrap_err(), ChainError::WrongDirection);
        let r = with_chain(&m, &[(0x8000, 5, 0)], |c| iovs.push_chain(&m, c, true));
        assert_eq!(r.unwrap_err(), ChainError::WrongDirection);
        let r = with_chain(&m, &[(0xF_FFF0, 0x20, 0)], |c| {
            iovs.push_chain(&m, c, false)
        });
        assert_eq!(r.unwrap_err(), ChainError::BadAddress);
        let r = with_chain(&m, &[(u64::MAX - 4, 0x20, 0)], |c| {
            iovs.push_chain(&m, c, false)
        });
        assert_eq!(r.unwrap_err(), ChainError::BadAddress);
        assert!(iovs.is_empty(), "a refused chain leaves nothing behind");
    }
}
