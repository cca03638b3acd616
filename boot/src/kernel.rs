//! Loading the kernel image: ELF (vmlinux, with or without the PVH note) or bzImage.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::GuestAddress;

use crate::kernel_share::{FileIdentity, FilePages, Segment};
use crate::layout::{BOOT_STRUCTURES, HIMEM_START};
use crate::memory::GuestMemory;
use crate::{Error, Result};

/// The bzImage "HdrS" signature, at offset 0x202 of the image.
const BZIMAGE_MAGIC: u32 = 0x5372_6448;
/// Offset of the setup header in a bzImage (and in the zero page).
const SETUP_HEADER_OFFSET: u64 = 0x1F1;
/// Boot protocol 2.12 brought `xloadflags` and the 64-bit entry flag.
const MIN_BOOT_PROTOCOL_64: u16 = 0x020C;
/// `xloadflags`: the kernel has the 64-bit entry at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// The 64-bit entry's offset from the bzImage's protected-mode load address.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// How the vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// The Linux 64-bit boot protocol: long mode, identity-mapped, %rsi = zero page.
    Linux64 { rip: u64 },
    /// The PVH boot protocol: 32-bit protected mode, paging off, %ebx = start info.
    Pvh { eip: u64 },
}

/// A kernel in guest memory.
#[derive(Debug)]
pub struct LoadedKernel {
    pub entry: EntryPoint,
    /// First guest address past everything the kernel occupies (including what it decompresses
    /// into), so the initrd is placed above it.
    pub end: u64,
    /// The bzImage's setup header, to be copied into the zero page.
    pub setup_header: Option<setup_header>,
    /// An ELF kernel's file and loaded segments, for [`crate::kernel_share`] (a bzImage's kernel
    /// is compressed: nothing of it can be mapped from its file).
    pub file_pages: Option<FilePages>,
}

enum Format {
    Elf,
    BzImage(setup_header),
}

/// Loads the kernel at `path` into guest memory.
pub fn load_kernel(mem: &GuestMemory, path: &Path) -> Result<LoadedKernel> {
    let mut file = File::open(path).map_err(|source| Error::KernelOpen {
        path: path.to_owned(),
        source,
    })?;
    let not_a_kernel = |reason: &str| Error::NotAKernel {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let load_failed = |e: linux_loader::loader::Error| Error::KernelLoad {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    match detect(&mut file).map_err(|e| Error::KernelOpen {
        path: path.to_owned(),
        source: e,
    })? {
        None => Err(not_a_kernel("no ELF magic and no bzImage \"HdrS\" header")),
        Some(Format::Elf) => {
            let identity =
                file.metadata()
                    .map(|m| FileIdentity::of(&m))
                    .map_err(|e| Error::KernelOpen {
                        path: path.to_owned(),
                        source: e,
                    })?;
            let segments = check_elf_segments(&mut file, mem, path)?;
            let res =
                Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|e| {
                    match e {
                        linux_loader::loader::Error::Elf(ref inner)
                            if is_elf_format_error(inner) =>
                        {
                            not_a_kernel(&inner.to_string())
                        }
                        other => load_failed(other),
                    }
                })?;
            let entry = match res.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => EntryPoint::Pvh { eip: addr.0 },
                _ => EntryPoint::Linux64 {
                    rip: res.kernel_load.0,
                },
            };
            check_entry(entry, &segments).map_err(|reason| Error::BadKernelLayout {
                path: path.to_owned(),
                reason,
            })?;
            Ok(LoadedKernel {
                entry,
                end: res.kernel_end,
                setup_header: None,
                file_pages: Some(FilePages {
                    file,
                    identity,
                    segments,
                }),
            })
        }
        Some(Format::BzImage(hdr)) => {
            if hdr.version < MIN_BOOT_PROTOCOL_64 || hdr.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(not_a_kernel(
                    "bzImage has no 64-bit entry point (boot protocol 2.12 with XLF_KERNEL_64 needed)",
                ));
            }
            let res = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
                .map_err(|e| match e {
                    linux_loader::loader::Error::Bzimage(_) => not_a_kernel(&e.to_string()),
                    other => load_failed(other),
                })?;
            let load = res.kernel_load.0;
            // The kernel decompresses itself in place: it needs init_size bytes from its load
            // address, which may be more than the file holds.
            let end = res.kernel_end.max(load + u64::from(hdr.init_size));
            Ok(LoadedKernel {
                entry: EntryPoint::Linux64 {
                    rip: load + BZIMAGE_64BIT_ENTRY_OFFSET,
                },
                end,
                setup_header: res.setup_header,
                file_pages: None,
            })
        }
    }
}

