//! A hostile driver: crafted queues fed to the device. Each test arranges descriptors and
//! available-ring entries in guest memory the way a driver would (or should not), acts through
//! the device's queue processing, and checks the used ring, the status bytes and the device
//! status; most then show a well-formed request still works (the device carries on).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::tempfile::TempFile;

use super::flush::Flusher;
use super::request::{RESP_EIO, RESP_OK};
use super::{Pmem, PmemConfig, ALIGNMENT, QUEUE_SIZE};

use crate::virtio::interrupt::INT_VRING;
use crate::virtio::{
    device_type, GuestMemoryMmap, Interrupt, QueueContext, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};

const MEM_SIZE: u64 = 0x10_0000;
const QSIZE: u16 = 16;
const GUEST_ADDR: u64 = 1 << 32;
/// Request header and status buffers.
const HDR: u64 = 0x1_0000;
const STATUS: u64 = 0x2_0000;
/// Fill pattern: a status the device did not write reads back as this.
const UNTOUCHED: u32 = 0xAAAA_AAAA;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// The driver's side of a split queue (QSIZE entries unless `sized`) at `base`: descriptor table, then the
/// available ring at +0x1000 and the used ring at +0x2000 (apart, so `used_event` and
/// `avail_event` have their own bytes).
struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    base: u64,
    size: u16,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMemoryMmap, base: u64) -> Self {
        Self::sized(mem, base, QSIZE)
    }

    /// A queue of `size` entries (at most 256: each part must fit in its 4 KiB).
    fn sized(mem: &'a GuestMemoryMmap, base: u64, size: u16) -> Self {
        for off in [0x1000u64, 0x2000] {
            mem.write_slice(&[0u8; 0x1000], GuestAddress(base + off))
                .unwrap();
        }
        Driver { mem, base, size }
    }

    fn avail_addr(&self) -> u64 {
        self.base + 0x1000
    }

    fn used_addr(&self) -> u64 {
        self.base + 0x2000
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(self.base);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(self.avail_addr());
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(self.used_addr());
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        assert!(q.is_valid(self.mem));
        q
    }

    fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
        self.mem
            .write_obj(d, GuestAddress(self.base + 16 * u64::from(index)))
            .unwrap();
    }

    fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx, GuestAddress(self.avail_addr() + 2))
            .unwrap();
    }

    fn offer(&self, head: u16) {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(self.avail_addr() + 2))
            .unwrap();
        let slot = self.avail_addr() + 4 + 2 * u64::from(idx % self.size);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }

    fn used(&self) -> Vec<(u32, u32)> {
        let n: u16 = self
            .mem
            .read_obj(GuestAddress(self.used_addr() + 2))
            .unwrap();
        (0..n)
            .map(|i| {
                let e = self.used_addr() + 4 + 8 * u64::from(i % self.size);
                let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
                (id, len)
            })
            .collect()
    }

    /// The driver's `used_event`, after the available ring.
    fn used_event_addr(&self) -> u64 {
        self.avail_addr() + 4 + 2 * u64::from(self.size)
    }

    /// The device's `avail_event`, after the used ring.
    fn avail_event_addr(&self) -> u64 {
        self.used_addr() + 4 + 8 * u64::from(self.size)
    }
}

/// A device over a 3000-byte image, registered as if the event loop had accepted it.
fn device(read_only: bool) -> (Pmem, TempFile) {
    let file = TempFile::new_with_prefix("/tmp/vmctl-pmem-test").unwrap();
    std::fs::write(file.as_path(), [0x5a; 3000]).unwrap();
    let mut pmem = Pmem::open(
        PmemConfig {
            path: file.as_path().to_path_buf(),
            read_only,
        },
        GUEST_ADDR,
    )
    .unwrap();
    pmem.registered = true;
    (pmem, file)
}

fn activate(
    pmem: &mut Pmem,
    mem: &GuestMemoryMmap,
    vq: &Driver,
    event_idx: bool,
) -> Arc<Interrupt> {
    let mut queue = vq.queue();
    queue.set_event_idx(event_idx);
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let mut features = VIRTIO_F_VERSION_1;
    if event_idx {
        features |= VIRTIO_RING_F_EVENT_IDX;
    }
    pmem.activate(QueueContext {
        mem: mem.clone(),
        queues: vec![queue],
        interrupt: interrupt.clone(),
        acked_features: features,
    })
    .unwrap();
    interrupt
}

