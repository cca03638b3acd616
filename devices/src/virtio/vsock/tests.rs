//! The device driven the way the VMM drives it (an event manager, queue notifications through the
//! queue eventfds) by a simulated guest driver that writes descriptors into guest memory, and by
//! real Unix sockets on the host side. Crafted queues show that bad guest input fails only the
//! packet or connection concerned, and the device carries on.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::connection::CONN_BUF_ALLOC;
use super::device::{QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use super::packet::*;
use super::{Vsock, VsockConfig};
use crate::virtio::test_queue::{DriverQueue, F_INDIRECT, F_NEXT, F_WRITE};
use crate::virtio::{GuestMemoryMmap, Interrupt, QueueContext, VirtioDevice, VIRTIO_F_VERSION_1};

const CID: u64 = 3;
const QSIZE: u16 = 64;
const MEM_SIZE: u64 = 16 << 20;

struct Harness {
    dir: PathBuf,
    uds: PathBuf,
    mem: GuestMemoryMmap,
    dev: Arc<Mutex<Vsock>>,
    em: EventManager<Arc<Mutex<Vsock>>>,
    interrupt: Arc<Interrupt>,
    rx: DriverQueue,
    tx: DriverQueue,
    /// RX buffers given to the device: head -> guest address.
    rx_bufs: HashMap<u16, u64>,
    next_buf: u64,
    /// The size of each queue at the next `activate`.
    qsize: u16,
}

/// A packet the device put into an RX buffer.
#[derive(Debug)]
struct RxPkt {
    hdr: Header,
    data: Vec<u8>,
}

fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vmctl-vsock-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Harness {
    fn new(tag: &str) -> Harness {
        let dir = temp_dir(tag);
        let uds = dir.join("v.sock");
        let dev = Vsock::new(VsockConfig {
            guest_cid: CID,
            uds_path: uds.clone(),
        })
        .unwrap();
        let dev = Arc::new(Mutex::new(dev));
        let mut em = EventManager::<Arc<Mutex<Vsock>>>::new().unwrap();
        em.add_subscriber(dev.clone());
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
        let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        Harness {
            dir,
            uds,
            mem,
            dev,
            em,
            interrupt,
            rx: DriverQueue::new(0x1000, QSIZE),
            tx: DriverQueue::new(0x4000, QSIZE),
            rx_bufs: HashMap::new(),
            next_buf: 0x10_0000,
            qsize: QSIZE,
        }
    }

    fn active(tag: &str) -> Harness {
        let mut h = Harness::new(tag);
        h.activate(false);
        h
    }

    fn activate(&mut self, event_idx: bool) {
        self.rx = DriverQueue::new(0x1000, self.qsize);
        self.tx = DriverQueue::new(0x4000, self.qsize);
        let ev = DriverQueue::new(0x7000, self.qsize);
        let ctx = QueueContext {
            mem: self.mem.clone(),
            queues: vec![
                self.rx.queue(event_idx),
                self.tx.queue(event_idx),
                ev.queue(event_idx),
            ],
            interrupt: self.interrupt.clone(),
            acked_features: VIRTIO_F_VERSION_1,
        };
        self.dev.lock().unwrap().activate(ctx).unwrap();
        self.pump();
    }

    /// Runs the event loop until it has nothing left to do.
    fn pump(&mut self) {
        for _ in 0..200 {
            if self.em.run_with_timeout(20).unwrap() == 0 {
                return;
            }
        }
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let a = self.next_buf;
        self.next_buf += len.next_multiple_of(0x1000);
        assert!(self.next_buf < MEM_SIZE, "test ran out of guest memory");
        a
    }

    fn kick(&mut self, queue: usize) {
        self.dev.lock().unwrap().queue_events()[queue]
            .write(1)
            .unwrap();
        self.pump();
    }

    /// Gives the device `n` RX buffers of `size` bytes.
    fn give_rx(&mut self, n: usize, size: u32) {
        for _ in 0..n {
            let a = self.alloc(u64::from(size));
            let head = self.rx.add(&self.mem, &[(a, size, F_WRITE)]);
            self.rx_bufs.insert(head, a);
        }
        self.kick(RX_QUEUE);
    }

    /// Packets the device delivered since the last call.
    fn take_rx(&mut self) -> Vec<RxPkt> {
        self.pump();
        let used = self.rx.take_used(&self.mem);
        used.into_iter()
            .filter(|&(_, len)| len > 0)
            .map(|(head, len)| {
                let a = self.rx_bufs[&head];
                let mut b = [0u8; HDR_LEN];
                self.mem.read_slice(&mut b, GuestAddress(a)).unwrap();
                let hdr = Header::from_bytes(&b);
                assert_eq!(
                    hdr.len as usize + HDR_LEN,
                    len as usize,
                    "used length matches {hdr:?}"
                );
                let mut data = vec![0u8; hdr.len as usize];
                self.mem
                    .read_slice(&mut data, GuestAddress(a + HDR_LEN as u64))
                    .unwrap();
                RxPkt { hdr, data }
            })
            .collect()
    }

    fn hdr(&self, op: u16, src_port: u32, dst_port: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 256 * 1024,
            fwd_cnt: 0,
        }
    }

    /// Queues a guest packet (header and payload in two descriptors) without kicking.
    fn queue_tx(&mut self, hdr: Header, data: &[u8]) -> u16 {
        let h = self.alloc(HDR_LEN as u64);
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(h))
            .unwrap();
        if data.is_empty() {
            return self.tx.add(&self.mem, &[(h, HDR_LEN as u32, 0)]);
        }
        let d = self.alloc(data.len() as u64);
        self.mem.write_slice(data, GuestAddress(d)).unwrap();
        self.tx.add(
            &self.mem,
            &[(h, HDR_LEN as u32, 0), (d, data.len() as u32, 0)],
        )
    }

    fn send(&mut self, hdr: Header, data: &[u8]) {
        let mut hdr = hdr;
        hdr.len = data.len() as u32;
        self.queue_tx(hdr, data);
        self.kick(TX_QUEUE);
    }

    /// Guest connects from `src_port` to host port `port`; returns the accepted host stream.
    fn guest_connect(&mut self, listener: &UnixListener, src_port: u32, port: u32) -> UnixStream {
        self.send(self.hdr(OP_REQUEST, src_port, port), &[]);
        let pkts = self.take_rx();
        assert_eq!(pkts.len(), 1, "{pkts:?}");
        assert_eq!(pkts[0].hdr.op, OP_RESPONSE);
        assert_eq!(pkts[0].hdr.src_port, port);
        assert_eq!(pkts[0].hdr.dst_port, src_port);
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Host connects through the hybrid socket to guest port `port`, and the guest accepts.
    /// Returns the host stream (past the `OK` line) and the host port the guest sees.
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let mut s = UnixStream::connect(&self.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
        self.pump();
        let pkts = self.take_rx();
        assert_eq!(pkts.len(), 1, "{pkts:?}");
        let req = pkts[0].hdr;
        assert_eq!(req.op, OP_REQUEST);
        assert_eq!(
            (req.src_cid, req.dst_cid, req.dst_port),
            (HOST_CID, CID, port)
        );
        assert!(req.src_port >= 1 << 30);
        self.send(self.hdr(OP_RESPONSE, port, req.src_port), &[]);
        let line = read_line(&mut s);
        assert_eq!(line, format!("OK {}\n", req.src_port));
        (s, req.src_port)
    }

    fn listen(&self, port: u32) -> UnixListener {
        UnixListener::bind(format!("{}_{port}", self.uds.display())).unwrap()
    }

    fn live(&self) -> usize {
        self.dev.lock().unwrap().muxer.live()
    }

    fn tx_used(&mut self) -> Vec<(u16, u32)> {
        self.tx.take_used(&self.mem)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8(line).unwrap()
}

fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).unwrap();
    v
}

