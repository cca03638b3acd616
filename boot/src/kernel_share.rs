//! Sharing an ELF kernel's pages between VMs: after the loader has copied the kernel into guest
//! RAM, the page-aligned part of each loaded segment is replaced by a private (copy-on-write)
//! mapping of the same bytes of the kernel file. Until the guest writes a page it is the host's
//! page-cache page, one copy for every VM booted from that file; a page the guest writes becomes
//! its own, as before. For a container kernel this is most of its ~11 MiB of text.
//!
//! The file must not be changed in place while VMs use it (replace it by a rename, as `make`
//! and the kernel cache do): a page not yet copied would change under the guest, and a truncated
//! file would fault. So this is for the runtime's own installed kernel, not for `vmctl boot` of a
//! kernel developer's build tree.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMemory;
use crate::{Error, Result};

const PAGE: u64 = 4096;

/// A loadable segment: file bytes `offset..offset + filesz` at guest address `paddr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
}

/// The pages of `seg` that can be mapped from the file: (guest address, file offset, length),
/// whole pages inside the segment's file bytes, when file offset and guest address agree modulo
/// the page size.
pub fn shareable(seg: Segment) -> Option<(u64, u64, u64)> {
    if seg.offset % PAGE != seg.paddr % PAGE {
        return None;
    }
    let start = seg.paddr.checked_add(PAGE - 1)? / PAGE * PAGE;
    let end = seg.paddr.checked_add(seg.filesz)? / PAGE * PAGE;
    if end <= start {
        return None;
    }
    Some((
        start,
        seg.offset.checked_add(start - seg.paddr)?,
        end - start,
    ))
}

/// The identity of a file (device, inode, size, modification time), taken when it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// An ELF kernel as [`crate::load_kernel`] read it: the open file, its identity when it was
/// opened, and its loaded segments with file bytes.
#[derive(Debug)]
pub struct FilePages {
    pub(crate) file: File,
    pub(crate) identity: FileIdentity,
    pub(crate) segments: Vec<Segment>,
}

/// Maps the shareable pages of every loaded segment of an ELF kernel from the very file
/// [`crate::load_kernel`] read (`pages`; `path` names it in errors). Call it right after that
/// load, before any vCPU runs. A file changed in place since it was opened may hold other bytes
/// than those loaded, so then nothing is shared. Returns the bytes now mapped from the file.
pub fn share_kernel_pages(mem: &GuestMemory, path: &Path, pages: &FilePages) -> Result<u64> {
    let fail = |reason: String| Error::KernelLoad {
        path: path.to_owned(),
        reason,
    };
    let file = &pages.file;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if FileIdentity::of(&meta) != pages.identity || !mappable(file) {
        return Ok(0);
    }
    let file_len = meta.len();
    let mut shared = 0;
    for (gpa, offset, len) in pages.segments.iter().copied().filter_map(shareable) {
        // (a page mapped past the end of the file would fault)
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            continue;
        }
        let last = GuestAddress(gpa + len - 1);
        let same_region = match (mem.find_region(GuestAddress(gpa)), mem.find_region(last)) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => false,
        };
        if !same_region {
            continue;
        }
        let host = mem
            .get_host_address(GuestAddress(gpa))
            .map_err(|e| fail(e.to_string()))?;
        let (Ok(off), Ok(size)) = (libc::off_t::try_from(offset), usize::try_from(len)) else {
            continue;
        };
        // SAFETY: `host..host + size` lies inside one guest RAM region (checked above), a private
        // read-write mapping this process owns; replacing it with a private read-write mapping of
        // file bytes equal to what the loader copied there keeps every address valid and its
        // contents unchanged. No vCPU runs yet.
        let got = unsafe {
            libc::mmap(
                host.cast(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                off,
            )
        };
        if got == libc::MAP_FAILED {
            // MAP_FIXED may have unmapped the range already: the guest cannot run like that.
            return Err(fail(format!(
                "cannot map its pages into guest memory: {}",
                std::io::Error::last_os_error()
            )));
        }
        shared += len;
    }
    Ok(shared)
}