fn set_desc(vq: &Driver, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
    vq.set_desc(index, addr, len, flags, next);
}

/// Writes `descs` (addr, len, flags) as one chain at table index `first` onwards, linked with
/// NEXT, and offers it.
fn chain(vq: &Driver, first: u16, descs: &[(u64, u32, u16)]) {
    for (i, &(addr, len, flags)) in descs.iter().enumerate() {
        let index = first + i as u16;
        let last = i + 1 == descs.len();
        let flags = if last {
            flags
        } else {
            flags | VRING_DESC_F_NEXT as u16
        };
        set_desc(vq, index, addr, len, flags, index + 1);
    }
    offer(vq, first);
}

/// Puts `head` in the available ring.
fn offer(vq: &Driver, head: u16) {
    vq.offer(head);
}

/// The used ring's entries so far: (head, length).
fn used(vq: &Driver) -> Vec<(u32, u32)> {
    vq.used()
}

/// A well-formed FLUSH request: header at `hdr`, status at `status`.
fn flush_request(mem: &GuestMemoryMmap, vq: &Driver, first: u16, hdr: u64, status: u64) {
    mem.write_obj(0u32, GuestAddress(hdr)).unwrap();
    mem.write_obj(UNTOUCHED, GuestAddress(status)).unwrap();
    chain(vq, first, &[(hdr, 4, R), (status, 4, W)]);
}

fn status_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn prime_status(mem: &GuestMemoryMmap, addr: u64) {
    mem.write_obj(UNTOUCHED, GuestAddress(addr)).unwrap();
}

/// Processes the queue and waits for every fsync it started to be answered.
fn run(pmem: &mut Pmem) {
    pmem.process_queue();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pmem.flushes.running {
        assert!(Instant::now() < deadline, "the flush never finished");
        std::thread::sleep(Duration::from_millis(1));
        pmem.process_flush_done();
    }
}

/// A good request after whatever came before is still answered: the device carries on.
fn still_works(pmem: &mut Pmem, mem: &GuestMemoryMmap, vq: &Driver, first: u16) {
    let before = used(vq).len();
    flush_request(mem, vq, first, HDR + 0x800, STATUS + 0x800);
    run(pmem);
    let after = used(vq);
    assert_eq!(after.len(), before + 1, "the good request was not answered");
    assert_eq!(after[before], (u32::from(first), 4));
    assert_eq!(status_at(mem, STATUS + 0x800), RESP_OK);
}

fn needs_reset(interrupt: &Interrupt) -> bool {
    interrupt.needs_reset()
}

// ---- identity and config space ----------------------------------------------------------------

#[test]
fn identity_features_and_config_space() {
    let (pmem, _f) = device(false);
    assert_eq!(pmem.device_type(), device_type::PMEM);
    assert_eq!(pmem.queue_max_sizes(), &[256]);
    assert_eq!(pmem.queue_events().len(), 1);
    assert_eq!(
        pmem.features(),
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    );
    let mut start = [0u8; 8];
    pmem.read_config(0, &mut start);
    assert_eq!(u64::from_le_bytes(start), GUEST_ADDR);
    // Drivers read le64 fields as two 32-bit halves.
    let (mut lo, mut hi) = ([0u8; 4], [0u8; 4]);
    pmem.read_config(8, &mut lo);
    pmem.read_config(12, &mut hi);
    assert_eq!(u32::from_le_bytes(lo), ALIGNMENT as u32);
    assert_eq!(u32::from_le_bytes(hi), 0);
    let mut past = [0xffu8; 4];
    pmem.read_config(16, &mut past);
    assert_eq!(past, [0; 4]);
    pmem.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 4]);
    let m = pmem.mapping();
    assert_eq!(
        (m.guest_addr, m.len, m.read_only),
        (GUEST_ADDR, ALIGNMENT, false)
    );
    assert_eq!(pmem.file_len(), 3000);
}

