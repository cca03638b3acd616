//! Huge pages behind a pmem file in tmpfs.
//!
//! The guest's first touch of each page of the region is a VM exit (KVM maps guest-physical to
//! host memory on demand), and KVM maps 2 MiB at once only where the host maps the file with a
//! huge page. Files in tmpfs have small pages unless tmpfs was mounted `huge=`, so after mapping
//! one, a background thread asks the host kernel to collapse its page cache into huge pages
//! (`MADV_COLLAPSE`, Linux 6.1): a first read of the image then costs one exit per 2 MiB instead of
//! one per 4 KiB. The contents do not change and the guest runs meanwhile.
//!
//! The work is done once per file: the page cache stays huge for later reads and later VMs (a
//! second collapse of a huge range returns at once). On the 1-CPU test host it costs a first boot
//! with a fresh 256 MiB image about 0.7 s of shared CPU time, against 2 s of 4 KiB exits for a
//! first full read; it runs at normal priority because at the lowest one it lost the race with
//! the guest's first read every time. Ranges with holes are skipped (a collapse would fill them
//! with memory). Other file systems are left alone; kernels before 6.1 ignore the advice.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The unit of a collapse: one PMD-mapped huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// The background collapse of one mapping; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct Collapser {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Whether `file` lives in tmpfs (shmem), whose page cache can be collapsed into huge pages.
pub fn on_tmpfs(file: &File) -> bool {
    // SAFETY: fstatfs only writes into the struct we pass; zero is a valid bit pattern for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a writable statfs struct.
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    r == 0 && st.f_type == libc::TMPFS_MAGIC
}

impl Collapser {
    /// Starts collapsing the whole huge pages of `addr..addr + len` (a mapping of `file` from
    /// offset 0, which the caller keeps mapped until this is dropped) if `file` is in tmpfs.
    pub fn start(file: &File, addr: usize, len: usize) -> Option<Collapser> {
        let chunks = len / HUGE_PAGE;
        if chunks == 0 || !addr.is_multiple_of(HUGE_PAGE) || !on_tmpfs(file) {
            return None;
        }
        let file = file.try_clone().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pmem-hugepages".into())
            .stack_size(64 << 10)
            .spawn(move || collapse(&file, addr, chunks, &flag))
            .ok()?;
        Some(Collapser {
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until the thread is done (for tests).
    #[cfg(test)]
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the file has data (no hole) all through `offset..offset + HUGE_PAGE`. A collapse fills
/// holes with memory, so sparse parts of an image are left alone.
fn all_data(file: &File, offset: usize) -> bool {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return false;
    };
    // SAFETY: lseek on a descriptor we own (our duplicate: its offset is nobody else's).
    let hole = unsafe { libc::lseek(file.as_raw_fd(), start, libc::SEEK_HOLE) };
    hole < 0 || usize::try_from(hole).is_ok_and(|h| h >= offset + HUGE_PAGE)
}

fn collapse(file: &File, addr: usize, chunks: usize, stop: &AtomicBool) {
    for i in 0..chunks {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let offset = i * HUGE_PAGE;
        if !all_data(file, offset) {
            continue;
        }
        // SAFETY: the range lies inside a mapping the owner keeps until it has stopped and
        // joined this thread; MADV_COLLAPSE never changes the contents of memory.
        // The result is not looked at: EINVAL also comes back when the page cache was collapsed
        // but this process had not mapped the range yet (the next fault maps it huge), and a
        // kernel without MADV_COLLAPSE costs one cheap call per 2 MiB.
        unsafe {
            libc::madvise(
                (addr + offset) as *mut libc::c_void,
                HUGE_PAGE,
                libc::MADV_COLLAPSE,
            )
        };
    }
}

impl Drop for Collapser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tmpfs_files_are_collapsed() {
        let disk = vmm_sys_util::tempfile::TempFile::new_in(std::path::Path::new(".")).unwrap();
        let f = disk.as_file();
        if on_tmpfs(f) {
            return; // the working directory is in tmpfs: nothing to compare against
        }
        assert!(Collapser::start(f, 0, 4 * HUGE_PAGE).is_none());
    }

    #[test]
    fn nothing_to_do_for_less_than_a_huge_page_or_an_unaligned_address() {
        let f = File::open("/dev/null").unwrap();
        assert!(Collapser::start(&f, 0, HUGE_PAGE - 1).is_none());
        assert!(Collapser::start(&f, 4096, HUGE_PAGE).is_none());
    }
}