fn is_elf_format_error(e: &linux_loader::loader::elf::Error) -> bool {
    use linux_loader::loader::elf::Error as E;
    !matches!(e, E::ReadKernelImage | E::Overflow | E::InvalidEntryAddress)
}

/// Checks the loadable segments of an ELF image before loading it, so that a truncated file and
/// a kernel too big for the guest get messages of their own; returns those with file bytes.
fn check_elf_segments(file: &mut File, mem: &GuestMemory, path: &Path) -> Result<Vec<Segment>> {
    use vm_memory::{Address, GuestMemoryBackend};
    const PT_LOAD: u32 = 1;
    const PHDR_SIZE: u64 = 56;
    let not_a_kernel = |reason: String| Error::NotAKernel {
        path: path.to_owned(),
        reason,
    };
    let io = |source| Error::KernelOpen {
        path: path.to_owned(),
        source,
    };
    let file_len = file.seek(SeekFrom::End(0)).map_err(io)?;
    let mut ehdr = [0u8; 64];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if !read_full(file, &mut ehdr).map_err(io)? {
        return Err(not_a_kernel("truncated ELF header".into()));
    }
    if ehdr[4] != 2 || ehdr[5] != 1 {
        return Err(not_a_kernel(
            "not a 64-bit little-endian ELF (x86_64 needed)".into(),
        ));
    }
    // linux_loader refuses this too, but with a message about memory size.
    let e_entry = u64::from_le_bytes(ehdr[24..32].try_into().unwrap_or_default());
    if e_entry < HIMEM_START {
        return Err(Error::BadKernelLayout {
            path: path.to_owned(),
            reason: format!(
                "its ELF entry point {e_entry:#x} lies below {HIMEM_START:#x}, among vmctl's boot structures"
            ),
        });
    }
    let phoff = u64::from_le_bytes(ehdr[32..40].try_into().unwrap_or_default());
    let phnum = u64::from(u16::from_le_bytes([ehdr[56], ehdr[57]]));
    let ram_end = mem.last_addr().raw_value() + 1;
    let mut loadable = Vec::new();
    for i in 0..phnum {
        let mut ph = [0u8; PHDR_SIZE as usize];
        let at = phoff.saturating_add(i * PHDR_SIZE);
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        if at >= file_len || !read_full(file, &mut ph).map_err(io)? {
            return Err(not_a_kernel("truncated ELF program headers".into()));
        }
        let word = |o: usize| u64::from_le_bytes(ph[o..o + 8].try_into().unwrap_or_default());
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (word(8), word(24), word(32), word(40));
        // Before the skip below: a segment of zeroes only (.bss) must stay clear too.
        check_clear_of_boot_structures(paddr, memsz.max(filesz)).map_err(|reason| {
            Error::BadKernelLayout {
                path: path.to_owned(),
                reason,
            }
        })?;
        if filesz == 0 {
            continue;
        }
        loadable.push(Segment {
            offset,
            paddr,
            filesz,
        });
        if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
            return Err(not_a_kernel(format!(
                "truncated ELF: a segment needs bytes up to {:#x}, the file has {file_len:#x}",
                offset.saturating_add(filesz)
            )));
        }
        let end = paddr.checked_add(memsz.max(filesz));
        if end.is_none_or(|end| end > ram_end || mem.find_region(GuestAddress(paddr)).is_none()) {
            return Err(Error::KernelLoad {
                path: path.to_owned(),
                reason: format!(
                    "a segment at {paddr:#x} of {} KiB lies outside the guest's RAM (up to {ram_end:#x})",
                    memsz >> 10
                ),
            });
        }
    }
    if loadable.is_empty() {
        return Err(not_a_kernel("ELF has no loadable segment".into()));
    }
    Ok(loadable)
}