#[test]
fn config_writes_are_ignored() {
    let (mut pmem, _f) = device(true);
    pmem.write_config(0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut start = [0u8; 8];
    pmem.read_config(0, &mut start);
    assert_eq!(u64::from_le_bytes(start), GUEST_ADDR);
}

// ---- well-formed requests ---------------------------------------------------------------------

#[test]
fn flush_syncs_the_file_and_answers_ok() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    flush_request(&mem, &vq, 0, HDR, STATUS);

    pmem.process_queue();
    assert!(
        used(&vq).is_empty(),
        "answered only once the fsync finished"
    );
    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
    assert_ne!(interrupt.status() & INT_VRING, 0);
    assert!(!needs_reset(&interrupt));
}

#[test]
fn many_flushes_share_fsyncs_and_all_get_answers() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    for i in 0..4u16 {
        flush_request(
            &mem,
            &vq,
            i * 2,
            HDR + u64::from(i) * 16,
            STATUS + u64::from(i) * 16,
        );
    }
    pmem.process_queue();
    // Two more arrive while the first fsync runs: they wait for a second one.
    for i in 4..6u16 {
        flush_request(
            &mem,
            &vq,
            i * 2,
            HDR + u64::from(i) * 16,
            STATUS + u64::from(i) * 16,
        );
    }
    run(&mut pmem);

    let mut heads: Vec<u32> = used(&vq)
        .iter()
        .map(|&(h, l)| {
            assert_eq!(l, 4);
            h
        })
        .collect();
    heads.sort();
    assert_eq!(heads, [0, 2, 4, 6, 8, 10]);
    for i in 0..6 {
        assert_eq!(status_at(&mem, STATUS + i * 16), RESP_OK);
    }
}

#[test]
fn flush_on_a_read_only_device_answers_ok_at_once() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(true);
    assert!(pmem.flusher.is_none());
    activate(&mut pmem, &mem, &vq, false);
    flush_request(&mem, &vq, 0, HDR, STATUS);

    pmem.process_queue();

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
}

#[test]
fn a_failing_fsync_answers_eio() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    // /dev/null cannot be fsynced (EINVAL).
    pmem.flusher = Some(Flusher::spawn(std::fs::File::open("/dev/null").unwrap()).unwrap());
    activate(&mut pmem, &mem, &vq, false);
    flush_request(&mem, &vq, 0, HDR, STATUS);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
}

#[test]
fn header_and_status_split_over_descriptors_are_understood() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    chain(
        &vq,
        0,
        &[
            (HDR, 1, R),
            (HDR + 1, 3, R),
            (STATUS, 1, W),
            (STATUS + 1, 1, W),
            (STATUS + 2, 2, W),
        ],
    );

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
}

#[test]
fn zero_length_descriptors_are_skipped() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(true);
    activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    chain(
        &vq,
        0,
        &[
            (0xFFFF_0000_0000, 0, R),
            (HDR, 4, R),
            (0, 0, W),
            (STATUS, 4, W),
        ],
    );

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
}

