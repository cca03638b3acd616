//! Unit tests: a hand-made driver puts crafted chains in guest memory; a socket pair stands in
//! for the tap (one frame per message).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{random_mac, Net};
use super::features::*;
use super::tap::Tap;
use super::tx::header_ok;
use super::*;
use crate::virtio::interrupt::INT_VRING;
use crate::virtio::test_queue::{DriverQueue, F_INDIRECT, F_NEXT, F_WRITE};
use crate::virtio::{
    GuestMemoryMmap, Interrupt, QueueContext, VirtioDevice, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};

const MEM_SIZE: u64 = 16 << 20;
const RXQ_BASE: u64 = 0x1_0000;
const TXQ_BASE: u64 = 0x2_0000;
/// Where test buffers go.
const DATA: u64 = 0x10_0000;

struct Harness {
    mem: GuestMemoryMmap,
    net: Net,
    peer: OwnedFd,
    irq: Arc<Interrupt>,
    rxq: DriverQueue,
    txq: DriverQueue,
}

const ALL: u64 = VIRTIO_F_VERSION_1 | CSUM | GUEST_CSUM | MAC | HOST_TSO4 | MRG_RXBUF | STATUS;

fn memory() -> GuestMemoryMmap {
    // Two adjacent regions, so buffers can straddle them.
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20), (GuestAddress(8 << 20), 8 << 20)])
        .unwrap()
}

fn harness(acked: u64, qsize: u16) -> Harness {
    let mem = memory();
    let (tap, peer) = Tap::socket_pair();
    let mut net = Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap();
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let rxq = DriverQueue::new(RXQ_BASE, qsize);
    let txq = DriverQueue::new(TXQ_BASE, qsize);
    let event_idx = acked & VIRTIO_RING_F_EVENT_IDX != 0;
    net.activate(QueueContext {
        mem: mem.clone(),
        queues: vec![rxq.queue(event_idx), txq.queue(event_idx)],
        interrupt: irq.clone(),
        acked_features: acked,
    })
    .unwrap();
    Harness {
        mem,
        net,
        peer,
        irq,
        rxq,
        txq,
    }
}

fn hdr(flags: u8, gso_type: u8, gso_size: u16) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    h[0] = flags;
    h[1] = gso_type;
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn send_peer(fd: &OwnedFd, data: &[u8]) {
    // SAFETY: `data` is a valid buffer of its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    assert_eq!(n, data.len() as isize);
}

/// The next message the device wrote to the tap, if any.
fn recv_peer(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2 * MAX_BUFFER];
    // SAFETY: `buf` is a valid buffer of its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

impl Harness {
    /// Puts `data` (header + payload) in guest memory at `addr` and queues it for transmit.
    fn queue_tx(&mut self, addr: u64, data: &[u8]) -> u16 {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
        self.txq.add(&self.mem, &[(addr, data.len() as u32, 0)])
    }

