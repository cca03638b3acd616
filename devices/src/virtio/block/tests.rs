//! Crafted queues against the device: a hostile driver gets failed requests or DEVICE_NEEDS_RESET,
//! never a panic, and the device goes on serving the next request.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::request::{kind, status};
use super::*;
use crate::virtio::test_queue::{DriverQueue, F_INDIRECT, F_NEXT, F_WRITE};
use crate::virtio::{
    GuestMemoryMmap, Interrupt, QueueContext, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};

/// Guest memory: two adjacent 1 MiB regions (so buffers can straddle regions).
const MEM_END: u64 = 2 << 20;
const REGION: u64 = 1 << 20;
const QSIZE: u16 = 256;
/// Where the rings start.
const RINGS: u64 = 0x1000;
/// Where tests put headers, data and status bytes.
const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x18000;

/// A temporary image file, removed on drop.
struct Image(PathBuf);

impl Image {
    fn new(contents: &[u8]) -> Image {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmctl-blk-test-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Image(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A byte pattern that differs from sector to sector.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 512) as u8).collect()
}

fn config(img: &Image, read_only: bool) -> BlockConfig {
    BlockConfig {
        path: img.path().to_path_buf(),
        read_only,
        serial: "vmctl-serial-1".into(),
    }
}

/// The driver's side of the rings, in guest memory.
struct Guest {
    mem: GuestMemoryMmap,
    q: DriverQueue,
    /// Used entries read from the ring and not yet asked for.
    used: VecDeque<(u16, u32)>,
}

/// A guest with an activated device.
struct Driver {
    g: Guest,
    dev: Block,
    irq: EventFd,
    interrupt: Arc<Interrupt>,
}

impl std::ops::Deref for Driver {
    type Target = Guest;
    fn deref(&self) -> &Guest {
        &self.g
    }
}

impl std::ops::DerefMut for Driver {
    fn deref_mut(&mut self) -> &mut Guest {
        &mut self.g
    }
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), REGION as usize),
        (GuestAddress(REGION), REGION as usize),
    ])
    .unwrap()
}

impl Driver {
    fn new(dev: Block) -> Driver {
        let mut dev = dev;
        let mem = guest_memory();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let interrupt = Arc::new(Interrupt::new(irq.try_clone().unwrap()));
        dev.activate(ctx(&mem, &interrupt, VIRTIO_F_VERSION_1))
            .unwrap();
        // activate() pokes the queue eventfd; tests drive the queue by hand.
        let _ = dev.queue_event().read();
        Driver {
            g: Guest::new(mem),
            dev,
            irq,
            interrupt,
        }
    }

    /// Starts what the driver made available, then answers each request as its disk operation
    /// completes, until none is in flight.
    fn run(&mut self) {
        self.dev.process_queue();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.dev.handler.in_flight() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "requests still in flight after 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
            let _ = self.dev.handler.done_event().read();
            self.dev.process_done();
        }
    }

    /// Runs one request and returns (status byte, used length), asserting it was used.
    fn serve(&mut self, head: u16) -> (u8, u32) {
        self.run();
        let (id, len) = self.used().expect("the request was returned");
        assert_eq!(id, u32::from(head));
        (self.status(), len)
    }

    /// The usual read of `expect.len()` bytes at `sector` succeeds and returns `expect`.
    fn assert_read_works(&mut self, sector: u64, expect: &[u8]) {
        let head = self.request(kind::IN, sector, expect.len() as u32, true);
        assert_eq!(
            self.serve(head),
            (status::OK, expect.len() as u32 + 1),
            "a good read after the bad request"
        );
        assert_eq!(self.bytes(DATA, expect.len()), expect);
    }
}

impl Guest {
    fn new(mem: GuestMemoryMmap) -> Guest {
        Guest {
            mem,
            q: DriverQueue::new(RINGS, QSIZE),
            used: VecDeque::new(),
        }
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.q.write_desc(&self.mem, i, addr, len, flags, next);
    }

    fn publish(&mut self, head: u16) {
        self.q.publish(&self.mem, head);
    }

    /// Adds a chain of (addr, len, writable) buffers and makes it available; returns its head.
    fn chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let descs: Vec<(u64, u32, u16)> = bufs
            .iter()
            .map(|&(addr, len, writable)| (addr, len, if writable { F_WRITE } else { 0 }))
            .collect();
        self.q.add(&self.mem, &descs)
    }

    fn header(&self, at: u64, kind: u32, sector: u64) {
        self.mem.write_obj(kind, GuestAddress(at)).unwrap();
        self.mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        self.mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    /// Makes `n` reads available, each of `size` bytes into its own buffer from sector
    /// `i * sector_step` (read `i`: header at HDR + 32 i, data at DATA + size i, status STATUS + i).
    fn reads(&mut self, n: u64, size: u32, sector_step: u64) {
        for i in 0..n {
            self.header(HDR + 32 * i, kind::IN, i * sector_step);
            self.chain(&[
                (HDR + 32 * i, 16, false),
                (DATA + u64::from(size) * i, size, true),
                (STATUS + i, 1, true),
            ]);
        }
    }

    /// A request in the usual shape: header, data (if any), status.
    fn request(&mut self, kind: u32, sector: u64, data_len: u32, data_writable: bool) -> u16 {
        self.header(HDR, kind, sector);
        self.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
        let mut bufs = vec![(HDR, 16, false)];
        if data_len > 0 {
            bufs.push((DATA, data_len, data_writable));
        }
        bufs.push((STATUS, 1, true));
        self.chain(&bufs)
    }

    /// The next used element: (head, len).
    fn used(&mut self) -> Option<(u32, u32)> {
        if self.used.is_empty() {
            self.used.extend(self.q.take_used(&self.mem));
        }
        self.used
            .pop_front()
            .map(|(head, len)| (u32::from(head), len))
    }

    fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn fill(&self, at: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(at)).unwrap();
    }
}

