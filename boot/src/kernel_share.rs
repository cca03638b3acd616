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
use std::io::{Read, Seek, SeekFrom};
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

/// The identity of a file (device, inode, size, modification time), taken before it is loaded.
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

/// Maps the shareable pages of every loaded segment of the ELF kernel at `path` from the file.
/// Call it right after [`crate::load_kernel`] loaded that file, before any vCPU runs, with the
/// file's identity taken before the load: a file replaced since (a kernel reinstalled while a
/// container starts) may hold other bytes than those loaded, so then nothing is shared. Returns
/// the bytes now mapped from the file; a bzImage (whose kernel is compressed) shares nothing.
pub fn share_kernel_pages(mem: &GuestMemory, path: &Path, loaded: FileIdentity) -> Result<u64> {
    let fail = |reason: String| Error::KernelLoad {
        path: path.to_owned(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if FileIdentity::of(&meta) != loaded {
        return Ok(0);
    }
    if !mappable(&file) {
        return Ok(0);
    }
    let segments = elf_segments(&mut file).map_err(|e| fail(e.to_string()))?;
    let file_len = meta.len();
    let mut shared = 0;
    for (gpa, offset, len) in segments.into_iter().filter_map(shareable) {
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

/// The PT_LOAD segments (with file bytes) of an ELF64 file; none for anything else.
fn elf_segments(file: &mut File) -> std::io::Result<Vec<Segment>> {
    const PT_LOAD: u32 = 1;
    const PHDR_SIZE: usize = 56;
    const MAX_PHNUM: u64 = 64;
    let mut ehdr = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut ehdr).is_err() || ehdr[..4] != *b"\x7fELF" || ehdr[4] != 2 {
        return Ok(Vec::new());
    }
    let phoff = u64::from_le_bytes(ehdr[32..40].try_into().unwrap_or_default());
    let phnum = u64::from(u16::from_le_bytes([ehdr[56], ehdr[57]])).min(MAX_PHNUM);
    let mut out = Vec::new();
    for i in 0..phnum {
        let mut ph = [0u8; PHDR_SIZE];
        file.seek(SeekFrom::Start(phoff.saturating_add(i * PHDR_SIZE as u64)))?;
        file.read_exact(&mut ph)?;
        let word = |o: usize| u64::from_le_bytes(ph[o..o + 8].try_into().unwrap_or_default());
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_LOAD && word(32) > 0 {
            out.push(Segment {
                offset: word(8),
                paddr: word(24),
                filesz: word(32),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::RamLayout;
    use vm_memory::Bytes;

    /// An ELF64 header and one PT_LOAD program header: `filesz` bytes at file offset 0x1000,
    /// loaded at guest address `paddr`; the file holds the header page and then the data.
    fn elf_file(dir: &Path, paddr: u64, data: &[u8]) -> std::path::PathBuf {
        let mut f = vec![0u8; 0x1000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..16].copy_from_slice(&0x1000u64.to_le_bytes()); // p_offset
        ph[24..32].copy_from_slice(&paddr.to_le_bytes()); // p_paddr
        ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes()); // p_filesz
        f.extend_from_slice(data);
        let path = dir.join("kernel.elf");
        std::fs::write(&path, f).unwrap();
        path
    }

    #[test]
    fn shared_pages_hold_the_file_and_stay_private_to_the_guest() {
        // Arrange: 3 pages and a half of data at 1 MiB, guest memory holding a loaded copy
        let dir = std::env::temp_dir().join(format!("vmctl-kernel-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..0x3800u32).map(|i| (i % 251) as u8).collect();
        let path = elf_file(&dir, 0x10_0000, &data);
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        mem.write_slice(&data, GuestAddress(0x10_0000)).unwrap();
        let loaded = FileIdentity::of(&std::fs::metadata(&path).unwrap());

        // Act
        let shared = share_kernel_pages(&mem, &path, loaded).unwrap();
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
    fn a_file_that_is_not_elf_shares_nothing() {
        let dir = std::env::temp_dir().join(format!("vmctl-kernel-share-n-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bzImage");
        std::fs::write(&path, vec![0u8; 0x4000]).unwrap();
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let loaded = FileIdentity::of(&std::fs::metadata(&path).unwrap());

        assert_eq!(share_kernel_pages(&mem, &path, loaded).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_replaced_since_the_load_shares_nothing() {
        // Arrange: the identity of one file, then another file renamed over it
        let dir = std::env::temp_dir().join(format!("vmctl-kernel-share-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = vec![7u8; 0x2000];
        let path = elf_file(&dir, 0x10_0000, &data);
        let loaded = FileIdentity::of(&std::fs::metadata(&path).unwrap());
        let other = dir.join("other");
        std::fs::copy(&path, &other).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();

        // Act / assert
        assert_eq!(share_kernel_pages(&mem, &path, loaded).unwrap(), 0);
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