/// Whether the file can be mapped privately at all (some file systems cannot): tried away from
/// guest memory, since a failed MAP_FIXED may leave a hole where guest RAM was.
fn mappable(file: &File) -> bool {
    // SAFETY: a new private mapping of one page at an address the kernel picks, unmapped at once.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(p, PAGE as usize);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::RamLayout;
    use vm_memory::Bytes;

    /// A file holding a header page and then `data`, which a loaded segment put at `paddr`,
    /// opened as `load_kernel` leaves it.
    fn loaded_file(dir: &Path, paddr: u64, data: &[u8]) -> (std::path::PathBuf, FilePages) {
        let mut f = vec![0u8; 0x1000];
        f.extend_from_slice(data);
        let path = dir.join("kernel.elf");
        std::fs::write(&path, f).unwrap();
        let file = File::open(&path).unwrap();
        let identity = FileIdentity::of(&file.metadata().unwrap());
        let segments = vec![Segment {
            offset: 0x1000,
            paddr,
            filesz: data.len() as u64,
        }];
        (
            path,
            FilePages {
                file,
                identity,
                segments,
            },
        )
    }

    #[test]
    fn shared_pages_hold_the_file_and_stay_private_to_the_guest() {
        // Arrange: 3 pages and a half of data at 1 MiB, guest memory holding a loaded copy
        let dir = std::env::temp_dir().join(format!("vmctl-kernel-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..0x3800u32).map(|i| (i % 251) as u8).collect();
        let (path, pages) = loaded_file(&dir, 0x10_0000, &data);
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        mem.write_slice(&data, GuestAddress(0x10_0000)).unwrap();

        // Act
        let shared = share_kernel_pages(&mem, &path, &pages).unwrap();
        mem.write_slice(b"guest", GuestAddress(0x10_0000)).unwrap();

        // Assert: whole pages mapped, contents unchanged, writes private, the file untouched
        assert_eq!(shared, 0x3000);
        let mut back = vec![0u8; data.len()];
        mem.read_slice(&mut back, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(&back[..5], b"guest");
        assert_eq!(&back[5..], &data[5..]);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            maps.contains(path.to_str().unwrap()),
            "the pages map the file"
        );
        assert_eq!(&std::fs::read(&path).unwrap()[0x1000..0x1005], &data[..5]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_changed_since_the_load_shares_nothing() {
        // Arrange: the file as loaded, then rewritten in place
        let dir = std::env::temp_dir().join(format!("vmctl-kernel-share-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (path, pages) = loaded_file(&dir, 0x10_0000, &[7u8; 0x2000]);
        std::fs::write(&path, vec![8u8; 0x4000]).unwrap();
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();

        // Act / assert
        assert_eq!(share_kernel_pages(&mem, &path, &pages).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_whole_congruent_pages_are_shared() {
        // Arrange / act / assert: aligned segment, all pages
        let seg = Segment {
            offset: 0x20_0000,
            paddr: 0x100_0000,
            filesz: 0xb0_10dc,
        };
        assert_eq!(
            shareable(seg),
            Some((0x100_0000, 0x20_0000, 0xb0_1000)),
            "the partial last page stays a copy"
        );
        // an unaligned start skips to the next page
        let seg = Segment {
            offset: 0x1100,
            paddr: 0x10_1100,
            filesz: 0x3000,
        };
        assert_eq!(shareable(seg), Some((0x10_2000, 0x2000, 0x2000)));
        // offsets that disagree modulo the page: nothing
        let seg = Segment {
            offset: 0x1000,
            paddr: 0x10_0800,
            filesz: 0x10_000,
        };
        assert_eq!(shareable(seg), None);
        // smaller than a page: nothing
        let seg = Segment {
            offset: 0x1000,
            paddr: 0x1000,
            filesz: 0x800,
        };
        assert_eq!(shareable(seg), None);
        // overflowing addresses: nothing
        let seg = Segment {
            offset: 0,
            paddr: u64::MAX - 10,
            filesz: 0x2000,
        };
        assert_eq!(shareable(seg), None);
    }
}