fn ctx(mem: &GuestMemoryMmap, interrupt: &Arc<Interrupt>, acked: u64) -> QueueContext {
    let q = DriverQueue::new(RINGS, QSIZE).queue(acked & VIRTIO_RING_F_EVENT_IDX != 0);
    QueueContext {
        mem: mem.clone(),
        queues: vec![q],
        interrupt: interrupt.clone(),
        acked_features: acked,
    }
}

fn driver(contents: &[u8], read_only: bool) -> (Image, Driver) {
    let img = Image::new(contents);
    let dev = Block::new(config(&img, read_only)).unwrap();
    (img, Driver::new(dev))
}

// ---- well-formed requests ------------------------------------------------------------------

#[test]
fn read_returns_the_image_data_and_interrupts() {
    // Arrange
    let image = pattern(8 * 512);
    let (_img, mut d) = driver(&image, false);
    let head = d.request(kind::IN, 2, 1024, true);
    // Act
    let (st, len) = d.serve(head);
    // Assert
    assert_eq!((st, len), (status::OK, 1025));
    assert_eq!(d.bytes(DATA, 1024), &image[1024..2048]);
    assert_eq!(d.irq.read().unwrap(), 1);
    assert!(!d.interrupt.needs_reset());
}

#[test]
fn write_reaches_the_file_and_flush_succeeds() {
    let (img, mut d) = driver(&[0u8; 8 * 512], false);
    let data = pattern(1024);
    d.fill(DATA, &data);
    let head = d.request(kind::OUT, 3, 1024, false);
    assert_eq!(d.serve(head), (status::OK, 1));
    let head = d.request(kind::FLUSH, 0, 0, false);
    assert_eq!(d.serve(head), (status::OK, 1));
    let file = img.contents();
    assert_eq!(&file[3 * 512..5 * 512], &data[..]);
    assert!(file[..3 * 512].iter().all(|&b| b == 0));
    assert!(file[5 * 512..].iter().all(|&b| b == 0));
}

#[test]
fn any_framing_works_split_header_and_status_sharing_the_data_descriptor() {
    let image = pattern(4 * 512);
    let (_img, mut d) = driver(&image, false);
    d.header(HDR, kind::IN, 1);
    // Header in two pieces, 512 bytes of data and the status byte in one descriptor.
    let head = d.chain(&[(HDR, 10, false), (HDR + 10, 6, false), (DATA, 513, true)]);
    d.run();
    assert_eq!(d.used(), Some((u32::from(head), 513)));
    assert_eq!(d.bytes(DATA, 512), &image[512..1024]);
    assert_eq!(d.bytes(DATA + 512, 1), [status::OK]);
}

#[test]
fn data_straddling_two_guest_memory_regions_is_served() {
    let image = pattern(4 * 512);
    let (_img, mut d) = driver(&image, false);
    d.header(HDR, kind::IN, 0);
    let at = REGION - 700;
    let head = d.chain(&[(HDR, 16, false), (at, 2048, true), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::OK, 2049));
    assert_eq!(d.bytes(at, 2048), &image[..2048]);
}

#[test]
fn many_requests_in_one_pass_get_one_interrupt() {
    let image = pattern(64 * 512);
    let (_img, mut d) = driver(&image, false);
    d.reads(8, 512, 1);
    // Every read completes before the event loop's turn that answers them: one turn, one
    // interrupt (completions come back in the order the workers finish them).
    d.dev.process_queue();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut completed = 0;
    while completed < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "reads still in flight"
        );
        completed += d.dev.handler.done_event().read().unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    d.dev.process_done();
    let mut used: Vec<_> = std::iter::from_fn(|| d.used()).collect();
    used.sort_unstable();
    let expected: Vec<_> = (0..8u32).map(|i| (3 * i, 513)).collect();
    assert_eq!(used, expected);
    for i in 0..8u64 {
        assert_eq!(d.bytes(STATUS + i, 1), [status::OK]);
    }
    assert_eq!(d.bytes(DATA, 8 * 512), &image[..8 * 512]);
    assert_eq!(d.irq.read().unwrap(), 1);
}