    /// Gives the device `n` receive buffers of `len` bytes each, from `DATA` on.
    fn give_rx(&mut self, n: usize, len: u32) {
        for i in 0..n {
            let addr = DATA + i as u64 * u64::from(len);
            self.rxq.add(&self.mem, &[(addr, len, F_WRITE)]);
        }
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn interrupted(&self) -> bool {
        let raised = self.irq.status() & INT_VRING != 0;
        self.irq.ack(INT_VRING);
        raised
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, features, construction
// ---------------------------------------------------------------------------------------------

#[test]
fn config_space_has_the_mac_and_link_up() {
    let (tap, _peer) = Tap::socket_pair();
    let net = Net::with_tap(tap, [6, 1, 2, 3, 4, 5]).unwrap();

    let mut cfg = [0xAAu8; 8];
    net.read_config(0, &mut cfg);
    let mut past = [0xAAu8; 4];
    net.read_config(8, &mut past);
    let mut far = [0xAAu8; 2];
    net.read_config(u64::MAX, &mut far);

    assert_eq!(cfg, [6, 1, 2, 3, 4, 5, 1, 0]);
    assert_eq!(past, [0; 4]);
    assert_eq!(far, [0; 2]);
    assert_eq!(net.device_type(), 1);
    assert_eq!(net.queue_max_sizes(), &[256, 256]);
    assert_eq!(net.queue_events().len(), 2);
}

#[test]
fn offers_the_offloads_mergeable_buffers_and_event_idx() {
    let (tap, _peer) = Tap::socket_pair();
    let net = Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap();

    let f = net.features();

    for bit in [
        CSUM,
        GUEST_CSUM,
        MAC,
        GUEST_TSO4,
        GUEST_TSO6,
        GUEST_UFO,
        HOST_TSO4,
        HOST_TSO6,
        HOST_UFO,
        MRG_RXBUF,
        STATUS,
        VIRTIO_RING_F_EVENT_IDX,
    ] {
        assert_ne!(f & bit, 0, "feature {bit:#x} not offered");
    }
    // No control queue, no multiqueue.
    assert_eq!(f & (1 << 17 | 1 << 22), 0);
}

#[test]
fn random_macs_are_unicast_locally_administered_and_differ() {
    let a = random_mac();
    let b = random_mac();

    assert_eq!(a[0] & 0x03, 0x02);
    assert_eq!(b[0] & 0x03, 0x02);
    assert_ne!(a, b);
}

#[test]
fn multicast_or_zero_mac_and_bad_tap_names_are_refused_with_a_message() {
    let cases = [
        ("vmctlx0", Some([1, 0, 0, 0, 0, 1]), "multicast"),
        ("vmctlx0", Some([0; 6]), "00:00:00:00:00:00"),
        ("", None, "1 to 15 bytes"),
        ("a-name-far-too-long", None, "1 to 15 bytes"),
        ("a/b", None, "not a valid interface name"),
    ];
    for (tap, mac, expected) in cases {
        let err = Net::new(NetConfig {
            tap: tap.into(),
            mac,
        })
        .err()
        .expect("refused");

        let msg = err.to_string();
        assert!(msg.contains(expected), "{tap:?} {mac:?}: {msg}");
        assert_eq!(msg.lines().count(), 1);
    }
}

/// Why this process may not create taps (it needs root and /dev/net/tun), if it may not; the tests
/// below skip then.
fn taps_unavailable() -> Option<String> {
    let name = format!("vmctlp{}", std::process::id() % 100_000);
    Tap::open(&name)
        .err()
        .map(|e| format!("cannot create taps here ({e})"))
}

#[test]
fn a_tap_vmctl_creates_is_up_and_gone_when_the_device_is_dropped() {
    test_skip::skip_if!(taps_unavailable());
    let name = format!("vmctlc{}", std::process::id() % 100_000);
    let exists = |n: &str| {
        let c = std::ffi::CString::new(n).unwrap();
        // SAFETY: `c` is NUL-terminated and lives through the call.
        unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
    };

    let net = Net::new(NetConfig {
        tap: name.clone(),
        mac: None,
    })
    .unwrap();
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap();
    let present = exists(&name);
    let created = net.tap_created();
    drop(net);

    assert!(present && created);
    assert_ne!(
        u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap() & 1,
        0
    );
    assert!(!exists(&name), "the tap outlived the device");
}

#[test]
fn attaching_to_something_that_is_not_a_tap_says_so() {
    test_skip::skip_if!(taps_unavailable());

    let err = Net::new(NetConfig {
        tap: "lo".into(),
        mac: None,
    })
    .err()
    .expect("lo is not a tap");

    assert!(err.to_string().contains("lo"), "{err}");
    assert!(err.to_string().contains("not a tap"), "{err}");
}

#[test]
fn activation_needs_both_queues() {
    let (tap, _peer) = Tap::socket_pair();
    let mut net = Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap();
    let mem = memory();
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));

    let r = net.activate(QueueContext {
        mem,
        queues: vec![DriverQueue::new(RXQ_BASE, 16).queue(false)],
        interrupt: irq,
        acked_features: VIRTIO_F_VERSION_1,
    });

    assert!(r.is_err());
}

// ---------------------------------------------------------------------------------------------
// Transmit
// ---------------------------------------------------------------------------------------------

#[test]
fn a_frame_is_sent_to_the_tap_with_its_header_and_returned_as_used() {
    let mut h = harness(ALL, 16);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(1500, 1));
    let head = h.queue_tx(DATA, &data);