/// Refuses a segment of `len` bytes at `paddr` that lands on something vmctl writes before the
/// kernel runs (the kernel would be corrupted, or corrupt its own boot data).
fn check_clear_of_boot_structures(paddr: u64, len: u64) -> std::result::Result<(), String> {
    let end = paddr.saturating_add(len);
    match BOOT_STRUCTURES
        .iter()
        .find(|(_, start, stop)| paddr < *stop && *start < end)
    {
        Some((name, start, stop)) => Err(format!(
            "a loadable segment at {paddr:#x}..{end:#x} overlaps vmctl's {name} at {start:#x}..{stop:#x}; \
             link the kernel at or above {HIMEM_START:#x}"
        )),
        None => Ok(()),
    }
}

/// Refuses an entry point outside the bytes the file loads: the vCPU would start in zeroes or in
/// memory the kernel never wrote.
fn check_entry(entry: EntryPoint, segments: &[Segment]) -> std::result::Result<(), String> {
    let (addr, what) = match entry {
        EntryPoint::Linux64 { rip } => (rip, "ELF entry point"),
        EntryPoint::Pvh { eip } => (eip, "PVH entry point"),
    };
    let inside = segments
        .iter()
        .any(|s| addr >= s.paddr && addr - s.paddr < s.filesz);
    if inside {
        Ok(())
    } else {
        Err(format!(
            "its {what} {addr:#x} lies outside its loadable segments"
        ))
    }
}

fn detect(file: &mut File) -> std::io::Result<Option<Format>> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    if read_full(file, &mut magic)? && magic == *b"\x7fELF" {
        return Ok(Some(Format::Elf));
    }
    let mut hdr = setup_header::default();
    file.seek(SeekFrom::Start(SETUP_HEADER_OFFSET))?;
    // SAFETY: setup_header is plain old data (integers only); any byte pattern is valid.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(
            &mut hdr as *mut setup_header as *mut u8,
            std::mem::size_of::<setup_header>(),
        )
    };
    if read_full(file, bytes)? && hdr.header == BZIMAGE_MAGIC {
        return Ok(Some(Format::BzImage(hdr)));
    }
    Ok(None)
}