#[test]
fn a_full_ring_is_served_in_turns_of_the_event_loop() {
    // Arrange: 200 reads, each one ring entry pointing at an indirect table.
    let image = pattern(256 * 512);
    let (_img, mut d) = driver(&image, false);
    let n = 200u64;
    for i in 0..n {
        let table = 0x80000 + 64 * i;
        let hdr = HDR + 32 * i;
        d.header(hdr, kind::IN, i);
        let rows = [
            (hdr, 16u32, F_NEXT),
            (DATA + 512 * i, 512, F_WRITE | F_NEXT),
            (STATUS + i, 1, F_WRITE),
        ];
        for (j, (addr, len, flags)) in rows.into_iter().enumerate() {
            let at = GuestAddress(table + 16 * j as u64);
            d.mem.write_obj(addr, at).unwrap();
            d.mem.write_obj(len, at.unchecked_add(8)).unwrap();
            d.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
            d.mem.write_obj(j as u16 + 1, at.unchecked_add(14)).unwrap();
        }
        d.desc(i as u16, table, 48, F_INDIRECT, 0);
        d.publish(i as u16);
    }
    // Act: one turn serves the budget and re-arms the eventfd for the rest.
    d.run();
    let first: Vec<_> = std::iter::from_fn(|| d.used()).collect();
    assert_eq!(first.len(), event_handler::BUDGET.chains);
    assert_eq!(
        d.dev.queue_event().read().unwrap(),
        1,
        "the eventfd is re-armed"
    );
    d.run();
    let second: Vec<_> = std::iter::from_fn(|| d.used()).collect();
    // Assert
    assert_eq!(first.len() + second.len(), n as usize);
    assert!(
        d.dev.queue_event().read().is_err(),
        "nothing left: not re-armed"
    );
    for i in 0..n {
        assert_eq!(d.bytes(STATUS + i, 1), [status::OK]);
    }
    assert_eq!(d.bytes(DATA, 200 * 512), &image[..200 * 512]);
}

#[test]
fn huge_requests_are_refused_and_big_ones_share_the_event_loop() {
    // Arrange: a sparse 48 MiB image; reads of 48 MiB made of 48 descriptors over one 1 MiB
    // guest buffer (guest memory is 2 MiB).
    let img = Image::new(&[]);
    std::fs::File::options()
        .write(true)
        .open(img.path())
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let mut d = Driver::new(Block::new(config(&img, false)).unwrap());
    // Larger than seg_max * size_max: refused before anything is mapped or read.
    d.header(HDR, kind::IN, 0);
    let head = d.chain(&[
        (HDR, 16, false),
        (0xdead_0000_0000, (MAX_REQUEST_BYTES + 512) as u32, true),
        (STATUS, 1, true),
    ]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    let mut bufs = vec![(HDR, 16u32, false)];
    bufs.extend(std::iter::repeat_n((DATA, 1u32 << 20, true), 48));
    bufs.push((STATUS, 1, true));
    for _ in 0..3 {
        d.chain(&bufs);
    }
    // Act
    d.run();
    let first: Vec<_> = std::iter::from_fn(|| d.used()).collect();
    // Assert: two requests (96 MiB) pass the 64 MiB budget; the third waits for the next turn.
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|&(_, len)| len == (48 << 20) + 1));
    assert_eq!(d.dev.queue_event().read().unwrap(), 1, "re-armed");
    d.run();
    assert_eq!(d.used().map(|(_, len)| len), Some((48 << 20) + 1));
    assert_eq!(d.dev.stats().bytes, 3 * (48 << 20));
}

#[test]
fn get_id_returns_the_serial_zero_padded() {
    let (_img, mut d) = driver(&[0u8; 512], false);
    d.fill(DATA, &[0xFF; 20]);
    let head = d.request(kind::GET_ID, 0, 20, true);
    assert_eq!(d.serve(head), (status::OK, 21));
    assert_eq!(d.bytes(DATA, 20), b"vmctl-serial-1\0\0\0\0\0\0");
    // A shorter buffer gets what fits.
    d.fill(DATA, &[0xFF; 20]);
    let head = d.request(kind::GET_ID, 0, 5, true);
    assert_eq!(d.serve(head), (status::OK, 6));
    assert_eq!(d.bytes(DATA, 6), b"vmctl\xFF");
}

#[test]
fn unknown_request_types_are_unsupported() {
    let (_img, mut d) = driver(&[0u8; 512], false);
    for t in [2u32, 10, 14, 15, 0x8000_0000, u32::MAX] {
        let head = d.request(t, 0, 0, false);
        assert_eq!(d.serve(head), (status::UNSUPP, 1), "type {t}");
    }
    d.assert_read_works(0, &[0u8; 512]);
}

// ---- hostile requests ----------------------------------------------------------------------