#[test]
fn an_indirect_table_is_followed() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    let table = 0x3_0000u64;
    let descs = [
        SplitDescriptor::new(HDR, 4, VRING_DESC_F_NEXT as u16, 1),
        SplitDescriptor::new(STATUS, 4, W, 0),
    ];
    for (i, d) in descs.iter().enumerate() {
        mem.write_obj(RawDescriptor::from(*d), GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    set_desc(&vq, 0, table, 32, VRING_DESC_F_INDIRECT as u16, 0);
    offer(&vq, 0);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
}

// ---- requests that fail, the device carrying on -----------------------------------------------

#[test]
fn an_unknown_request_type_fails_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(7u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    chain(&vq, 0, &[(HDR, 4, R), (STATUS, 4, W)]);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    assert!(!needs_reset(&interrupt));
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn a_truncated_header_fails_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    chain(&vq, 0, &[(HDR, 2, R), (STATUS, 4, W)]);
    prime_status(&mem, STATUS + 16);
    chain(&vq, 2, &[(STATUS + 16, 4, W)]); // no header at all

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4), (2, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    assert_eq!(status_at(&mem, STATUS + 16), RESP_EIO);
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn a_chain_without_room_for_the_status_comes_back_untouched() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    chain(&vq, 0, &[(HDR, 4, R)]); // no writable part
    chain(&vq, 2, &[(HDR, 4, R), (STATUS, 2, W)]); // 2 bytes only

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 0), (2, 0)]);
    assert_eq!(status_at(&mem, STATUS), UNTOUCHED);
    assert_eq!(status_at(&mem, HDR), 0);
    assert!(!needs_reset(&interrupt));
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn wrong_directions_fail_the_request_and_never_write_readable_buffers() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    // Header device-writable, status device-readable: swapped.
    prime_status(&mem, HDR);
    prime_status(&mem, STATUS);
    chain(&vq, 0, &[(HDR, 4, W), (STATUS, 4, R)]);
    // Both device-readable.
    prime_status(&mem, STATUS + 16);
    chain(&vq, 2, &[(HDR + 16, 4, R), (STATUS + 16, 4, R)]);

    run(&mut pmem);

    // The first: readable after writable, answered with an error in its writable buffer.
    // The second: nowhere to answer.
    assert_eq!(used(&vq), [(0, 4), (2, 0)]);
    assert_eq!(status_at(&mem, HDR), RESP_EIO);
    assert_eq!(status_at(&mem, STATUS), UNTOUCHED);
    assert_eq!(status_at(&mem, STATUS + 16), UNTOUCHED);
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn addresses_outside_guest_memory_fail_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    for s in [STATUS, STATUS + 16, STATUS + 32] {
        prime_status(&mem, s);
    }
    // Header far outside memory.
    chain(&vq, 0, &[(0xFFFF_FFFF_F000, 4, R), (STATUS, 4, W)]);
    // Header straddling the end of memory.
    chain(&vq, 2, &[(MEM_SIZE - 2, 4, R), (STATUS + 16, 4, W)]);
    // Header in the pmem region itself (not guest RAM as far as descriptors go).
    chain(&vq, 4, &[(GUEST_ADDR, 4, R), (STATUS + 32, 4, W)]);
    // Status outside memory: nowhere to answer.
    chain(&vq, 6, &[(HDR, 4, R), (MEM_SIZE, 4, W)]);
    // Address overflow.
    chain(&vq, 8, &[(HDR, 4, R), (u64::MAX - 1, 4, W)]);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4), (2, 4), (4, 4), (6, 0), (8, 0)]);
    for s in [STATUS, STATUS + 16, STATUS + 32] {
        assert_eq!(status_at(&mem, s), RESP_EIO);
    }
    assert!(!needs_reset(&interrupt));
    still_works(&mut pmem, &mem, &vq, 10);
}

#[test]
fn huge_lengths_fail_the_request_without_allocating() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    for s in [STATUS, STATUS + 16] {
        prime_status(&mem, s);
    }
    // A 2 GiB header in 1 MiB of memory.
    chain(&vq, 0, &[(HDR, 0x8000_0000, R), (STATUS, 4, W)]);
    // A 4 GiB status buffer.
    chain(&vq, 2, &[(HDR, 4, R), (STATUS, u32::MAX, W)]);
    // Lengths summing past 4 GiB: the chain is cut there, its status never seen.
    chain(&vq, 4, &[(HDR, u32::MAX, R), (STATUS + 16, 4, W)]);
    chain(&vq, 6, &[(0, u32::MAX, W), (0, u32::MAX, W)]);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4), (2, 0), (4, 0), (6, 0)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    assert_eq!(status_at(&mem, STATUS + 16), UNTOUCHED);
    still_works(&mut pmem, &mem, &vq, 8);
}