    h.net.tx_pass();

    assert_eq!(recv_peer(&h.peer).unwrap(), data);
    assert_eq!(h.txq.take_used(&h.mem), vec![(head, 0)]);
    assert!(h.interrupted());
    assert_eq!(h.net.stats().tx_frames, 1);
    assert_eq!(h.net.stats().tx_bytes, 1500);
}

#[test]
fn a_frame_in_many_pieces_and_across_memory_regions_is_sent_whole() {
    let mut h = harness(ALL, 16);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(3000, 2));
    // Header split in two; the payload straddles the boundary between the memory regions.
    let boundary = 8 << 20;
    h.mem.write_slice(&data[..5], GuestAddress(DATA)).unwrap();
    h.mem
        .write_slice(&data[5..12], GuestAddress(DATA + 100))
        .unwrap();
    h.mem
        .write_slice(&data[12..], GuestAddress(boundary - 1000))
        .unwrap();
    h.txq.add(
        &h.mem,
        &[
            (DATA, 5, 0),
            (DATA + 100, 7, 0),
            (DATA + 200, 0, 0),
            (boundary - 1000, 3000, 0),
        ],
    );

    h.net.tx_pass();

    assert_eq!(recv_peer(&h.peer).unwrap(), data);
}

#[test]
fn hostile_tx_chains_are_dropped_and_the_device_carries_on() {
    let mut h = harness(ALL, 32);
    let ok_hdr = hdr(0, 0, 0);
    h.mem.write_slice(&ok_hdr, GuestAddress(DATA)).unwrap();
    let bad: Vec<Vec<(u64, u32, u16)>> = vec![
        // Device-writable where the device must read.
        vec![(DATA, 100, F_WRITE)],
        vec![(DATA, 12, 0), (DATA + 12, 100, F_WRITE)],
        // Outside guest memory, or wrapping around the address space.
        vec![(MEM_SIZE - 10, 100, 0)],
        vec![(u64::MAX - 5, 100, 0)],
        vec![(DATA, 12, 0), (0x1_0000_0000, 100, 0)],
        // Zero length, truncated header.
        vec![(DATA, 0, 0)],
        vec![(DATA, 5, 0)],
        // Huge: longer than any frame, or than guest memory.
        vec![(DATA, (MAX_BUFFER + 1) as u32, 0)],
        vec![(DATA, u32::MAX, 0)],
    ];
    let mut heads = Vec::new();
    for chain in &bad {
        heads.push(h.txq.add(&h.mem, chain));
    }
    let mut good = ok_hdr.to_vec();
    good.extend(frame(64, 3));
    heads.push(h.queue_tx(DATA + 0x1000, &good));

    h.net.tx_pass();

    assert_eq!(recv_peer(&h.peer).unwrap(), good);
    assert!(recv_peer(&h.peer).is_none(), "a bad chain reached the tap");
    let used: Vec<u16> = h.txq.take_used(&h.mem).iter().map(|u| u.0).collect();
    assert_eq!(used, heads);
    assert_eq!(h.net.stats().tx_dropped, bad.len() as u64);
    assert!(!h.irq.needs_reset());
}