#[test]
fn sector_ranges_are_checked_against_the_capacity_overflow_safe() {
    // 8 sectors plus a partial one that is not addressable.
    let mut image = pattern(8 * 512 + 100);
    image[8 * 512..].fill(0x5A);
    let (img, mut d) = driver(&image, false);
    assert_eq!(d.dev.sectors(), 8);
    let cases = [
        (kind::IN, 8u64, 512u32),
        (kind::IN, 7, 1024),
        (kind::IN, u64::MAX, 512),
        (kind::IN, u64::MAX / 512, 512),
        (kind::IN, (u64::MAX / 512) + 1, 512),
        (kind::OUT, 8, 512),
        (kind::OUT, 7, 1024),
        (kind::OUT, u64::MAX, 512),
        (kind::OUT, 1 << 55, 512),
    ];
    for (t, sector, len) in cases {
        let head = d.request(t, sector, len, t == kind::IN);
        assert_eq!(
            d.serve(head),
            (status::IOERR, 1),
            "type {t} sector {sector}"
        );
    }
    assert!(img.contents() == image, "the image changed");
    d.assert_read_works(7, &image[7 * 512..8 * 512]);
}

#[test]
fn data_lengths_that_are_not_whole_sectors_fail() {
    let image = pattern(8 * 512);
    let (img, mut d) = driver(&image, false);
    for len in [1u32, 511, 513, 1000] {
        let head = d.request(kind::IN, 0, len, true);
        assert_eq!(d.serve(head), (status::IOERR, 1), "read of {len}");
        let head = d.request(kind::OUT, 0, len, false);
        assert_eq!(d.serve(head), (status::IOERR, 1), "write of {len}");
    }
    assert!(img.contents() == image, "the image changed");
}

