//! The backend: a raw disk image (a regular file or a block device) read and written with
//! `preadv`/`pwritev` straight between the host file and guest memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{SECTOR_SHIFT, SECTOR_SIZE};
use crate::virtio::iovec::IOV_MAX;
use crate::{Error, Result};

pub struct Disk {
    file: File,
    path: PathBuf,
    /// Addressable size in 512-byte sectors (a partial last sector is not addressable).
    sectors: u64,
    read_only: bool,
    /// `fallocate(PUNCH_HOLE)` works here (probed at open): DISCARD and WRITE_ZEROES are offered.
    can_punch: bool,
    /// `fallocate(ZERO_RANGE)` has not failed with "not supported" yet.
    can_zero_range: AtomicBool,
}

impl Disk {
    /// Opens `path` (read-only when `read_only`), locks it against other writers, measures it and
    /// probes hole punching.
    pub fn open(path: &Path, read_only: bool) -> Result<Disk> {
        let open_error = |source: io::Error| Error::Open {
            path: path.to_path_buf(),
            source: with_hint(source, read_only),
        };
        // O_NONBLOCK: opening a FIFO given by mistake must not hang; cleared below.
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(open_error)?;
        let file_type = file.metadata().map_err(open_error)?.file_type();
        if !file_type.is_file() && !file_type.is_block_device() {
            return Err(Error::Invalid(format!(
                "{} is not a disk image (not a regular file or a block device)",
                path.display()
            )));
        }
        clear_nonblock(&file).map_err(open_error)?;
        lock(&file, read_only).map_err(|source| {
            if source.kind() == io::ErrorKind::WouldBlock {
                Error::Invalid(format!(
                    "{} is in use by another program (it holds a lock on it)",
                    path.display()
                ))
            } else {
                open_error(source)
            }
        })?;
        let size = (&file).seek(SeekFrom::End(0)).map_err(|source| Error::Io {
            what: format!("cannot measure {}", path.display()),
            source,
        })?;
        let sectors = size >> SECTOR_SHIFT;
        if sectors == 0 {
            return Err(Error::Invalid(format!(
                "{} is empty: a disk image needs at least one 512-byte sector ({size} bytes)",
                path.display()
            )));
        }
        let can_punch = !read_only && probe_punch_hole(&file, size);
        Ok(Disk {
            file,
            path: path.to_path_buf(),
            sectors,
            read_only,
            can_punch,
            can_zero_range: AtomicBool::new(true),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn can_punch(&self) -> bool {
        self.can_punch
    }

    /// Whether `len` bytes at byte `offset` lie inside the addressable part of the disk.
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.sectors << SECTOR_SHIFT)
    }

    /// Fills `iovs` from the disk at byte `offset`. The iovecs are consumed (advanced) as data
    /// arrives; each must point to writable memory of its length.
    pub fn read_at(&self, iovs: &mut [libc::iovec], offset: u64) -> io::Result<()> {
        self.vectored_at(iovs, offset, false)
    }

    /// Writes `iovs` to the disk at byte `offset`; each must point to readable memory.
    pub fn write_at(&self, iovs: &mut [libc::iovec], offset: u64) -> io::Result<()> {
        self.vectored_at(iovs, offset, true)
    }

    fn vectored_at(
        &self,
        mut iovs: &mut [libc::iovec],
        offset: u64,
        write: bool,
    ) -> io::Result<()> {
        let mut offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        while let Some(first) = iovs.first() {
            if first.iov_len == 0 {
                iovs = &mut iovs[1..];
                continue;
            }
            let count = iovs.len().min(IOV_MAX) as libc::c_int;
            // SAFETY: `iovs` holds `count` valid iovec structs; the caller guarantees that each
            // points to memory of its length (guest memory checked against the guest's regions),
            // readable for pwritev and writable for preadv, that stays mapped during the call.
            let done = unsafe {
                if write {
                    libc::pwritev(self.file.as_raw_fd(), iovs.as_ptr(), count, offset)
                } else {
                    libc::preadv(self.file.as_raw_fd(), iovs.as_ptr(), count, offset)
                }
            };
            if done < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if done == 0 {
                // The file shrank under us (or a device returned nothing): never loop forever.
                return Err(if write {
                    io::ErrorKind::WriteZero.into()
                } else {
                    io::ErrorKind::UnexpectedEof.into()
                });
            }
            offset += done as i64;
            iovs = advance(iovs, done as usize);
        }
        Ok(())
    }

    /// Makes everything written so far durable (`fdatasync`).
    pub fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    /// Deallocates `len` bytes at `offset` (they read back as zeroes).
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Makes `len` bytes at `offset` read as zeroes; `may_unmap` allows deallocating them.
    /// `fallocate(ZERO_RANGE)` where the file system has it; otherwise a punched hole (reads as
    /// zeroes), allocated again unless `may_unmap` (as QEMU does). Never writes the zeroes
    /// themselves: a request costs metadata work, not a copy of its size.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        if self.can_zero_range.load(Ordering::Relaxed) {
            match self.fallocate(
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.can_zero_range.store(false, Ordering::Relaxed)
                }
                other => return other,
            }
        }
        self.punch_hole(offset, len)?;
        if !may_unmap {
            self.fallocate(libc::FALLOC_FL_KEEP_SIZE, offset, len)?;
        }
        Ok(())
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let len = i64::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        loop {
            // SAFETY: fallocate on a file descriptor we own; no memory is passed.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, len) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Drops the first `n` bytes from `iovs`: whole iovecs, then part of the next.
fn advance(iovs: &mut [libc::iovec], mut n: usize) -> &mut [libc::iovec] {
    let mut skip = 0;
    for iov in iovs.iter() {
        if n < iov.iov_len {
            break;
        }
        n -= iov.iov_len;
        skip += 1;
    }
    let rest = &mut iovs[skip..];
    if let Some(first) = rest.first_mut() {
        // n < first.iov_len here, so the pointer stays inside the same buffer.
        first.iov_base = (first.iov_base as usize + n) as *mut libc::c_void;
        first.iov_len -= n;
    }
    rest
}

/// `e` as a user reads it: the system's message without Rust's " (os error N)", plus what to do
/// when asking for a read-only disk would help.
fn with_hint(e: io::Error, read_only: bool) -> io::Error {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    let hint = match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::EROFS) if !read_only => {
            " (add ,ro to attach it read-only)"
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("{text}{hint}"))
}

fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a file descriptor we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One writer or any number of readers per image, across processes (`flock`, advisory).
fn lock(file: &File, read_only: bool) -> io::Result<()> {
    let op = if read_only {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // File systems without flock support: go on unlocked.
            Some(libc::ENOLCK | libc::EOPNOTSUPP) => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// Whether hole punching works, tried past the end of the file where it changes no data.
fn probe_punch_hole(file: &File, size: u64) -> bool {
    let Some(offset) = size
        .checked_next_multiple_of(4096)
        .and_then(|o| i64::try_from(o).ok())
    else {
        return false;
    };
    // SAFETY: fallocate on a file descriptor we own; no memory is passed. With KEEP_SIZE and a
    // range past the end, nothing in the file changes.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            SECTOR_SIZE as i64 * 8,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_zeroes_without_zero_range_punches_and_reallocates() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("vmctl-blk-wz-{}.img", std::process::id()));
        std::fs::write(&path, vec![0xEEu8; 256 << 10]).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        let disk = Disk::open(&path, false).unwrap();
        if !disk.can_punch() {
            let _ = std::fs::remove_file(&path);
            test_skip::report("the temporary directory's file system cannot punch holes");
            return;
        }
        disk.can_zero_range.store(false, Ordering::Relaxed);
        let blocks = || std::fs::metadata(&path).unwrap().blocks();
        let full = blocks();
        // Without unmap: zeroes, still allocated.
        disk.write_zeroes(0, 64 << 10, false).unwrap();
        assert_eq!(blocks(), full);
        // With unmap: zeroes, deallocated.
        disk.write_zeroes(128 << 10, 64 << 10, true).unwrap();
        assert!(blocks() < full);
        let data = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(data[..64 << 10].iter().all(|&b| b == 0));
        assert!(data[64 << 10..128 << 10].iter().all(|&b| b == 0xEE));
        assert!(data[128 << 10..192 << 10].iter().all(|&b| b == 0));
        assert!(data[192 << 10..].iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn advance_skips_whole_and_partial_iovecs() {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let mut iovs = [
            libc::iovec {
                iov_base: a.as_mut_ptr().cast(),
                iov_len: 8,
            },
            libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 8,
            },
        ];
        let base_b = iovs[1].iov_base as usize;
        let rest = advance(&mut iovs, 11);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].iov_len, 5);
        assert_eq!(rest[0].iov_base as usize, base_b + 3);
        let rest = advance(rest, 5);
        assert!(rest.is_empty());
    }
}