/// Asserts the host stream reads EOF or a reset, not data and not a timeout.
fn assert_closed(s: &mut UnixStream) {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF, got {other:?}"),
    }
}

#[test]
fn identity_features_and_config_space() {
    let h = Harness::new("identity");
    let d = h.dev.lock().unwrap();
    assert_eq!(d.device_type(), 19);
    assert_eq!(d.queue_max_sizes().len(), 3);
    assert_eq!(d.queue_events().len(), 3);
    assert_ne!(d.features() & crate::virtio::VIRTIO_RING_F_EVENT_IDX, 0);
    let mut cfg = [0u8; 8];
    d.read_config(0, &mut cfg);
    assert_eq!(u64::from_le_bytes(cfg), CID);
    let mut hi = [0xffu8; 4];
    d.read_config(4, &mut hi);
    assert_eq!(hi, [0; 4]);
    d.read_config(u64::MAX, &mut hi);
    assert_eq!(hi, [0; 4]);
}

#[test]
fn construction_errors_name_the_problem() {
    let dir = temp_dir("errors");
    let missing = dir.join("no/such/dir/v.sock");
    let err = Vsock::new(VsockConfig {
        guest_cid: CID,
        uds_path: missing.clone(),
    })
    .err()
    .expect("a missing directory is an error");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    for cid in [0, 1, 2, u64::from(u32::MAX)] {
        let err = Vsock::new(VsockConfig {
            guest_cid: cid,
            uds_path: dir.join("c.sock"),
        })
        .err()
        .expect("reserved cid");
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn socket_file_is_removed_when_the_device_goes_away() {
    let mut h = Harness::new("drop");
    let uds = h.uds.clone();
    assert!(uds.exists());
    // What the VMM does at the end: the event manager and the transport let go of the device.
    let placeholder = Harness::new("drop-placeholder");
    let em = std::mem::replace(&mut h.em, EventManager::new().unwrap());
    let dev = std::mem::replace(&mut h.dev, placeholder.dev.clone());
    drop(em);
    drop(dev);
    assert!(!uds.exists());
}

#[test]
fn guest_to_host_stream_both_ways() {
    let mut h = Harness::active("g2h");
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    h.send(h.hdr(OP_RW, 5000, 1234), b"hello from the guest");
    assert_eq!(read_n(&mut s, 20), b"hello from the guest");
    s.write_all(b"hello from the host").unwrap();
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    let p = &pkts[0];
    assert_eq!(p.hdr.op, OP_RW);
    assert_eq!((p.hdr.src_cid, p.hdr.dst_cid), (HOST_CID, CID));
    assert_eq!((p.hdr.src_port, p.hdr.dst_port), (1234, 5000));
    assert_eq!(p.hdr.buf_alloc, CONN_BUF_ALLOC);
    assert_eq!(p.data, b"hello from the host");
    // Every TX chain came back.
    assert_eq!(h.tx_used().len(), 2);
}

#[test]
fn guest_connect_to_nobody_gets_rst() {
    let mut h = Harness::active("refused");
    h.give_rx(4, 4096);
    h.send(h.hdr(OP_REQUEST, 5000, 4321), &[]);
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].hdr.op, OP_RST);
    assert_eq!((pkts[0].hdr.src_port, pkts[0].hdr.dst_port), (4321, 5000));
    assert_eq!(h.live(), 0);
}