#[test]
fn a_descriptor_loop_is_refused() {
    let mut h = harness(ALL, 16);
    let ok_hdr = hdr(0, 0, 0);
    h.mem.write_slice(&ok_hdr, GuestAddress(DATA)).unwrap();
    // 0 -> 1 -> 0 -> ...
    h.txq.write_desc(&h.mem, 0, DATA, 12, F_NEXT, 1);
    h.txq.write_desc(&h.mem, 1, DATA + 12, 50, F_NEXT, 0);
    h.txq.next_desc = 2;
    h.txq.publish(&h.mem, 0);
    // A next index beyond the queue.
    h.txq.write_desc(&h.mem, 2, DATA, 12, F_NEXT, 999);
    h.txq.next_desc = 3;
    h.txq.publish(&h.mem, 2);

    h.net.tx_pass();

    assert!(recv_peer(&h.peer).is_none());
    assert_eq!(h.txq.take_used(&h.mem), vec![(0, 0), (2, 0)]);
    assert_eq!(h.net.stats().bad_chains, 2);
    assert!(!h.irq.needs_reset());
}

#[test]
fn indirect_tables_work_and_oversized_ones_are_refused() {
    let mut h = harness(ALL | crate::virtio::VIRTIO_RING_F_INDIRECT_DESC, 16);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(200, 4));
    h.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    // A good table: header and payload.
    let table = 0x80_0000 - 0x1000;
    let mut raw = Vec::new();
    for (i, (addr, len, flags)) in [(DATA, 12u32, F_NEXT), (DATA + 12, 200, 0)]
        .iter()
        .enumerate()
    {
        raw.extend_from_slice(&addr.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&(i as u16 + 1).to_le_bytes());
    }
    h.mem.write_slice(&raw, GuestAddress(table)).unwrap();
    h.txq.add(&h.mem, &[(table, 32, F_INDIRECT)]);
    // A table of 2000 one-byte descriptors: more pieces than one writev takes.
    let big = 0x40_0000;
    let mut raw = Vec::new();
    for i in 0..2000u16 {
        let flags = if i == 1999 { 0 } else { F_NEXT };
        raw.extend_from_slice(&(DATA + u64::from(i)).to_le_bytes());
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&(i + 1).to_le_bytes());
    }
    h.mem.write_slice(&raw, GuestAddress(big)).unwrap();
    h.txq.add(&h.mem, &[(big, 2000 * 16, F_INDIRECT)]);
    // A table whose length is not a multiple of 16, and one outside memory.
    h.txq.add(&h.mem, &[(table, 20, F_INDIRECT)]);
    h.txq.add(&h.mem, &[(MEM_SIZE + 0x1000, 32, F_INDIRECT)]);

    h.net.tx_pass();

    assert_eq!(recv_peer(&h.peer).unwrap(), data);
    assert!(recv_peer(&h.peer).is_none());
    assert_eq!(h.txq.take_used(&h.mem).len(), 4);
    assert_eq!(h.net.stats().tx_dropped, 3);
    assert!(!h.irq.needs_reset());
}

#[test]
fn headers_asking_for_offloads_not_negotiated_are_dropped() {
    let acked = VIRTIO_F_VERSION_1 | CSUM | HOST_TSO4;

    // Accepted.
    assert!(header_ok(&hdr(0, 0, 0), acked));
    assert!(header_ok(&hdr(1, 0, 0), acked));
    assert!(header_ok(&hdr(1, 1, 1448), acked));
    // TSO6 and UFO not negotiated; ECN never offered; unknown type; gso without a size.
    assert!(!header_ok(&hdr(1, 4, 1448), acked));
    assert!(!header_ok(&hdr(1, 3, 1448), acked));
    assert!(!header_ok(&hdr(1, 0x81, 1448), acked));
    assert!(!header_ok(&hdr(1, 7, 1448), acked));
    assert!(!header_ok(&hdr(1, 1, 0), acked));
    // Unknown flags; checksum offload without CSUM.
    assert!(!header_ok(&hdr(2, 0, 0), acked));
    assert!(!header_ok(&hdr(0x80, 0, 0), acked));
    assert!(!header_ok(&hdr(1, 0, 0), VIRTIO_F_VERSION_1));
}