#[test]
fn truncated_headers_fail() {
    let (_img, mut d) = driver(&pattern(1024), false);
    for len in [1u32, 8, 15] {
        d.header(HDR, kind::IN, 0);
        let head = d.chain(&[(HDR, len, false), (DATA, 512, true), (STATUS, 1, true)]);
        assert_eq!(d.serve(head), (status::IOERR, 1), "header of {len} bytes");
    }
    // No readable descriptor at all.
    let head = d.chain(&[(DATA, 512, true), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
}

#[test]
fn wrong_directions_fail_and_leave_the_image_alone() {
    let image = pattern(8 * 512);
    let (img, mut d) = driver(&image, false);
    // A read whose data buffer is device-readable.
    let head = d.request(kind::IN, 0, 512, false);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    // A write whose data buffer is device-writable.
    let head = d.request(kind::OUT, 0, 512, true);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    // A device-writable header.
    d.header(HDR, kind::IN, 0);
    let head = d.chain(&[(HDR, 16, true), (DATA, 512, true), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    // A readable descriptor after the writable ones.
    d.header(HDR, kind::OUT, 0);
    let head = d.chain(&[(HDR, 16, false), (STATUS, 1, true), (DATA, 512, false)]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    // A flush or get-id with data on the wrong side.
    let head = d.request(kind::FLUSH, 0, 512, false);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    let head = d.request(kind::GET_ID, 0, 20, false);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    assert!(img.contents() == image, "the image changed");
    d.assert_read_works(1, &image[512..1024]);
}

#[test]
fn a_chain_without_a_writable_status_byte_is_returned_unanswered() {
    let image = pattern(2 * 512);
    let (img, mut d) = driver(&image, false);
    d.fill(DATA, &[0xAB; 512]);
    d.header(HDR, kind::OUT, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, false)]);
    d.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
    d.run();
    assert_eq!(d.used(), Some((u32::from(head), 0)));
    assert_eq!(d.status(), 0xEE, "nothing written");
    assert!(
        img.contents() == image,
        "a request without a status was executed"
    );
    assert_eq!(d.dev.stats().unanswerable, 1);
    d.assert_read_works(0, &image[..512]);
}

#[test]
fn addresses_outside_guest_memory_fail() {
    let image = pattern(4 * 512);
    let (img, mut d) = driver(&image, false);
    for (addr, len) in [
        (MEM_END, 512u32),
        (MEM_END - 256, 512),
        (u64::MAX - 100, 512),
        (0x1_0000_0000, 512),
    ] {
        d.header(HDR, kind::IN, 0);
        let head = d.chain(&[(HDR, 16, false), (addr, len, true), (STATUS, 1, true)]);
        assert_eq!(d.serve(head), (status::IOERR, 1), "read into {addr:#x}");
        d.header(HDR, kind::OUT, 0);
        let head = d.chain(&[(HDR, 16, false), (addr, len, false), (STATUS, 1, true)]);
        assert_eq!(d.serve(head), (status::IOERR, 1), "write from {addr:#x}");
    }
    // The header outside memory.
    let head = d.chain(&[
        (MEM_END + 4096, 16, false),
        (DATA, 512, true),
        (STATUS, 1, true),
    ]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    // The status byte outside memory: nothing can be reported, nothing is executed.
    d.fill(DATA, &[0xCD; 512]);
    d.header(HDR, kind::OUT, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 512, false), (MEM_END + 1, 1, true)]);
    d.run();
    assert_eq!(d.used(), Some((u32::from(head), 0)));
    assert!(img.contents() == image, "the image changed");
    d.assert_read_works(2, &image[1024..1536]);
}

#[test]
fn zero_length_descriptors_are_skipped() {
    let image = pattern(2 * 512);
    let (_img, mut d) = driver(&image, false);
    d.header(HDR, kind::IN, 1);
    let head = d.chain(&[
        (HDR, 0, false),
        (HDR, 16, false),
        (0, 0, false),
        (DATA, 0, true),
        (DATA, 512, true),
        (STATUS, 1, true),
        (MEM_END + 8, 0, true),
    ]);
    assert_eq!(d.serve(head), (status::OK, 513));
    assert_eq!(d.bytes(DATA, 512), &image[512..]);
    // Nothing but empty descriptors: no status byte to answer with.
    let head = d.chain(&[(HDR, 0, false), (STATUS, 0, true)]);
    d.run();
    assert_eq!(d.used(), Some((u32::from(head), 0)));
}

#[test]
fn descriptor_loops_end_and_the_device_carries_on() {
    let image = pattern(4 * 512);
    let (_img, mut d) = driver(&image, false);
    // 0 (header) -> 1 (status) -> 0 -> 1 ...: a readable descriptor after a writable one.
    d.header(HDR, kind::IN, 0);
    d.desc(0, HDR, 16, F_NEXT, 1);
    d.desc(1, STATUS, 1, F_WRITE | F_NEXT, 0);
    d.publish(0);
    d.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
    d.run();
    assert_eq!(d.used(), Some((0, 1)));
    assert_eq!(d.status(), status::IOERR);
    // A writable descriptor pointing at itself: the walk stops after the queue size.
    d.desc(2, DATA, 512, F_WRITE | F_NEXT, 2);
    d.publish(2);
    d.run();
    assert_eq!(d.used(), Some((2, 1)));
    // A `next` past the end of the table ends the chain (here: before the status byte).
    d.header(HDR, kind::IN, 0);
    d.desc(3, HDR, 16, F_NEXT, 0xFFFF);
    d.publish(3);
    d.run();
    assert_eq!(d.used(), Some((3, 0)));
    d.q.next_desc = 4;
    d.assert_read_works(3, &image[1536..]);
    assert!(!d.interrupt.needs_reset());
}

#[test]
fn huge_lengths_fail_without_allocating() {
    let image = pattern(4 * 512);
    let (img, mut d) = driver(&image, false);
    for len in [u32::MAX - 32, 0x8000_0000, MEM_END as u32 * 2] {
        let head = d.request(kind::IN, 0, len, true);
        assert_eq!(d.serve(head), (status::IOERR, 1), "read of {len:#x}");
        let head = d.request(kind::OUT, 0, len & !511, false);
        assert_eq!(d.serve(head), (status::IOERR, 1), "write of {len:#x}");
    }
    // Many descriptors whose lengths add up past 4 GiB: the queue crate ends the chain.
    d.header(HDR, kind::IN, 0);
    let mut bufs = vec![(HDR, 16, false)];
    bufs.extend(std::iter::repeat_n((DATA, 0x7FFF_FE00u32, true), 3));
    bufs.push((STATUS, 1, true));
    let head = d.chain(&bufs);
    d.run();
    let (id, _) = d.used().unwrap();
    assert_eq!(id, u32::from(head));
    assert!(img.contents() == image, "the image changed");
    d.assert_read_works(0, &image[..512]);
}

#[test]
fn discard_and_write_zeroes_with_huge_range_lists_fail() {
    let (img, mut d) = driver(&pattern(64 * 512), false);
    if d.dev.features() & features::DISCARD == 0 {
        return; // the temporary directory's file system cannot punch holes
    }
    // 33 ranges (one more than offered), an empty list, a list that is not whole ranges,
    // and one the size of all guest memory.
    for len in [33 * 16u32, 0, 20, MEM_END as u32 - 64] {
        d.header(HDR, kind::DISCARD, 0);
        let head = d.chain(&[(HDR, 16, false), (DATA, len, false), (STATUS, 1, true)]);
        assert_eq!(d.serve(head), (status::IOERR, 1), "list of {len} bytes");
    }
    assert!(img.contents() == pattern(64 * 512), "the image changed");
}

#[test]
fn too_many_descriptors_through_an_indirect_table_fail() {
    let image = pattern(4 * 512);
    let (_img, mut d) = driver(&image, false);
    let table = 0x80000u64;
    let n: u16 = 2000;
    d.header(HDR, kind::IN, 0);
    let entry = |i: u16, addr: u64, len: u32, flags: u16| {
        let at = GuestAddress(table + 16 * u64::from(i));
        d.mem.write_obj(addr, at).unwrap();
        d.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        d.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        d.mem.write_obj(i + 1, at.unchecked_add(14)).unwrap();
    };
    entry(0, HDR, 16, F_NEXT);
    for i in 1..n - 1 {
        entry(i, DATA, 512, F_WRITE | F_NEXT);
    }
    entry(n - 1, STATUS, 1, F_WRITE);
    d.desc(0, table, u32::from(n) * 16, F_INDIRECT, 0);
    d.publish(0);
    d.mem.write_obj(0xEEu8, GuestAddress(STATUS)).unwrap();
    d.run();
    assert_eq!(d.used(), Some((0, 1)));
    assert_eq!(d.status(), status::IOERR);
    d.q.next_desc = 1;
    d.assert_read_works(0, &image[..512]);
}

#[test]
fn an_indirect_request_within_limits_is_served() {
    let image = pattern(8 * 512);
    let (_img, mut d) = driver(&image, false);
    let table = 0x80000u64;
    d.header(HDR, kind::IN, 0);
    let rows: [(u64, u32, u16); 4] = [
        (HDR, 16, F_NEXT),
        (DATA, 1024, F_WRITE | F_NEXT),
        (DATA + 4096, 1024, F_WRITE | F_NEXT),
        (STATUS, 1, F_WRITE),
    ];
    for (i, (addr, len, flags)) in rows.iter().enumerate() {
        let at = GuestAddress(table + 16 * i as u64);
        d.mem.write_obj(*addr, at).unwrap();
        d.mem.write_obj(*len, at.unchecked_add(8)).unwrap();
        d.mem.write_obj(*flags, at.unchecked_add(12)).unwrap();
        d.mem.write_obj(i as u16 + 1, at.unchecked_add(14)).unwrap();
    }
    d.desc(0, table, 64, F_INDIRECT, 0);
    d.publish(0);
    d.run();
    assert_eq!(d.used(), Some((0, 2049)));
    assert_eq!(d.status(), status::OK);
    assert_eq!(d.bytes(DATA, 1024), &image[..1024]);
    assert_eq!(d.bytes(DATA + 4096, 1024), &image[1024..2048]);
}

#[test]
fn a_broken_avail_ring_needs_reset_and_a_reset_revives_the_device() {
    let image = pattern(2 * 512);
    let (_img, mut d) = driver(&image, false);
    // The driver claims 1000 new buffers in a ring of 256.
    d.mem
        .write_obj(1000u16, GuestAddress(d.q.avail + 2))
        .unwrap();
    d.run();
    assert!(d.interrupt.needs_reset());
    assert_eq!(d.used(), None);
    // Further notifications are ignored until the driver resets the device.
    d.run();
    assert_eq!(d.used(), None);
    d.dev.reset();
    d.interrupt.reset();
    d.mem.write_obj(0u16, GuestAddress(d.q.avail + 2)).unwrap();
    d.mem.write_obj(0u16, GuestAddress(d.q.used + 2)).unwrap();
    d.q.avail_idx = 0;
    d.q.used_seen = 0;
    d.dev
        .activate(ctx(&d.mem, &d.interrupt, VIRTIO_F_VERSION_1))
        .unwrap();
    d.assert_read_works(1, &image[512..]);
}

#[test]
fn a_head_index_past_the_queue_needs_reset() {
    let (_img, mut d) = driver(&[0u8; 512], false);
    d.publish(QSIZE + 3);
    d.run();
    assert!(d.interrupt.needs_reset());
}

// ---- read-only disks -----------------------------------------------------------------------

#[test]
fn a_read_only_disk_offers_ro_and_refuses_writes() {
    let image = pattern(8 * 512);
    let (img, mut d) = driver(&image, true);
    assert_ne!(d.dev.features() & features::RO, 0);
    assert_eq!(d.dev.features() & features::DISCARD, 0);
    assert_eq!(d.dev.features() & features::WRITE_ZEROES, 0);
    d.fill(DATA, &[0x11; 512]);
    let head = d.request(kind::OUT, 0, 512, false);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    d.header(HDR, kind::DISCARD, 0);
    d.mem.write_obj(0u64, GuestAddress(DATA)).unwrap();
    d.mem.write_obj(8u32, GuestAddress(DATA + 8)).unwrap();
    d.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
    let head = d.chain(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::UNSUPP, 1));
    d.header(HDR, kind::WRITE_ZEROES, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::UNSUPP, 1));
    let head = d.request(kind::FLUSH, 0, 0, false);
    assert_eq!(d.serve(head), (status::OK, 1));
    assert!(img.contents() == image, "the image changed");
    d.assert_read_works(0, &image[..512]);
}