/// Reads exactly `buf.len()` bytes; `false` if the file ends first.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..])? {
            0 => return Ok(false),
            n => done += n,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::RamLayout;
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("boot-test-{}-{name}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    #[test]
    fn text_file_is_not_a_kernel() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let path = temp_file("text", b"hello, I am not a kernel\n");
        let err = load_kernel(&mem, &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::NotAKernel { .. }), "{err}");
    }

    #[test]
    fn empty_file_is_not_a_kernel() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let path = temp_file("empty", b"");
        let err = load_kernel(&mem, &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::NotAKernel { .. }), "{err}");
    }

    #[test]
    fn truncated_elf_is_not_a_kernel() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let path = temp_file("trunc", b"\x7fELF\x02\x01\x01");
        let err = load_kernel(&mem, &path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::NotAKernel { .. }), "{err}");
    }

    /// A loadable segment of a crafted ELF: guest address, bytes in the file, bytes in memory.
    struct Load {
        paddr: u64,
        filesz: u64,
        memsz: u64,
    }

    /// A minimal x86_64 ELF executable with `loads` as its PT_LOAD segments (their file bytes
    /// 0xF4, `hlt`) and `entry` as its entry point.
    fn crafted_elf(entry: u64, loads: &[Load]) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let mut out = vec![0u8; EHDR];
        out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&0x3Eu16.to_le_bytes()); // EM_X86_64
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
        out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        let mut offset = (EHDR + PHDR * loads.len()) as u64;
        for l in loads {
            let mut ph = [0u8; PHDR];
            ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&l.paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&l.paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&l.filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&l.memsz.to_le_bytes());
            out.extend_from_slice(&ph);
            offset += l.filesz;
        }
        for l in loads {
            out.extend(std::iter::repeat_n(0xF4u8, l.filesz as usize));
        }
        out
    }

    /// Loads `image` as a kernel into 16 MiB of guest memory.
    fn load_crafted(name: &str, image: &[u8]) -> Result<LoadedKernel> {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let path = temp_file(name, image);
        let result = load_kernel(&mem, &path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    #[test]
    fn elf_with_its_entry_in_a_segment_loads() {
        let image = crafted_elf(
            0x10_0010,
            &[Load {
                paddr: 0x10_0000,
                filesz: 0x100,
                memsz: 0x2000,
            }],
        );

        let kernel = load_crafted("good", &image).unwrap();

        assert_eq!(kernel.entry, EntryPoint::Linux64 { rip: 0x10_0010 });
    }

    #[test]
    fn elf_segment_on_the_zero_page_is_refused() {
        let image = crafted_elf(
            0x10_0000,
            &[
                Load {
                    paddr: 0x10_0000,
                    filesz: 0x100,
                    memsz: 0x100,
                },
                Load {
                    paddr: 0x7800,
                    filesz: 0x10,
                    memsz: 0x10,
                },
            ],
        );

        let err = load_crafted("zeropage", &image).unwrap_err();

        assert!(matches!(err, Error::BadKernelLayout { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("0x7800..0x7810 overlaps vmctl's zero page at 0x7000..0x8000"),
            "{text}"
        );
    }

    #[test]
    fn elf_bss_over_the_boot_page_tables_is_refused() {
        // No file bytes at all, but the zeroes the kernel expects there cover the last PD.
        let image = crafted_elf(
            0x10_0000,
            &[
                Load {
                    paddr: 0x10_0000,
                    filesz: 0x100,
                    memsz: 0x100,
                },
                Load {
                    paddr: 0xE000,
                    filesz: 0,
                    memsz: 0x2000,
                },
            ],
        );

        let err = load_crafted("bss", &image).unwrap_err();

        assert!(
            err.to_string()
                .contains("0xe000..0x10000 overlaps vmctl's boot page tables at 0x9000..0xf000"),
            "{err}"
        );
    }

    #[test]
    fn elf_segments_on_each_boot_structure_are_refused() {
        for (name, start, _) in BOOT_STRUCTURES {
            let image = crafted_elf(
                0x10_0000,
                &[
                    Load {
                        paddr: 0x10_0000,
                        filesz: 0x100,
                        memsz: 0x100,
                    },
                    Load {
                        paddr: start,
                        filesz: 4,
                        memsz: 4,
                    },
                ],
            );

            let err = load_crafted("each", &image).unwrap_err();

            assert!(
                err.to_string().contains(&format!("vmctl's {name} at")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn elf_entry_outside_its_segments_is_refused() {
        let image = crafted_elf(
            0x20_0000,
            &[Load {
                paddr: 0x10_0000,
                filesz: 0x100,
                memsz: 0x1000,
            }],
        );

        let err = load_crafted("entry", &image).unwrap_err();

        assert!(matches!(err, Error::BadKernelLayout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("ELF entry point 0x200000 lies outside its loadable segments"),
            "{err}"
        );
    }

    #[test]
    fn elf_entry_in_zeroed_tail_is_refused() {
        // Inside memsz but past filesz: the vCPU would start in zeroes.
        let image = crafted_elf(
            0x10_0800,
            &[Load {
                paddr: 0x10_0000,
                filesz: 0x100,
                memsz: 0x1000,
            }],
        );

        let err = load_crafted("tail", &image).unwrap_err();

        assert!(
            err.to_string()
                .contains("lies outside its loadable segments"),
            "{err}"
        );
    }

    #[test]
    fn elf_entry_below_1mib_is_refused_with_its_own_message() {
        let image = crafted_elf(
            0x7000,
            &[Load {
                paddr: 0x10_0000,
                filesz: 0x100,
                memsz: 0x100,
            }],
        );

        let err = load_crafted("low-entry", &image).unwrap_err();

        assert!(matches!(err, Error::BadKernelLayout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("entry point 0x7000 lies below 0x100000"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let mem = RamLayout::new(16).unwrap().allocate().unwrap();
        let err = load_kernel(&mem, Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, Error::KernelOpen { .. }), "{err}");
    }
}