#[test]
fn a_bad_header_drops_that_frame_only() {
    let mut h = harness(ALL, 16);
    let mut bad = hdr(1, 4, 1448).to_vec(); // TSO6, not negotiated
    bad.extend(frame(100, 5));
    h.queue_tx(DATA, &bad);
    let mut good = hdr(0, 0, 0).to_vec();
    good.extend(frame(100, 6));
    h.queue_tx(DATA + 0x1000, &good);

    h.net.tx_pass();

    assert_eq!(recv_peer(&h.peer).unwrap(), good);
    assert!(recv_peer(&h.peer).is_none());
    assert_eq!(h.txq.take_used(&h.mem).len(), 2);
}

#[test]
fn an_avail_index_beyond_the_queue_needs_a_reset_not_a_crash() {
    let mut h = harness(ALL, 16);
    h.mem
        .write_obj(100u16, GuestAddress(h.txq.avail + 2))
        .unwrap();

    h.net.tx_pass();
    h.net.tx_pass();
    h.net.rx_pass();

    assert!(h.irq.needs_reset());
    assert!(recv_peer(&h.peer).is_none());
}

#[test]
fn an_avail_head_beyond_the_queue_needs_a_reset_not_a_crash() {
    let mut h = harness(ALL, 16);
    h.txq.publish(&h.mem, 999);

    h.net.tx_pass();

    assert!(h.irq.needs_reset());
    assert_eq!(h.txq.take_used(&h.mem), vec![]);
}

#[test]
fn rings_outside_memory_need_a_reset_not_a_crash() {
    let (tap, _peer) = Tap::socket_pair();
    let mut net = Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap();
    let mem = memory();
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    // The transport checks rings when the driver sets them up; a device handed a queue anyway
    // must still not crash.
    let far = DriverQueue::new(MEM_SIZE + 0x10_0000, 16);
    net.activate(QueueContext {
        mem,
        queues: vec![far.queue(false), far.queue(false)],
        interrupt: irq.clone(),
        acked_features: ALL,
    })
    .unwrap();

    net.tx_pass();
    net.rx_pass();

    assert!(irq.needs_reset());
}

#[test]
fn tx_with_event_idx_interrupts_only_when_the_driver_asked() {
    let mut h = harness(ALL | VIRTIO_RING_F_EVENT_IDX, 16);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(60, 7));
    // used_event = 5: no interrupt for the first used buffer.
    h.txq.set_used_event(&h.mem, 5);
    h.queue_tx(DATA, &data);

    h.net.tx_pass();
    let first = h.interrupted();
    h.txq.set_used_event(&h.mem, 1);
    h.queue_tx(DATA, &data);
    h.net.tx_pass();
    let second = h.interrupted();

    assert!(!first);
    assert!(second);
    assert_eq!(h.txq.take_used(&h.mem).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Receive
// ---------------------------------------------------------------------------------------------

#[test]
fn a_frame_lands_in_mergeable_buffers_with_num_buffers_set() {
    let mut h = harness(ALL, 64);
    h.give_rx(40, 2048);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(5000, 8));
    send_peer(&h.peer, &data);

    h.net.rx_pass();

    let used = h.rxq.take_used(&h.mem);
    assert_eq!(used, vec![(0, 2048), (1, 2048), (2, 5012 - 4096)]);
    let got = h.read(DATA, 5012);
    assert_eq!(&got[..10], &data[..10]);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3);
    assert_eq!(&got[12..], &data[12..]);
    assert!(h.interrupted());
    assert_eq!(h.net.stats().rx_frames, 1);
}

#[test]
fn frames_share_the_buffer_pool_in_order() {
    let mut h = harness(ALL, 64);
    h.give_rx(40, 2048);
    for i in 0..3 {
        let mut data = hdr(0, 0, 0).to_vec();
        data.extend(frame(100 + i, i as u8));
        send_peer(&h.peer, &data);
    }

    h.net.rx_pass();

    assert_eq!(h.rxq.take_used(&h.mem), vec![(0, 112), (1, 113), (2, 114)]);
    assert_eq!(h.read(DATA + 2048 + 10, 2), vec![1, 0]);
}