#[test]
fn a_read_only_disk_opens_a_file_without_write_permission() {
    let img = Image::new(&pattern(512));
    let mut perms = std::fs::metadata(img.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    std::fs::set_permissions(img.path(), perms).unwrap();
    assert!(Block::new(config(&img, true)).is_ok());
}

// ---- discard and write zeroes --------------------------------------------------------------

fn range(d: &Driver, at: u64, sector: u64, num: u32, flags: u32) {
    d.mem.write_obj(sector, GuestAddress(at)).unwrap();
    d.mem.write_obj(num, GuestAddress(at + 8)).unwrap();
    d.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
}

#[test]
fn discard_punches_holes_and_checks_every_range() {
    let image = vec![0xABu8; 1 << 20];
    let (img, mut d) = driver(&image, false);
    test_skip::skip_if!((d.dev.features() & features::DISCARD == 0)
        .then_some("the temporary directory cannot punch holes"));
    // Make sure the blocks are allocated on disk.
    std::fs::File::open(img.path()).unwrap().sync_all().unwrap();
    let blocks_before = std::fs::metadata(img.path()).unwrap().blocks();

    // A bad range among good ones fails the whole request, before anything is punched.
    range(&d, DATA, 0, 256, 0);
    range(&d, DATA + 16, 2047, 2, 0);
    d.header(HDR, kind::DISCARD, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 32, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    assert!(img.contents() == image, "the image changed");
    // The unmap flag is not allowed on DISCARD; unknown flags on either.
    range(&d, DATA, 0, 8, 1);
    let head = d.chain(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::UNSUPP, 1));
    range(&d, DATA, 0, 8, 0);
    range(&d, DATA + 16, 16, u32::MAX, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 32, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::IOERR, 1));
    assert!(img.contents() == image, "the image changed");

    // Two good ranges: the first 512 KiB and the last 256 KiB.
    range(&d, DATA, 0, 1024, 0);
    range(&d, DATA + 16, 1536, 512, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 32, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::OK, 1));
    let after = img.contents();
    assert!(after[..512 << 10].iter().all(|&b| b == 0));
    assert!(after[512 << 10..768 << 10].iter().all(|&b| b == 0xAB));
    assert!(after[768 << 10..].iter().all(|&b| b == 0));
    let blocks_after = std::fs::metadata(img.path()).unwrap().blocks();
    assert!(
        blocks_after < blocks_before,
        "holes punched: {blocks_before} -> {blocks_after} blocks"
    );
    assert_eq!(after.len(), 1 << 20, "the size is kept");
}