#[test]
fn a_descriptor_loop_fails_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    // 0 -> 1 -> 0 -> ...
    set_desc(&vq, 0, HDR, 4, VRING_DESC_F_NEXT as u16, 1);
    set_desc(&vq, 1, STATUS, 4, W | VRING_DESC_F_NEXT as u16, 0);
    offer(&vq, 0);
    // A descriptor that points to itself.
    set_desc(&vq, 2, HDR, 4, VRING_DESC_F_NEXT as u16, 2);
    offer(&vq, 2);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4), (2, 0)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    assert!(!needs_reset(&interrupt));
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn a_next_index_past_the_table_fails_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    prime_status(&mem, STATUS);
    set_desc(&vq, 0, STATUS, 4, W | VRING_DESC_F_NEXT as u16, 200);
    offer(&vq, 0);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn an_over_long_chain_is_refused() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    mem.write_obj(0u32, GuestAddress(HDR)).unwrap();
    prime_status(&mem, STATUS);
    // 1 header + 16 writable = 17 descriptors through an indirect table (the queue holds 16).
    let table = 0x3_0000u64;
    for i in 0..17u16 {
        let d = if i == 0 {
            SplitDescriptor::new(HDR, 4, VRING_DESC_F_NEXT as u16, 1)
        } else {
            let flags = if i < 16 {
                W | VRING_DESC_F_NEXT as u16
            } else {
                W
            };
            SplitDescriptor::new(STATUS + 4 * u64::from(i - 1), 4, flags, i + 1)
        };
        mem.write_obj(
            RawDescriptor::from(d),
            GuestAddress(table + 16 * u64::from(i)),
        )
        .unwrap();
    }
    set_desc(&vq, 0, table, 17 * 16, VRING_DESC_F_INDIRECT as u16, 0);
    offer(&vq, 0);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_EIO);
    still_works(&mut pmem, &mem, &vq, 4);
}

#[test]
fn bad_indirect_tables_fail_the_request() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    let table = 0x3_0000u64;
    // A table length that is not a multiple of 16.
    set_desc(&vq, 0, table, 17, VRING_DESC_F_INDIRECT as u16, 0);
    offer(&vq, 0);
    // A table outside memory.
    set_desc(
        &vq,
        1,
        0xFFFF_FFFF_0000,
        32,
        VRING_DESC_F_INDIRECT as u16,
        0,
    );
    offer(&vq, 1);
    // An indirect descriptor inside an indirect table.
    mem.write_obj(
        RawDescriptor::from(SplitDescriptor::new(
            table,
            16,
            VRING_DESC_F_INDIRECT as u16,
            0,
        )),
        GuestAddress(table),
    )
    .unwrap();
    set_desc(&vq, 2, table, 16, VRING_DESC_F_INDIRECT as u16, 0);
    offer(&vq, 2);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 0), (1, 0), (2, 0)]);
    assert!(!needs_reset(&interrupt));
    still_works(&mut pmem, &mem, &vq, 4);
}

// ---- a broken queue: DEVICE_NEEDS_RESET, then a reset revives the device ----------------------

#[test]
fn a_head_index_past_the_table_needs_a_reset() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    offer(&vq, 999);

    run(&mut pmem);

    assert!(needs_reset(&interrupt));
    assert!(used(&vq).is_empty());
    // Stopped: later requests are left alone until a reset.
    flush_request(&mem, &vq, 0, HDR, STATUS);
    run(&mut pmem);
    assert!(used(&vq).is_empty());

    pmem.reset();
    let vq = Driver::new(&mem, 0);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    still_works(&mut pmem, &mem, &vq, 0);
    assert!(!needs_reset(&interrupt));
}

#[test]
fn an_available_index_running_ahead_needs_a_reset() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(true);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    vq.set_avail_idx(QSIZE + 1);

    run(&mut pmem);

    assert!(needs_reset(&interrupt));
    assert!(used(&vq).is_empty());
}

#[test]
fn more_flushes_outstanding_than_the_queue_holds_need_a_reset() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let interrupt = activate(&mut pmem, &mem, &vq, false);
    // The same head offered again and again, faster than fsyncs answer.
    flush_request(&mem, &vq, 0, HDR, STATUS);
    for _ in 1..QSIZE {
        offer(&vq, 0);
    }
    pmem.process_queue();
    assert!(!needs_reset(&interrupt));
    offer(&vq, 0);

    pmem.process_queue();

    assert!(needs_reset(&interrupt));
    // The fsync that was running finishes into nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pmem.flushes.running {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
        pmem.process_flush_done();
    }
    assert!(used(&vq).is_empty());
}

