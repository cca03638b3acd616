//! The backing file and its mapping into the VMM's address space.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::hugepages::Collapser;
use super::ALIGNMENT;
use crate::{Error, Result};

/// Highest guest-physical end of a pmem region: 2^46, x86-64 Linux's MAX_PHYSMEM_BITS with
/// 4-level paging (the guest cannot address memory above it).
pub const MAX_GUEST_END: u64 = 1 << 46;

const PAGE_SIZE: u64 = 4096;

/// An open file mapped at an [`ALIGNMENT`]-aligned host address, padded with anonymous memory up
/// to a multiple of [`ALIGNMENT`]. Unmapped on drop.
#[derive(Debug)]
pub struct FileMapping {
    file: File,
    /// Host virtual address of the mapping (kept as an integer so the device stays `Send`).
    addr: usize,
    /// Length of the whole mapping: the file's size rounded up to [`ALIGNMENT`].
    len: usize,
    file_len: u64,
    read_only: bool,
    /// Collapsing a tmpfs file's pages into huge pages, in the background (see `hugepages`).
    collapser: Option<Collapser>,
}

impl FileMapping {
    /// Opens `path` (read-only when `read_only`) and maps it, to be placed at `guest_addr`.
    pub fn open(path: &Path, read_only: bool, guest_addr: u64) -> Result<FileMapping> {
        let shown = path.display();
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| Error::Open {
                path: path.to_path_buf(),
                source: plain(e),
            })?;
        let kind = file
            .metadata()
            .map_err(|e| Error::Io {
                what: format!("cannot read the attributes of {shown}"),
                source: plain(e),
            })?
            .file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(Error::Invalid(format!(
                "pmem {shown} is not a regular file or a block device"
            )));
        }
        // Works for regular files and block devices alike.
        let file_len = (&file).seek(SeekFrom::End(0)).map_err(|e| Error::Io {
            what: format!("cannot read the size of {shown}"),
            source: plain(e),
        })?;
        if file_len == 0 {
            return Err(Error::Invalid(format!(
                "pmem {shown} is empty: the guest needs at least one byte (it sees the file padded to a multiple of 2 MiB)"
            )));
        }
        if !guest_addr.is_multiple_of(ALIGNMENT) {
            return Err(Error::Invalid(format!(
                "pmem {shown}: guest address {guest_addr:#x} is not 2 MiB aligned"
            )));
        }
        let len = file_len
            .checked_next_multiple_of(ALIGNMENT)
            .filter(|len| {
                guest_addr
                    .checked_add(*len)
                    .is_some_and(|end| end <= MAX_GUEST_END)
            })
            .and_then(|len| usize::try_from(len).ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "pmem {shown} is too large ({file_len} bytes): it must fit below {} TiB of guest physical memory",
                    MAX_GUEST_END >> 40
                ))
            })?;
        let mut mapping = FileMapping {
            file,
            addr: 0,
            len,
            file_len,
            read_only,
            collapser: None,
        };
        mapping.addr = map(&mapping.file, len, file_len, read_only).map_err(|e| Error::Io {
            what: format!("cannot map {shown} into memory"),
            source: plain(e),
        })?;
        // The file's pages only: the padding is anonymous memory, huge on its own (MADV_HUGEPAGE).
        let file_part = usize::try_from(file_len).map_or(0, |n| n.min(len));
        mapping.collapser = Collapser::start(&mapping.file, mapping.addr, file_part);
        Ok(mapping)
    }

    pub fn host_addr(&self) -> u64 {
        self.addr as u64
    }

    /// The length of the mapping (the region the guest sees).
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // Stop touching the mapping before it goes away.
        self.collapser.take();
        if self.addr != 0 {
            // SAFETY: `addr..addr + len` is the mapping `map` created and only this struct owns;
            // the VMM drops the device (and so this mapping) only after its vCPUs stopped.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        }
    }
}

/// Maps `file` at an `ALIGNMENT`-aligned address: the file's pages first (shared, or private when
/// `read_only`), then anonymous zero pages up to `len`. Returns the address.
fn map(file: &File, len: usize, file_len: u64, read_only: bool) -> io::Result<usize> {
    let align = ALIGNMENT as usize;
    let file_pages = file_len.next_multiple_of(PAGE_SIZE);
    let file_pages = usize::try_from(file_pages)
        .ok()
        .filter(|n| *n <= len)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let reserve = len
        .checked_add(align)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing: it cannot alias
    // any memory Rust knows about.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = base as usize;
    let start = base.next_multiple_of(align);
    let head = start - base;
    let tail = reserve - head - len;
    // SAFETY: both ranges lie inside the reservation just made, outside `start..start + len`.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
    }
    let flags = libc::MAP_FIXED
        | libc::MAP_NORESERVE
        | if read_only {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
    // SAFETY: MAP_FIXED replaces pages of our own reservation only (`file_pages <= len`).
    let mapped = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            file_pages,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        // SAFETY: the reservation is ours and nothing refers to it yet.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
        return Err(e);
    }
    // Lets KVM use 2 MiB mappings when the file's pages are huge (tmpfs with huge pages);
    // only advice, so a failure changes nothing.
    // SAFETY: madvise on our own mapping; MADV_HUGEPAGE does not change its contents.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    Ok(start)
}