#[test]
fn without_enough_buffers_the_frame_waits_and_the_tap_is_not_read() {
    let mut h = harness(ALL, 64);
    // 10 x 2048 is less than a largest frame needs.
    h.give_rx(10, 2048);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(300, 9));
    send_peer(&h.peer, &data);

    h.net.rx_pass();
    let before = h.rxq.take_used(&h.mem);
    let wants_tap = h.net.rx_wants_tap;
    // The driver adds more: the frame arrives.
    for i in 10..40u64 {
        h.rxq.add(&h.mem, &[(DATA + i * 2048, 2048, F_WRITE)]);
    }
    h.net.rx_pass();

    assert!(before.is_empty());
    assert!(!wants_tap);
    assert_eq!(h.rxq.take_used(&h.mem), vec![(0, 312)]);
}

#[test]
fn a_queue_smaller_than_a_largest_frame_still_receives() {
    // Every buffer the driver can give is in hand: a frame is read into what there is.
    let mut h = harness(ALL, 4);
    h.give_rx(4, 2048);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(100, 10));
    send_peer(&h.peer, &data);

    h.net.rx_pass();

    assert_eq!(h.rxq.take_used(&h.mem), vec![(0, 112)]);
}

#[test]
fn without_mergeable_buffers_a_frame_uses_one_chain() {
    let mut h = harness(VIRTIO_F_VERSION_1 | MAC | STATUS, 16);
    // Header and data in separate descriptors, as Linux's small buffers.
    h.rxq.add(
        &h.mem,
        &[(DATA, 12, F_WRITE), (DATA + 0x100, 1514, F_WRITE)],
    );
    h.rxq.add(
        &h.mem,
        &[(DATA + 0x1000, 12, F_WRITE), (DATA + 0x1100, 1514, F_WRITE)],
    );
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(1000, 11));
    send_peer(&h.peer, &data);
    send_peer(&h.peer, &data);

    h.net.rx_pass();

    assert_eq!(h.rxq.take_used(&h.mem), vec![(0, 1012), (2, 1012)]);
    assert_eq!(h.read(DATA + 10, 2), vec![1, 0]);
    assert_eq!(h.read(DATA + 0x100, 1000), data[12..].to_vec());
}

#[test]
fn hostile_rx_chains_are_returned_empty_and_good_ones_still_used() {
    let mut h = harness(ALL, 64);
    let bad: Vec<Vec<(u64, u32, u16)>> = vec![
        // Device-readable where the device must write.
        vec![(DATA, 2048, 0)],
        vec![(DATA, 12, F_WRITE), (DATA + 12, 2048, 0)],
        // Shorter than a header, zero length.
        vec![(DATA, 11, F_WRITE)],
        vec![(DATA, 0, F_WRITE)],
        // Outside memory.
        vec![(MEM_SIZE - 4, 2048, F_WRITE)],
        vec![(u64::MAX - 1, 2048, F_WRITE)],
    ];
    for chain in &bad {
        h.rxq.add(&h.mem, chain);
    }
    // A huge but valid buffer counts only for what a frame can use.
    h.rxq.add(&h.mem, &[(DATA + 0x10_0000, 4 << 20, F_WRITE)]);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(700, 12));
    send_peer(&h.peer, &data);

    h.net.rx_pass();

    let used = h.rxq.take_used(&h.mem);
    assert_eq!(used.len(), bad.len() + 1);
    assert!(used[..bad.len()].iter().all(|&(_, len)| len == 0));
    assert_eq!(used[bad.len()].1, 712);
    assert_eq!(h.net.stats().bad_chains, bad.len() as u64);
    assert!(!h.irq.needs_reset());
}