#[test]
fn host_to_guest_handshake_and_data() {
    let mut h = Harness::active("h2g");
    h.give_rx(8, 4096);
    let (mut s, hp) = h.host_connect(52);
    s.write_all(b"ping").unwrap();
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!(
        (pkts[0].hdr.op, pkts[0].hdr.src_port, pkts[0].hdr.dst_port),
        (OP_RW, hp, 52)
    );
    assert_eq!(pkts[0].data, b"ping");
    h.send(h.hdr(OP_RW, 52, hp), b"pong");
    assert_eq!(read_n(&mut s, 4), b"pong");
}

#[test]
fn host_data_sent_with_the_connect_line_is_kept() {
    let mut h = Harness::active("h2g-early");
    h.give_rx(8, 4096);
    let mut s = UnixStream::connect(&h.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"CONNECT 52\nearly bytes").unwrap();
    h.pump();
    let req = h.take_rx().pop().unwrap().hdr;
    assert_eq!(req.op, OP_REQUEST);
    h.send(h.hdr(OP_RESPONSE, 52, req.src_port), &[]);
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    assert_eq!(pkts[0].data, b"early bytes");
    assert_eq!(read_line(&mut s), format!("OK {}\n", req.src_port));
}

#[test]
fn host_connect_to_unlistened_port_is_closed() {
    let mut h = Harness::active("h2g-refused");
    h.give_rx(4, 4096);
    let mut s = UnixStream::connect(&h.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"CONNECT 99\n").unwrap();
    h.pump();
    let req = h.take_rx().pop().unwrap().hdr;
    // The guest has nobody on port 99.
    h.send(h.hdr(OP_RST, 99, req.src_port), &[]);
    assert_closed(&mut s);
    assert_eq!(h.live(), 0);
}

