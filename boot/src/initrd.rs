//! Placing the initrd at the top of low RAM, above the kernel.

use std::fs::File;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress};

use crate::memory::{GuestMemory, RamLayout};
use crate::zeropage::InitrdPlacement;
use crate::{Error, Result};

const PAGE_SIZE: u64 = 4096;

/// Copies the initrd at `path` into guest memory as high as possible below `addr_limit` (and below
/// the MMIO gap), but above `kernel_end`.
pub fn load_initrd(
    mem: &GuestMemory,
    layout: &RamLayout,
    path: &Path,
    kernel_end: u64,
    addr_limit: u64,
) -> Result<InitrdPlacement> {
    let open_err = |source| Error::InitrdOpen {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(open_err(std::io::Error::other("not a regular file")));
    }
    let size = meta.len();
    let top = layout.low_end().min(addr_limit);
    let floor = kernel_end.next_multiple_of(PAGE_SIZE);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|&a| a >= floor)
        .ok_or_else(|| Error::InitrdTooBig {
            path: path.to_owned(),
            size,
            limit: top,
        })?;
    let len = usize::try_from(size).map_err(|_| Error::InitrdTooBig {
        path: path.to_owned(),
        size,
        limit: top,
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| Error::InitrdLoad {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(InitrdPlacement { addr, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::Bytes;

    fn initrd_file(name: &str, len: usize) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("initrd-{}-{name}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![0xAB; len]).unwrap();
        path
    }

    #[test]
    fn initrd_goes_to_the_top_of_low_ram() {
        let layout = RamLayout::new(32).unwrap();
        let mem = layout.allocate().unwrap();
        let path = initrd_file("top", 5000);
        let rd = load_initrd(&mem, &layout, &path, 0x20_0000, u64::MAX).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(rd.size, 5000);
        assert_eq!(rd.addr % PAGE_SIZE, 0);
        assert!(rd.addr + rd.size <= 32 << 20);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(rd.addr + 4999)).unwrap(),
            0xAB
        );
    }

    #[test]
    fn initrd_bigger_than_memory_is_refused() {
        let layout = RamLayout::new(16).unwrap();
        let mem = layout.allocate().unwrap();
        let path = initrd_file("big", 17 << 20);
        let err = load_initrd(&mem, &layout, &path, 0x20_0000, u64::MAX).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::InitrdTooBig { .. }), "{err}");
    }

    #[test]
    fn initrd_overlapping_the_kernel_is_refused() {
        let layout = RamLayout::new(16).unwrap();
        let mem = layout.allocate().unwrap();
        let path = initrd_file("overlap", 8 << 20);
        let err = load_initrd(&mem, &layout, &path, 12 << 20, u64::MAX).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(err, Error::InitrdTooBig { .. }), "{err}");
    }
}