#[test]
fn a_backend_that_fails_reads_is_no_longer_watched() {
    let mut h = harness(ALL, 64);
    h.give_rx(40, 2048);
    h.net.rx_pass();
    let watched_before = h.net.rx_wants_tap;
    // The other end goes away: reads now see end-of-file, for ever.
    let Harness { peer, .. } = &mut h;
    let closed = std::mem::replace(peer, std::fs::File::open("/dev/null").unwrap().into());
    drop(closed);

    h.net.rx_pass();

    assert!(watched_before);
    assert!(!h.net.rx_wants_tap);
    assert!(h.rxq.take_used(&h.mem).is_empty());
    assert!(!h.irq.needs_reset());
}

#[test]
fn a_deleted_tap_is_no_longer_watched() {
    test_skip::skip_if!(taps_unavailable());
    let name = format!("vmctld{}", std::process::id() % 100_000);
    let tap = Tap::open(&name).unwrap();
    let mut net = Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap();
    let mem = memory();
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let mut rxq = DriverQueue::new(RXQ_BASE, 64);
    let txq = DriverQueue::new(TXQ_BASE, 64);
    net.activate(QueueContext {
        mem: mem.clone(),
        queues: vec![rxq.queue(true), txq.queue(true)],
        interrupt: irq.clone(),
        acked_features: ALL | VIRTIO_RING_F_EVENT_IDX,
    })
    .unwrap();
    for i in 0..40u64 {
        rxq.add(&mem, &[(DATA + i * 2048, 2048, F_WRITE)]);
    }
    net.rx_pass();
    let watched_before = net.rx_wants_tap;
    let deleted = std::process::Command::new("ip")
        .args(["link", "del", &name])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    test_skip::skip_if!((!deleted).then_some("cannot run `ip link del`"));

    net.rx_pass();

    assert!(watched_before);
    assert!(!net.rx_wants_tap);
    assert!(!irq.needs_reset());
}

#[test]
fn a_flood_of_bad_rx_chains_is_served_a_queue_at_a_time_and_receive_resumes() {
    let mut h = harness(ALL, 16);
    for _ in 0..16 {
        h.rxq.add(&h.mem, &[(DATA, 2048, 0)]); // device-readable: refused
    }
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(90, 17));
    send_peer(&h.peer, &data);

    h.net.rx_pass();
    let refused = h.rxq.take_used(&h.mem);
    let still_watching = h.net.rx_wants_tap;
    h.give_rx(16, 4096);
    h.net.rx_pass();

    assert_eq!(refused.len(), 16);
    assert!(refused.iter().all(|&(_, len)| len == 0));
    assert!(still_watching);
    assert_eq!(h.rxq.take_used(&h.mem).first().map(|u| u.1), Some(102));
}

#[test]
fn rx_with_event_idx_interrupts_only_when_the_driver_asked() {
    let mut h = harness(ALL | VIRTIO_RING_F_EVENT_IDX, 64);
    h.give_rx(40, 2048);
    h.rxq.set_used_event(&h.mem, 1);
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(50, 13));
    send_peer(&h.peer, &data);

    h.net.rx_pass();
    let first = h.interrupted();
    send_peer(&h.peer, &data);
    h.net.rx_pass();
    let second = h.interrupted();

    assert!(!first);
    assert!(second);
}

#[test]
fn reset_stops_the_device_and_a_later_activation_starts_afresh() {
    let mut h = harness(ALL, 16);
    h.give_rx(16, 4096);
    h.net.reset();
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(50, 14));
    send_peer(&h.peer, &data);

    h.net.rx_pass();
    h.net.tx_pass();
    let used_after_reset = h.rxq.take_used(&h.mem);

    assert!(used_after_reset.is_empty());
    assert!(!h.net.rx_wants_tap);
}

// ---------------------------------------------------------------------------------------------
// Through the event loop
// ---------------------------------------------------------------------------------------------