#[test]
fn write_zeroes_zeroes_with_or_without_unmap() {
    let image = vec![0xCDu8; 64 << 10];
    let (img, mut d) = driver(&image, false);
    test_skip::skip_if!((d.dev.features() & features::WRITE_ZEROES == 0)
        .then_some("the temporary directory cannot punch holes"));
    range(&d, DATA, 1, 2, 0);
    range(&d, DATA + 16, 10, 1, 1);
    d.header(HDR, kind::WRITE_ZEROES, 0);
    let head = d.chain(&[(HDR, 16, false), (DATA, 32, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::OK, 1));
    let after = img.contents();
    let zero = |s: usize, n: usize| after[s * 512..(s + n) * 512].iter().all(|&b| b == 0);
    let kept = |s: usize, n: usize| after[s * 512..(s + n) * 512].iter().all(|&b| b == 0xCD);
    assert!(kept(0, 1) && zero(1, 2) && kept(3, 7) && zero(10, 1) && kept(11, 117));
    // Flags other than unmap are refused.
    range(&d, DATA, 0, 1, 2);
    let head = d.chain(&[(HDR, 16, false), (DATA, 16, false), (STATUS, 1, true)]);
    assert_eq!(d.serve(head), (status::UNSUPP, 1));
}

// ---- configuration, creation, events -------------------------------------------------------

#[test]
fn config_space_describes_the_disk() {
    let img = Image::new(&pattern(100 * 512 + 17));
    let dev = Block::new(config(&img, false)).unwrap();
    let read = |offset: u64, len: usize| {
        let mut b = vec![0u8; len];
        dev.read_config(offset, &mut b);
        b
    };
    assert_eq!(read(0, 8), 100u64.to_le_bytes());
    assert_eq!(read(8, 4), SIZE_MAX.to_le_bytes());
    assert_eq!(read(12, 4), SEG_MAX.to_le_bytes());
    assert_eq!(read(20, 4), 512u32.to_le_bytes());
    if dev.features() & features::DISCARD != 0 {
        assert_eq!(read(36, 4), MAX_DISCARD_SECTORS.to_le_bytes());
        assert_eq!(read(40, 4), 32u32.to_le_bytes());
        assert_eq!(read(56, 1), [1]);
    }
    assert_eq!(read(4000, 4), [0; 4]);
    assert_eq!(dev.device_type(), 2);
    assert_eq!(dev.queue_max_sizes(), &[256]);
    let f = dev.features();
    for bit in [
        features::FLUSH,
        features::SEG_MAX,
        features::SIZE_MAX,
        features::BLK_SIZE,
        VIRTIO_RING_F_EVENT_IDX,
    ] {
        assert_ne!(f & bit, 0, "feature {bit:#x}");
    }
    assert_eq!(f & features::RO, 0);
}

#[test]
fn creation_errors_say_what_is_wrong() {
    let missing = BlockConfig {
        path: "/nonexistent/vmctl/x.img".into(),
        read_only: false,
        serial: String::new(),
    };
    let e = Block::new(missing).err().unwrap().to_string();
    assert_eq!(
        e,
        "cannot open /nonexistent/vmctl/x.img: No such file or directory"
    );

    let empty = Image::new(&[]);
    let e = Block::new(config(&empty, false)).err().unwrap().to_string();
    assert!(e.contains("is empty"), "{e}");
    let tiny = Image::new(&[1u8; 511]);
    let e = Block::new(config(&tiny, true)).err().unwrap().to_string();
    assert!(e.contains("is empty"), "{e}");

    let dir = BlockConfig {
        path: std::env::temp_dir(),
        read_only: true,
        serial: String::new(),
    };
    let e = Block::new(dir).err().unwrap().to_string();
    assert!(e.contains("not a disk image"), "{e}");

    let img = Image::new(&[0u8; 512]);
    let mut long = config(&img, false);
    long.serial = "x".repeat(21);
    let e = Block::new(long).err().unwrap().to_string();
    assert!(e.contains("longer than 20 bytes"), "{e}");
}

#[test]
fn a_writable_image_is_locked_against_a_second_writer() {
    let img = Image::new(&[0u8; 512]);
    let first = Block::new(config(&img, false)).unwrap();
    let e = Block::new(config(&img, false)).err().unwrap().to_string();
    assert!(e.contains("in use"), "{e}");
    drop(first);
    // Readers share.
    let a = Block::new(config(&img, true)).unwrap();
    let _b = Block::new(config(&img, true)).unwrap();
    drop(a);
}

#[test]
fn event_loop_drops_early_notifications_and_serves_after_activation() {
    // Arrange: the device registered with an event manager before the driver is ready.
    let image = pattern(4 * 512);
    let img = Image::new(&image);
    let dev = Arc::new(Mutex::new(Block::new(config(&img, false)).unwrap()));
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    events.add_subscriber(dev.clone());
    let evt = dev.lock().unwrap().queue_events()[0].try_clone().unwrap();
    evt.write(1).unwrap();
    assert_eq!(events.run_with_timeout(0).unwrap(), 1);

    // Act: activate, queue a read, notify.
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_END as usize)]).unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let interrupt = Arc::new(Interrupt::new(irq.try_clone().unwrap()));
    dev.lock()
        .unwrap()
        .activate(ctx(
            &mem,
            &interrupt,
            VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX,
        ))
        .unwrap();
    let mut d = Guest::new(mem);
    let head = d.request(kind::IN, 1, 1024, true);
    evt.write(1).unwrap();
    // One turn starts the read, a later one (woken by the I/O workers) answers it.
    let mut used = None;
    for _ in 0..50 {
        events.run_with_timeout(100).unwrap();
        used = d.used();
        if used.is_some() {
            break;
        }
    }

    // Assert
    assert_eq!(used, Some((u32::from(head), 1025)));
    assert_eq!(d.status(), status::OK);
    assert_eq!(d.bytes(DATA, 1024), &image[512..1536]);
    assert_eq!(irq.read().unwrap(), 1);
}