#[test]
fn bad_handshakes_are_closed_and_do_not_reach_the_guest() {
    let mut h = Harness::active("bad-handshake");
    h.give_rx(4, 4096);
    for line in [
        &b"CONNECT x\n"[..],
        b"HELLO\n",
        &[b'A'; 40][..],
        b"CONNECT 1 2\n",
    ] {
        let mut s = UnixStream::connect(&h.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(line).unwrap();
        h.pump();
        assert_closed(&mut s);
    }
    assert!(h.take_rx().is_empty());
    assert_eq!(h.live(), 0);
}

#[test]
fn never_sends_the_guest_more_than_its_credit() {
    let mut h = Harness::active("credit");
    let l = h.listen(1234);
    h.give_rx(16, 4096);
    let mut req = h.hdr(OP_REQUEST, 5000, 1234);
    req.buf_alloc = 1000;
    h.send(req, &[]);
    assert_eq!(h.take_rx()[0].hdr.op, OP_RESPONSE);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(&[7u8; 5000]).unwrap();
    let pkts = h.take_rx();
    let total: usize = pkts
        .iter()
        .filter(|p| p.hdr.op == OP_RW)
        .map(|p| p.data.len())
        .sum();
    assert_eq!(total, 1000, "{pkts:?}");
    // Out of credit with data waiting: one credit request.
    assert!(pkts.iter().any(|p| p.hdr.op == OP_CREDIT_REQUEST));
    // The guest frees 600 bytes.
    let mut upd = h.hdr(OP_CREDIT_UPDATE, 5000, 1234);
    upd.buf_alloc = 1000;
    upd.fwd_cnt = 600;
    h.send(upd, &[]);
    let more: usize = h.take_rx().iter().map(|p| p.data.len()).sum();
    assert_eq!(more, 600);
}

#[test]
fn large_host_writes_fill_many_buffers_in_order() {
    let mut h = Harness::active("bulk");
    let l = h.listen(1234);
    h.give_rx(QSIZE as usize, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || s.write_all(&data).unwrap())
    };
    let mut got = Vec::new();
    let mut fwd = 0u32;
    for _ in 0..200 {
        for p in h.take_rx() {
            assert_eq!(p.hdr.op, OP_RW);
            assert!(p.data.len() <= 4096 - HDR_LEN);
            fwd += p.data.len() as u32;
            got.extend_from_slice(&p.data);
        }
        if got.len() >= data.len() {
            break;
        }
        // The guest consumed it all: refill buffers and report credit.
        let mut upd = h.hdr(OP_CREDIT_UPDATE, 5000, 1234);
        upd.fwd_cnt = fwd;
        h.queue_tx(upd, &[]);
        h.give_rx(QSIZE as usize / 2, 4096);
        h.kick(TX_QUEUE);
    }
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes arrive in order");
    drop(s.write_all(b""));
}

#[test]
fn guest_sending_past_its_credit_is_reset() {
    let mut h = Harness::active("overrun");
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    // The host never reads: once the socket buffer is full the device buffers, up to the credit.
    let chunk = vec![1u8; MAX_PKT_PAYLOAD as usize];
    let mut reset = None;
    let base = h.next_buf;
    for i in 0..150 {
        h.send(h.hdr(OP_RW, 5000, 1234), &chunk);
        if h.live() == 0 {
            reset = Some(i);
            break;
        }
        // Reuse guest memory: the device has consumed the packet.
        h.next_buf = base;
    }
    assert!(reset.is_some(), "the overrun was reset");
    // The RST reaches the guest once it has buffers (credit updates used the first ones).
    h.next_buf = base;
    h.give_rx(QSIZE as usize / 2, 4096);
    let pkts = h.take_rx();
    assert!(
        pkts.iter()
            .any(|p| p.hdr.op == OP_RST && p.hdr.dst_port == 5000),
        "{pkts:?}"
    );
    // The host stream was closed after what fit was delivered.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert!(sink.len() <= 150 * chunk.len());
}

#[test]
fn guest_shutdown_is_answered_with_rst_and_host_sees_eof() {
    let mut h = Harness::active("guest-close");
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    h.send(h.hdr(OP_RW, 5000, 1234), b"last words");
    let mut shut = h.hdr(OP_SHUTDOWN, 5000, 1234);
    shut.flags = SHUTDOWN_BOTH;
    h.send(shut, &[]);
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].hdr.op, OP_RST);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last words");
    assert_eq!(h.live(), 0);
}