#[test]
fn the_event_loop_watches_the_tap_only_while_the_guest_has_buffers() {
    let mem = memory();
    let (tap, peer) = Tap::socket_pair();
    let net = Arc::new(Mutex::new(Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap()));
    let mut events = EventManager::<Arc<Mutex<Net>>>::new().unwrap();
    events.add_subscriber(net.clone());
    // Notifications before activation are drained and ignored.
    net.lock().unwrap().queue_events()[RX].write(1).unwrap();
    net.lock().unwrap().queue_events()[TX].write(1).unwrap();
    events.run_with_timeout(0).unwrap();
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let mut rxq = DriverQueue::new(RXQ_BASE, 64);
    let txq = DriverQueue::new(TXQ_BASE, 64);
    net.lock()
        .unwrap()
        .activate(QueueContext {
            mem: mem.clone(),
            queues: vec![rxq.queue(false), txq.queue(false)],
            interrupt: irq.clone(),
            acked_features: ALL,
        })
        .unwrap();

    // Active without buffers: the tap is not watched.
    events.run_with_timeout(0).unwrap();
    let watched_without_buffers = net.lock().unwrap().tap_watched;
    // The driver adds buffers and notifies: now it is, and a frame arrives through the loop.
    for i in 0..40u64 {
        rxq.add(&mem, &[(DATA + i * 2048, 2048, F_WRITE)]);
    }
    net.lock().unwrap().queue_events()[RX].write(1).unwrap();
    events.run_with_timeout(0).unwrap();
    let watched_with_buffers = net.lock().unwrap().tap_watched;
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(80, 15));
    send_peer(&peer, &data);
    events.run_with_timeout(100).unwrap();
    let used = rxq.take_used(&mem);
    // A reset: the tap is dropped from the loop.
    net.lock().unwrap().reset();
    events.run_with_timeout(0).unwrap();
    let watched_after_reset = net.lock().unwrap().tap_watched;

    assert!(!watched_without_buffers);
    assert!(watched_with_buffers);
    assert_eq!(used, vec![(0, 92)]);
    assert!(!watched_after_reset);
}

#[test]
fn a_tx_flood_is_served_in_batches_through_the_event_loop() {
    let mem = memory();
    let (tap, peer) = Tap::socket_pair();
    let net = Arc::new(Mutex::new(Net::with_tap(tap, [2, 0, 0, 0, 0, 1]).unwrap()));
    let mut events = EventManager::<Arc<Mutex<Net>>>::new().unwrap();
    events.add_subscriber(net.clone());
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let rxq = DriverQueue::new(RXQ_BASE, 512);
    let mut txq = DriverQueue::new(TXQ_BASE, 512);
    net.lock()
        .unwrap()
        .activate(QueueContext {
            mem: mem.clone(),
            queues: vec![rxq.queue(false), txq.queue(false)],
            interrupt: irq,
            acked_features: ALL,
        })
        .unwrap();
    events.run_with_timeout(0).unwrap();
    let mut data = hdr(0, 0, 0).to_vec();
    data.extend(frame(60, 16));
    mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    for _ in 0..400 {
        txq.add(&mem, &[(DATA, data.len() as u32, 0)]);
    }
    net.lock().unwrap().queue_events()[TX].write(1).unwrap();

    events.run_with_timeout(0).unwrap();
    let first_pass = txq.take_used(&mem).len();
    for _ in 0..5 {
        events.run_with_timeout(0).unwrap();
    }
    let rest = txq.take_used(&mem).len();
    let mut received = 0;
    while recv_peer(&peer).is_some() {
        received += 1;
    }
    let stats = net.lock().unwrap().stats();

    assert_eq!(first_pass, super::tx::TX_BATCH);
    assert_eq!(first_pass + rest, 400);
    // The socket standing in for the tap may refuse some when full: those are dropped.
    assert_eq!(received + stats.tx_dropped, 400);
    assert_eq!(stats.tx_frames, received);
}
