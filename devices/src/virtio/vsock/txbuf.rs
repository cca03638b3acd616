//! Guest-to-host bytes the host socket could not take yet: a ring buffer bounded by the credit
//! the connection advertises to the guest, allocated on first use.

use std::io;
use std::ops::Range;
use std::os::fd::RawFd;

use super::iov;
use crate::virtio::iovec::IoVecs;

/// The buffer has no room for the bytes: the guest sent more than its credit allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

pub struct TxBuf {
    data: Vec<u8>,
    cap: usize,
    head: usize,
    len: usize,
}

impl TxBuf {
    pub fn new(cap: usize) -> Self {
        TxBuf {
            data: Vec::new(),
            cap,
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The free parts of the ring, in order: (tail..end, start..head).
    fn free_ranges(&self) -> (Range<usize>, Range<usize>) {
        let tail = (self.head + self.len) % self.cap.max(1);
        if self.len == self.cap {
            (0..0, 0..0)
        } else if tail >= self.head {
            (tail..self.cap, 0..self.head)
        } else {
            (tail..self.head, 0..0)
        }
    }

    fn ensure_allocated(&mut self) {
        if self.data.len() != self.cap {
            self.data = vec![0; self.cap];
        }
    }

    /// Appends `count` bytes taken from the guest buffers `range` of `iovs`, starting `offset`
    /// bytes in. Nothing is appended when they do not all fit.
    pub fn push_guest(
        &mut self,
        iovs: &IoVecs,
        range: Range<usize>,
        offset: usize,
        count: usize,
    ) -> Result<(), Full> {
        if count > self.cap - self.len {
            return Err(Full);
        }
        if count == 0 {
            return Ok(());
        }
        self.ensure_allocated();
        let (a, b) = self.free_ranges();
        let mut done = 0;
        for r in [a, b] {
            if done == count {
                break;
            }
            let n = r.len().min(count - done);
            let dst = &mut self.data[r.start..r.start + n];
            done += iovs.read_at(range.clone(), offset + done, dst);
        }
        self.len += done;
        Ok(())
    }

    /// Appends host bytes (the handshake reply). Nothing is appended when they do not all fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Full> {
        if bytes.len() > self.cap - self.len {
            return Err(Full);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.ensure_allocated();
        let (a, b) = self.free_ranges();
        let mut done = 0;
        for r in [a, b] {
            let n = r.len().min(bytes.len() - done);
            self.data[r.start..r.start + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
        self.len += done;
        Ok(())
    }

    /// Writes as much as `fd` takes without blocking; returns the number of bytes written.
    pub fn flush_to(&mut self, fd: RawFd) -> io::Result<usize> {
        if self.len == 0 {
            return Ok(0);
        }
        let first = (self.cap - self.head).min(self.len);
        let base = self.data.as_mut_ptr();
        let iovs = [
            libc::iovec {
                iov_base: base.wrapping_add(self.head).cast(),
                iov_len: first,
            },
            libc::iovec {
                iov_base: base.cast(),
                iov_len: self.len - first,
            },
        ];
        let count = if self.len > first { 2 } else { 1 };
        let n = iov::writev(fd, &iovs[..count])?;
        let n = n.min(self.len);
        self.head = (self.head + n) % self.cap;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn bounded_and_wraps_around() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut t = TxBuf::new(8);
        t.push(b"abcdef").unwrap();
        assert_eq!(t.push(b"xyz"), Err(Full));
        assert_eq!(t.len(), 6, "a refused push adds nothing");
        assert_eq!(t.flush_to(a.as_raw_fd()).unwrap(), 6);
        t.push(b"123456").unwrap();
        t.push(b"78").unwrap();
        assert_eq!(t.push(b"9"), Err(Full));
        assert_eq!(t.flush_to(a.as_raw_fd()).unwrap(), 8);
        assert!(t.is_empty());
        let mut got = [0u8; 14];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcdef12345678");
    }

    #[test]
    fn nothing_is_allocated_until_needed() {
        let t = TxBuf::new(256 * 1024);
        assert_eq!(t.data.capacity(), 0);
    }
}
