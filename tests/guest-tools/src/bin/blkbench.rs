//! `blkbench MODE DEV BS AMOUNT [JOBS]`: block device throughput with O_DIRECT (no guest page
//! cache), for the virtio-blk benchmark.
//!
//! - `read DEV BS MIB`: sequential reads of BS bytes from offset 0 until MIB MiB are read.
//! - `write DEV BS MIB`: sequential writes of a pattern, then `fdatasync` (counted in the time).
//! - `randread DEV BS COUNT [JOBS]`: COUNT reads of BS bytes at random BS-aligned offsets over the
//!   whole device, split over JOBS threads (each keeps one request in flight, so JOBS is the
//!   queue depth; default 1).
//! - `randwrite DEV BS COUNT [JOBS]`: the same with writes of a pattern, then `fdatasync`
//!   (counted in the time).
//!
//! Prints `blkbench: ...` details on stderr and one line `RESULT <value> <unit>` on stdout
//! (MB/s with MB = 10^6 bytes, or IOPS). Exits 1 on any error.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Instant;

use guest_tools::xorshift64star;

const ALIGN: usize = 4096;

/// A zeroed buffer aligned for O_DIRECT.
struct Buffer {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Buffer {
    fn new(len: usize) -> Buffer {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN)
            .unwrap_or_else(|_| die("bad block size"));
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            die("out of memory");
        }
        Buffer { ptr, layout }
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialized (zeroed) bytes that we own, and
        // `len` is at most that.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len.min(self.layout.size())) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("blkbench: {msg}");
    std::process::exit(1);
}

fn open(dev: &str, write: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| die(&format!("cannot open {dev}: {e}")))
}

fn size_of(file: &File) -> u64 {
    use std::io::Seek;
    let mut f = file;
    f.seek(io::SeekFrom::End(0))
        .unwrap_or_else(|e| die(&format!("cannot measure the device: {e}")))
}

fn number(s: &str, what: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| die(&format!("{what} '{s}' is not a number")))
}

fn sequential(dev: &str, bs: usize, total: u64, write: bool) {
    let file = open(dev, write);
    let mut buf = Buffer::new(bs);
    for (i, b) in buf.slice(bs).iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    let start = Instant::now();
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(bs as u64) as usize;
        let r = if write {
            file.write_all_at(buf.slice(n), done)
        } else {
            file.read_exact_at(buf.slice(n), done)
        };
        r.unwrap_or_else(|e| die(&format!("at byte {done}: {e}")));
        done += n as u64;
    }
    if write {
        file.sync_data()
            .unwrap_or_else(|e| die(&format!("fdatasync: {e}")));
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "blkbench: {} {done} bytes in {secs:.3} s ({bs}-byte requests)",
        if write { "wrote" } else { "read" }
    );
    println!("RESULT {:.1} MB/s", done as f64 / secs / 1e6);
}

fn random(dev: &str, bs: usize, count: u64, jobs: u64, write: bool) {
    let size = size_of(&open(dev, false));
    let blocks = size / bs as u64;
    if blocks == 0 {
        die("the device is smaller than one block");
    }
    let start = Instant::now();
    let threads: Vec<_> = (0..jobs)
        .map(|j| {
            let dev = dev.to_string();
            let n = count / jobs + u64::from(j < count % jobs);
            std::thread::spawn(move || {
                let file = open(&dev, write);
                let mut buf = Buffer::new(bs);
                for (i, b) in buf.slice(bs).iter_mut().enumerate() {
                    *b = (i * 31 + 7) as u8 ^ j as u8;
                }
                // xorshift64*, seeded per job: the same offsets on every run.
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (j + 1);
                for _ in 0..n {
                    let block = xorshift64star(&mut x) % blocks;
                    let at = block * bs as u64;
                    let r = if write {
                        file.write_all_at(buf.slice(bs), at)
                    } else {
                        file.read_exact_at(buf.slice(bs), at)
                    };
                    r.unwrap_or_else(|e| die(&format!("at block {block}: {e}")));
                }
                if write {
                    file.sync_data()
                        .unwrap_or_else(|e| die(&format!("fdatasync: {e}")));
                }
            })
        })
        .collect();
    for t in threads {
        if t.join().is_err() {
            die("a job failed");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let what = if write { "writes" } else { "reads" };
    eprintln!(
        "blkbench: {count} random {bs}-byte {what} over {size} bytes in {secs:.3} s, {jobs} job(s)"
    );
    println!("RESULT {:.0} IOPS", count as f64 / secs);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: blkbench read|write DEV BS MIB | blkbench randread|randwrite DEV BS COUNT [JOBS]";
    if args.len() < 4 {
        die(usage);
    }
    let bs = number(&args[2], "block size") as usize;
    if bs == 0 || !bs.is_multiple_of(512) {
        die("the block size must be a positive multiple of 512");
    }
    let amount = number(&args[3], "amount");
    match args[0].as_str() {
        "read" => sequential(&args[1], bs, amount << 20, false),
        "write" => sequential(&args[1], bs, amount << 20, true),
        "randread" | "randwrite" => {
            let jobs = args.get(4).map_or(1, |j| number(j, "jobs")).max(1);
            random(&args[1], bs, amount, jobs, args[0] == "randwrite")
        }
        _ => die(usage),
    }
}