#[test]
fn guest_half_close_reaches_the_host_as_eof_and_the_reply_still_flows() {
    let mut h = Harness::active("guest-half");
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    h.send(h.hdr(OP_RW, 5000, 1234), b"request");
    let mut shut = h.hdr(OP_SHUTDOWN, 5000, 1234);
    shut.flags = SHUTDOWN_SEND;
    h.send(shut, &[]);
    let mut req = Vec::new();
    s.read_to_end(&mut req).unwrap();
    assert_eq!(req, b"request");
    s.write_all(b"reply").unwrap();
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    assert_eq!(pkts[0].data, b"reply");
    // The guest sent SHUTDOWN(SEND) already: data after it is a protocol violation.
    h.send(h.hdr(OP_RW, 5000, 1234), b"more");
    assert_eq!(h.take_rx().pop().unwrap().hdr.op, OP_RST);
}

#[test]
fn host_close_sends_shutdown_and_the_guest_rst_ends_it() {
    let mut h = Harness::active("host-close");
    h.give_rx(8, 4096);
    let (mut s, hp) = h.host_connect(52);
    s.write_all(b"bye").unwrap();
    drop(s);
    let pkts = h.take_rx();
    let ops: Vec<u16> = pkts.iter().map(|p| p.hdr.op).collect();
    assert_eq!(ops, [OP_RW, OP_SHUTDOWN], "{pkts:?}");
    assert_eq!(pkts[1].hdr.flags, SHUTDOWN_BOTH);
    assert_eq!(h.live(), 1, "waiting for the guest's RST");
    h.send(h.hdr(OP_RST, 52, hp), &[]);
    assert_eq!(h.live(), 0);
}

#[test]
fn host_half_close_sends_shutdown_send_and_guest_data_still_flows() {
    let mut h = Harness::active("host-half");
    h.give_rx(8, 4096);
    let (mut s, hp) = h.host_connect(52);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    assert_eq!(
        (pkts[0].hdr.op, pkts[0].hdr.flags),
        (OP_SHUTDOWN, SHUTDOWN_SEND)
    );
    h.send(h.hdr(OP_RW, 52, hp), b"answer");
    assert_eq!(read_n(&mut s, 6), b"answer");
}