#[test]
fn a_reset_during_an_fsync_drops_its_answers() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    activate(&mut pmem, &mem, &vq, false);
    flush_request(&mem, &vq, 0, HDR, STATUS);
    pmem.process_queue();
    assert!(pmem.flushes.running);

    pmem.reset();
    let vq2 = Driver::new(&mem, 0x8_0000);
    activate(&mut pmem, &mem, &vq2, false);
    still_works(&mut pmem, &mem, &vq2, 0);

    assert_eq!(status_at(&mem, STATUS), UNTOUCHED);
    assert!(used(&vq).is_empty());
}

// ---- notifications and the event loop ---------------------------------------------------------

#[test]
fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(true);
    let interrupt = activate(&mut pmem, &mem, &vq, true);
    // used_event (after the available ring) = 5: interrupt only once entry 5 is used.
    let used_event = vq.used_event_addr();
    mem.write_obj(5u16, GuestAddress(used_event)).unwrap();
    flush_request(&mem, &vq, 0, HDR, STATUS);

    run(&mut pmem);

    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(interrupt.status() & INT_VRING, 0);
    // avail_event (after the used ring) tells the driver where to notify next.
    let avail_event = vq.avail_event_addr();
    assert_eq!(mem.read_obj::<u16>(GuestAddress(avail_event)).unwrap(), 1);

    mem.write_obj(1u16, GuestAddress(used_event)).unwrap();
    flush_request(&mem, &vq, 2, HDR, STATUS);
    run(&mut pmem);
    assert_ne!(interrupt.status() & INT_VRING, 0);
}

#[test]
fn activation_needs_one_queue_and_the_event_loop() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (mut pmem, _f) = device(false);
    let ctx = |queues: Vec<Queue>| QueueContext {
        mem: mem.clone(),
        queues,
        interrupt: Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())),
        acked_features: VIRTIO_F_VERSION_1,
    };
    assert!(pmem.activate(ctx(vec![])).is_err());
    assert!(pmem.activate(ctx(vec![vq.queue(), vq.queue()])).is_err());
    pmem.registered = false;
    assert!(pmem.activate(ctx(vec![vq.queue()])).is_err());
}

#[test]
fn the_event_loop_ignores_notifications_before_activation_then_serves_the_queue() {
    let mem = memory();
    let vq = Driver::new(&mem, 0);
    let (pmem, _f) = device(false);
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    let pmem = Arc::new(Mutex::new(pmem));
    pmem.lock().unwrap().registered = false;
    events.add_subscriber(pmem.clone());
    assert!(
        pmem.lock().unwrap().registered,
        "init registered the eventfds"
    );

    // A notification (and a request) before DRIVER_OK: drained, nothing answered.
    flush_request(&mem, &vq, 0, HDR, STATUS);
    pmem.lock().unwrap().queue_events()[0].write(1).unwrap();
    events.run_with_timeout(0).unwrap();
    assert!(used(&vq).is_empty());
    assert!(
        pmem.lock().unwrap().queue_events()[0].read().is_err(),
        "drained"
    );

    // Activation makes the loop look at the queue; the fsync's completion arrives as an event.
    let interrupt = activate(&mut pmem.lock().unwrap(), &mem, &vq, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while used(&vq).is_empty() {
        assert!(Instant::now() < deadline, "the request was never answered");
        events.run_with_timeout(100).unwrap();
    }
    assert_eq!(used(&vq), [(0, 4)]);
    assert_eq!(status_at(&mem, STATUS), RESP_OK);
    assert_ne!(interrupt.status() & INT_VRING, 0);
}

#[test]
fn a_turn_serves_at_most_the_budget_and_comes_back_for_the_rest() {
    // Arrange: one request offered 140 times (a driver may repeat a head; each is served).
    let mem = memory();
    let vq = Driver::sized(&mem, 0, QUEUE_SIZE);
    let (mut pmem, _f) = device(true);
    activate(&mut pmem, &mem, &vq, false);
    flush_request(&mem, &vq, 0, HDR, STATUS);
    for _ in 1..140 {
        offer(&vq, 0);
    }
    // Act
    pmem.process_queue();
    let first = used(&vq).len();
    let rearmed = pmem.queue_event().read().is_ok();
    pmem.process_queue();
    // Assert
    assert_eq!(first, 128);
    assert!(
        rearmed,
        "the device did not kick itself for the requests left"
    );
    assert_eq!(used(&vq).len(), 140);
}