#[test]
fn a_chain_made_available_again_while_in_flight_breaks_the_queue() {
    // Arrange: one read, offered twice before the device could answer it.
    let image = pattern(4 * 512);
    let (_img, mut d) = driver(&image, false);
    let head = d.request(kind::IN, 0, 512, true);
    d.publish(head);
    // Act
    d.run();
    // Assert: the reuse stops the device, which answers nothing more until a reset.
    assert!(d.interrupt.needs_reset());
    assert_eq!(d.dev.handler.in_flight(), 0);
    assert_eq!(d.used(), None);
}

#[test]
fn a_reset_waits_for_requests_in_flight_and_answers_none() {
    // Arrange: reads handed to the I/O workers, not yet answered.
    let image = pattern(64 * 512);
    let (_img, mut d) = driver(&image, false);
    d.reads(8, 4096, 1);
    d.dev.process_queue();
    let started = d.dev.handler.in_flight();
    // Act
    d.dev.reset();
    // Assert
    assert!(started > 0, "nothing was in flight");
    assert_eq!(d.dev.handler.in_flight(), 0);
    d.dev.process_done();
    assert_eq!(d.used(), None, "a request was answered after the reset");
}

#[test]
fn many_reads_are_in_flight_at_once_and_all_complete() {
    // Arrange: 32 reads of different sectors (queue depth 32).
    let image = pattern(256 * 512);
    let (_img, mut d) = driver(&image, false);
    d.reads(32, 4096, 8);
    // Act
    d.run();
    // Assert: each read got its own sectors, whatever order they completed in.
    let mut heads: Vec<u32> = std::iter::from_fn(|| d.used()).map(|(h, _)| h).collect();
    heads.sort_unstable();
    assert_eq!(heads.len(), 32);
    for i in 0..32usize {
        let at = i * 4096;
        assert_eq!(
            d.bytes(DATA + at as u64, 4096),
            &image[at..at + 4096],
            "read {i}"
        );
    }
    assert_eq!(d.dev.stats().bytes, 32 * 4096);
}