#[test]
fn sixteen_streams_each_way_at_once() {
    let mut h = Harness::active("many");
    let l = h.listen(1234);
    h.give_rx(QSIZE as usize, 4096);
    let mut guest_side = Vec::new();
    for i in 0..16u32 {
        guest_side.push(h.guest_connect(&l, 6000 + i, 1234));
    }
    let mut host_side = Vec::new();
    for i in 0..16u32 {
        let (s, hp) = h.host_connect(700 + i);
        host_side.push((s, hp, 700 + i));
    }
    for (i, s) in guest_side.iter_mut().enumerate() {
        s.write_all(format!("g{i}").as_bytes()).unwrap();
    }
    for (s, _, port) in host_side.iter_mut() {
        s.write_all(format!("h{port}").as_bytes()).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.extend(h.take_rx());
        if seen.len() >= 32 {
            break;
        }
        h.give_rx(32, 4096);
    }
    assert_eq!(seen.len(), 32, "{seen:?}");
    for (i, _) in guest_side.iter().enumerate() {
        let port = 6000 + i as u32;
        let p = seen.iter().find(|p| p.hdr.dst_port == port).unwrap();
        assert_eq!(p.data, format!("g{i}").as_bytes());
    }
    for (_, hp, port) in &host_side {
        let p = seen.iter().find(|p| p.hdr.src_port == *hp).unwrap();
        assert_eq!(p.data, format!("h{port}").as_bytes());
    }
    assert_eq!(h.live(), 32);
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let mut h = Harness::active("limit");
    h.dev.lock().unwrap().muxer.set_max_connections(4);
    let l = h.listen(1234);
    h.give_rx(16, 4096);
    let mut keep = Vec::new();
    for i in 0..4 {
        keep.push(h.guest_connect(&l, 7000 + i, 1234));
    }
    h.send(h.hdr(OP_REQUEST, 7100, 1234), &[]);
    assert_eq!(h.take_rx().pop().unwrap().hdr.op, OP_RST);
    // A host connection beyond the limit is closed at once.
    let mut s = UnixStream::connect(&h.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    h.pump();
    assert_closed(&mut s);
    assert_eq!(h.live(), 4);
}

#[test]
fn hostile_tx_chains_fail_alone_and_the_device_carries_on() {
    let mut h = Harness::active("hostile-tx");
    let l = h.listen(1234);
    h.give_rx(32, 4096);
    let good = h.hdr(OP_REQUEST, 5000, 1234);
    let hdr_at = |h: &mut Harness, hdr: Header| {
        let a = h.alloc(HDR_LEN as u64);
        h.mem.write_slice(&hdr.to_bytes(), GuestAddress(a)).unwrap();
        a
    };
    let mut queued = 0;
    // Header outside guest memory.
    h.tx.add(&h.mem, &[(MEM_SIZE + 0x1000, HDR_LEN as u32, 0)]);
    // Address that wraps around.
    h.tx.add(&h.mem, &[(u64::MAX - 8, HDR_LEN as u32, 0)]);
    // Zero-length descriptors only.
    h.tx.add(&h.mem, &[(0x20_0000, 0, 0), (0x20_0000, 0, 0)]);
    // Truncated header.
    let a = hdr_at(&mut h, good);
    h.tx.add(&h.mem, &[(a, 20, 0)]);
    // Device-writable where readable is needed.
    let a = hdr_at(&mut h, good);
    h.tx.add(&h.mem, &[(a, HDR_LEN as u32, F_WRITE)]);
    // Huge length.
    let a = hdr_at(&mut h, good);
    h.tx.add(&h.mem, &[(a, u32::MAX, 0)]);
    // An indirect table outside memory.
    h.tx.add(&h.mem, &[(MEM_SIZE * 2, 16 * 4, F_INDIRECT)]);
    queued += 7;
    // A descriptor that loops onto itself.
    let a = hdr_at(&mut h, good);
    let i = h.tx.next_desc;
    h.tx.write_desc(&h.mem, i, a, HDR_LEN as u32, F_NEXT, i);
    h.tx.next_desc = (i + 1) % QSIZE;
    h.tx.publish(&h.mem, i);
    queued += 1;
    // A next index out of the table.
    let a = hdr_at(&mut h, good);
    let i = h.tx.next_desc;
    h.tx.write_desc(&h.mem, i, a, HDR_LEN as u32, F_NEXT, 0xffff);
    h.tx.next_desc = (i + 1) % QSIZE;
    h.tx.publish(&h.mem, i);
    queued += 1;
    // Wrong source CID; wrong destination CID: dropped without an answer.
    h.queue_tx(
        Header {
            src_cid: 99,
            ..good
        },
        &[],
    );
    h.queue_tx(Header { dst_cid: 7, ..good }, &[]);
    queued += 2;
    // RW whose len is past what the chain holds, or past 64 KiB.
    h.queue_tx(
        Header {
            op: OP_RW,
            src_port: 1,
            len: 100,
            ..good
        },
        b"short",
    );
    h.queue_tx(
        Header {
            op: OP_RW,
            src_port: 2,
            len: MAX_PKT_PAYLOAD + 1,
            ..good
        },
        &[0u8; 16],
    );
    // Unknown type and unknown op: RST.
    h.queue_tx(
        Header {
            type_: 2,
            src_port: 3,
            ..good
        },
        &[],
    );
    h.queue_tx(
        Header {
            op: 42,
            src_port: 4,
            ..good
        },
        &[],
    );
    // A control packet with a payload.
    h.queue_tx(
        Header {
            len: 5,
            src_port: 5,
            ..good
        },
        b"extra",
    );
    queued += 5;
    h.kick(TX_QUEUE);
    assert!(
        !h.interrupt.needs_reset(),
        "bad chains do not fail the device"
    );
    assert_eq!(h.tx_used().len(), queued, "every chain is returned");
    let pkts = h.take_rx();
    let mut rst_ports: Vec<u32> = pkts
        .iter()
        .filter(|p| p.hdr.op == OP_RST)
        .map(|p| p.hdr.dst_port)
        .collect();
    rst_ports.sort();
    assert_eq!(rst_ports, [1, 2, 3, 4, 5], "{pkts:?}");
    assert_eq!(pkts.len(), 5);
    assert_eq!(h.live(), 0);
    // The device carries on.
    let mut s = h.guest_connect(&l, 5000, 1234);
    h.send(h.hdr(OP_RW, 5000, 1234), b"still here");
    assert_eq!(read_n(&mut s, 10), b"still here");
}

#[test]
fn hostile_rx_buffers_are_returned_empty() {
    let mut h = Harness::active("hostile-rx");
    let l = h.listen(1234);
    // Read-only (wrong direction), too small for a header, outside memory, zero length.
    let a = h.alloc(4096);
    let heads = [
        h.rx.add(&h.mem, &[(a, 4096, 0)]),
        h.rx.add(&h.mem, &[(a, 10, F_WRITE)]),
        h.rx.add(&h.mem, &[(MEM_SIZE - 8, 4096, F_WRITE)]),
        h.rx.add(&h.mem, &[(a, 0, F_WRITE)]),
    ];
    h.kick(RX_QUEUE);
    h.send(h.hdr(OP_REQUEST, 5000, 1234), &[]);
    let used = h.rx.take_used(&h.mem);
    assert_eq!(used, heads.iter().map(|&hd| (hd, 0)).collect::<Vec<_>>());
    // A good buffer then gets the RESPONSE.
    h.give_rx(1, 4096);
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].hdr.op, OP_RESPONSE);
    // A header split over two descriptors works too.
    let (a, b) = (h.alloc(16), h.alloc(4096));
    let head = h.rx.add(&h.mem, &[(a, 16, F_WRITE), (b, 4096, F_WRITE)]);
    h.kick(RX_QUEUE);
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"split").unwrap();
    h.pump();
    let used = h.rx.take_used(&h.mem);
    assert_eq!(used, [(head, (HDR_LEN + 5) as u32)]);
    let mut hdr = [0u8; HDR_LEN];
    h.mem.read_slice(&mut hdr[..16], GuestAddress(a)).unwrap();
    h.mem.read_slice(&mut hdr[16..], GuestAddress(b)).unwrap();
    let hdr = Header::from_bytes(&hdr);
    assert_eq!((hdr.op, hdr.len), (OP_RW, 5));
    let mut data = [0u8; 5];
    h.mem
        .read_slice(&mut data, GuestAddress(b + (HDR_LEN - 16) as u64))
        .unwrap();
    assert_eq!(&data, b"split");
}