/// `e` without the " (os error N)" suffix, for one-line messages a user reads.
fn plain(e: io::Error) -> io::Error {
    if e.raw_os_error().is_none() {
        return e;
    }
    let text = e.to_string();
    let text = text
        .rsplit_once(" (os error ")
        .map_or(text.as_str(), |(msg, _)| msg);
    io::Error::new(e.kind(), text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    fn file_with(contents: &[u8]) -> TempFile {
        let f = TempFile::new_with_prefix("/tmp/vmctl-pmem-test").unwrap();
        std::fs::write(f.as_path(), contents).unwrap();
        f
    }

    fn bytes_at(m: &FileMapping, offset: usize, n: usize) -> Vec<u8> {
        // SAFETY: test-only read inside the live mapping (callers keep offset + n <= len).
        unsafe { std::slice::from_raw_parts((m.addr + offset) as *const u8, n).to_vec() }
    }

    fn write_at(m: &FileMapping, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= m.len);
        // SAFETY: test-only write inside the live, writable mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), (m.addr + offset) as *mut u8, data.len())
        };
    }

    #[test]
    fn a_short_file_is_padded_to_2_mib_and_aligned() {
        let f = file_with(&[7u8; 5000]);
        let m = FileMapping::open(f.as_path(), false, 1 << 32).unwrap();
        assert_eq!(m.len(), ALIGNMENT);
        assert_eq!(m.file_len(), 5000);
        assert!(m.host_addr().is_multiple_of(ALIGNMENT));
        assert_eq!(bytes_at(&m, 4990, 10), [7u8; 10]);
        // Past the end of the file: zeros, in the file's last page and in the padding.
        assert_eq!(bytes_at(&m, 5000, 8), [0u8; 8]);
        assert_eq!(bytes_at(&m, ALIGNMENT as usize - 8, 8), [0u8; 8]);
    }

    #[test]
    fn an_aligned_file_is_mapped_whole_without_padding() {
        let f = file_with(&vec![3u8; 4 << 20]);
        let m = FileMapping::open(f.as_path(), true, 1 << 32).unwrap();
        assert_eq!(m.len(), 4 << 20);
        assert_eq!(bytes_at(&m, (4 << 20) - 4, 4), [3u8; 4]);
    }

    #[test]
    fn writes_reach_a_read_write_file() {
        let f = file_with(&[0u8; 8192]);
        let m = FileMapping::open(f.as_path(), false, 0).unwrap();
        write_at(&m, 4096, b"hello");
        m.file().sync_all().unwrap();
        let back = std::fs::read(f.as_path()).unwrap();
        assert_eq!(&back[4096..4101], b"hello");
        assert_eq!(back.len(), 8192, "the padding never grows the file");
    }

    #[test]
    fn writes_to_a_read_only_mapping_stay_private() {
        let f = file_with(&[1u8; 8192]);
        let m = FileMapping::open(f.as_path(), true, 0).unwrap();
        write_at(&m, 0, b"guest");
        write_at(&m, (ALIGNMENT - 5) as usize, b"tail!");
        assert_eq!(bytes_at(&m, 0, 5), b"guest");
        drop(m);
        assert_eq!(std::fs::read(f.as_path()).unwrap(), vec![1u8; 8192]);
    }

    #[test]
    fn a_read_only_file_needs_only_read_permission() {
        let f = file_with(&[1u8; 100]);
        let mut perms = std::fs::metadata(f.as_path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
        std::fs::set_permissions(f.as_path(), perms).unwrap();
        assert!(FileMapping::open(f.as_path(), true, 0).is_ok());
    }

    #[test]
    fn a_tmpfs_file_keeps_its_contents_while_huge_pages_are_made() {
        let dir = Path::new("/dev/shm");
        if !dir.is_dir() {
            return;
        }
        let f = TempFile::new_in(dir).unwrap();
        let data: Vec<u8> = (0..(4 << 20) + 5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(f.as_path(), &data).unwrap();
        let mut m = FileMapping::open(f.as_path(), true, 0).unwrap();
        if let Some(c) = m.collapser.take() {
            c.wait();
        }
        assert_eq!(bytes_at(&m, 0, data.len()), data);
        assert_eq!(bytes_at(&m, data.len(), 16), [0u8; 16]);
    }

    #[test]
    fn a_missing_file_gives_a_plain_message() {
        let e = FileMapping::open(Path::new("/nonexistent/x.img"), false, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot open /nonexistent/x.img: No such file or directory"
        );
    }

    #[test]
    fn empty_files_directories_and_bad_addresses_are_refused() {
        let empty = file_with(b"");
        let e = FileMapping::open(empty.as_path(), false, 0).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");

        let e = FileMapping::open(Path::new("/tmp"), true, 0).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");

        let f = file_with(&[0u8; 10]);
        let e = FileMapping::open(f.as_path(), false, 4096).unwrap_err();
        assert!(e.to_string().contains("not 2 MiB aligned"), "{e}");
        let e = FileMapping::open(f.as_path(), false, MAX_GUEST_END).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let e = FileMapping::open(f.as_path(), false, u64::MAX - (ALIGNMENT - 1)).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn os_error_suffix_is_dropped() {
        let e = plain(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.to_string(), "Permission denied");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