#[test]
fn a_broken_avail_index_needs_reset_and_a_reset_revives() {
    let mut h = Harness::active("broken-ring");
    let l = h.listen(1234);
    let mut s_before = {
        h.give_rx(4, 4096);
        h.guest_connect(&l, 5000, 1234)
    };
    // The driver claims far more available entries than the queue holds.
    h.mem
        .write_obj(
            (h.tx.avail_idx.wrapping_add(QSIZE + 5)).to_le(),
            GuestAddress(h.tx.avail + 2),
        )
        .unwrap();
    h.kick(TX_QUEUE);
    assert!(h.interrupt.needs_reset());
    assert_closed(&mut s_before);
    // The driver resets and starts again.
    h.dev.lock().unwrap().reset();
    h.interrupt.reset();
    h.pump();
    h.rx_bufs.clear();
    h.activate(true);
    h.give_rx(4, 4096);
    let mut s = h.guest_connect(&l, 5001, 1234);
    h.send(h.hdr(OP_RW, 5001, 1234), b"again");
    assert_eq!(read_n(&mut s, 5), b"again");
}

#[test]
fn reset_drops_every_connection() {
    let mut h = Harness::active("reset");
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut a = h.guest_connect(&l, 5000, 1234);
    let (mut b, _) = h.host_connect(52);
    h.dev.lock().unwrap().reset();
    h.pump();
    assert_closed(&mut a);
    assert_closed(&mut b);
    assert_eq!(h.live(), 0);
    // The hybrid socket still listens.
    assert!(UnixStream::connect(&h.uds).is_ok());
}

#[test]
fn notifications_before_activation_are_ignored_and_host_connects_wait() {
    let mut h = Harness::new("early");
    h.kick(TX_QUEUE);
    h.kick(RX_QUEUE);
    let mut s = UnixStream::connect(&h.uds).unwrap();
    s.write_all(b"CONNECT 52\n").unwrap();
    h.pump();
    h.activate(true);
    h.give_rx(4, 4096);
    let pkts = h.take_rx();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].hdr.op, OP_REQUEST);
}

#[test]
fn event_idx_is_honoured_on_both_queues() {
    let mut h = Harness::new("event-idx");
    h.activate(true);
    let l = h.listen(1234);
    h.give_rx(8, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    for i in 0..4u8 {
        h.queue_tx(
            Header {
                len: 1,
                ..h.hdr(OP_RW, 5000, 1234)
            },
            &[b'a' + i],
        );
    }
    h.kick(TX_QUEUE);
    assert_eq!(read_n(&mut s, 4), b"abcd");
    // avail_event (after the used ring) asks for a kick at the next entry.
    let avail_event: u16 = h
        .mem
        .read_obj(GuestAddress(h.tx.used + 4 + 8 * u64::from(QSIZE)))
        .unwrap();
    assert_eq!(avail_event, h.tx.avail_idx);
}

#[test]
fn stale_socket_is_replaced_at_start() {
    let dir = temp_dir("stale");
    let uds = dir.join("v.sock");
    drop(UnixListener::bind(&uds).unwrap());
    let dev = Vsock::new(VsockConfig {
        guest_cid: CID,
        uds_path: uds.clone(),
    })
    .unwrap();
    assert!(UnixStream::connect(&uds).is_ok());
    drop(dev);
    assert!(!Path::new(&uds).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn queued_data_packets_keep_their_order_across_connections_and_shutdown() {
    let mut h = Harness::active("batch");
    let l = h.listen(1234);
    h.give_rx(16, 4096);
    let mut a = h.guest_connect(&l, 5000, 1234);
    let mut b = h.guest_connect(&l, 5001, 1234);
    h.tx_used();
    // Several packets per connection, interleaved, then a SHUTDOWN(SEND) for the first: one kick.
    let pkt = |h: &Harness, port: u32, data: &[u8]| Header {
        len: data.len() as u32,
        ..h.hdr(OP_RW, port, 1234)
    };
    for (port, data) in [
        (5000, &b"a1"[..]),
        (5000, b"a2"),
        (5001, b"b1"),
        (5000, b"a3"),
        (5001, b"b2"),
        (5001, b"b3"),
    ] {
        let hdr = pkt(&h, port, data);
        h.queue_tx(hdr, data);
    }
    let mut shut = h.hdr(OP_SHUTDOWN, 5000, 1234);
    shut.flags = SHUTDOWN_SEND;
    h.queue_tx(shut, &[]);
    let hdr = pkt(&h, 5001, b"b4");
    h.queue_tx(hdr, b"b4");
    h.kick(TX_QUEUE);
    assert_eq!(h.tx_used().len(), 8);
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"a1a2a3", "data, then EOF from the SHUTDOWN(SEND)");
    assert_eq!(read_n(&mut b, 8), b"b1b2b3b4");
}

#[test]
fn data_the_host_cannot_take_yet_is_buffered_then_delivered() {
    let mut h = Harness::active("backpressure");
    let l = h.listen(1234);
    h.give_rx(16, 4096);
    let mut s = h.guest_connect(&l, 5000, 1234);
    h.tx_used();
    // 192 KiB with the host not reading: more than a Unix socket buffers by default.
    let data: Vec<u8> = (0..3 * MAX_PKT_PAYLOAD).map(|i| (i % 253) as u8).collect();
    for chunk in data.chunks(MAX_PKT_PAYLOAD as usize) {
        let hdr = Header {
            len: chunk.len() as u32,
            ..h.hdr(OP_RW, 5000, 1234)
        };
        h.queue_tx(hdr, chunk);
    }
    h.kick(TX_QUEUE);
    assert_eq!(h.tx_used().len(), 3, "the chains come back at once");
    let reader = std::thread::spawn(move || read_n(&mut s, 3 * MAX_PKT_PAYLOAD as usize));
    for _ in 0..50 {
        h.pump();
        if reader.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reader.join().unwrap() == data);
    // Forwarding it all earned the guest a credit update.
    let upd = h.take_rx();
    let fwd = upd.iter().map(|p| p.hdr.fwd_cnt).max().unwrap_or(0);
    assert_eq!(fwd, 3 * MAX_PKT_PAYLOAD, "{upd:?}");
}

#[test]
fn a_full_tx_queue_is_served_a_budget_per_turn_and_the_device_comes_back_for_the_rest() {
    // Arrange: more packets than one turn's budget (RSTs to nowhere: each is consumed and dropped).
    let mut h = Harness::new("tx-budget");
    h.qsize = QUEUE_SIZE;
    h.activate(false);
    let n = super::device::TX_BUDGET.chains + 10;
    for port in 0..n as u32 {
        let hdr = h.hdr(OP_RST, 5000 + port, 6000);
        h.queue_tx(hdr, &[]);
    }
    // Act: one turn, as the event loop would make it.
    h.dev.lock().unwrap().process_tx(Instant::now());
    let first = h.tx_used();
    let rekicked = h.dev.lock().unwrap().queue_events()[TX_QUEUE]
        .read()
        .is_ok();
    h.kick(TX_QUEUE);
    let rest = h.tx_used();
    // Assert
    assert_eq!(first.len(), super::device::TX_BUDGET.chains);
    assert!(
        rekicked,
        "the device did not kick itself for the packets left"
    );
    assert_eq!(rest.len(), 10);
}
