//! The connection table: routes guest packets and host socket events to connections, accepts
//! host connections (and their `CONNECT <port>` handshake), and decides what goes into the
//! guest's RX buffers next.
//!
//! Host sockets are registered with the event loop by the device: the muxer lists the fds to add
//! (`registrations`) and the sockets to remove then close (`graveyard`), because only the event
//! loop thread may change the event set, and an fd must leave it before it is closed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::connection::{ConnKey, Connection, RxNext, State, Verdict};

use super::packet::*;
use super::unix::{self, Handshake, HostListener};
use crate::virtio::iovec::{IoVecs, IOV_MAX};
use crate::Result;

/// Connections (and host connections still in their handshake) at most; beyond, RST.
pub const MAX_CONNECTIONS: usize = 1024;
/// RSTs for unknown connections waiting for RX buffers at most; more are dropped.
const MAX_PENDING_RSTS: usize = 1024;
/// How long the listener is left alone after accept(2) failed (EMFILE and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// How long a host connection may take to send its `CONNECT <port>` line.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Host ports of host-initiated connections are picked round-robin in [2^30, 2^31), as
/// Firecracker does.
const LOCAL_PORT_FIRST: u32 = 1 << 30;
const LOCAL_PORT_END: u32 = 1 << 31;
/// The most guest buffers one read from a host socket fills.
pub const MAX_CHAINS_PER_READ: usize = 64;
/// The most bytes one read from a host socket moves.
const MAX_READ_BYTES: usize = 256 * 1024;
/// Tokens of host sockets stay below this; the device uses the values above for its own fds.
pub const TOKEN_LIMIT: u32 = 0x8000_0000;

/// A guest RX buffer the device popped: its head, its writable bytes (`range` into the device's
/// iovecs) and their total.
#[derive(Clone, Debug)]
pub struct RxChain {
    pub head: u16,
    pub range: Range<usize>,
    pub cap: usize,
}

enum Entry {
    /// A host connection that has not sent its `CONNECT <port>` line yet.
    Handshake {
        stream: UnixStream,
        expiry: Instant,
    },
    Conn(Box<Connection>),
}

#[derive(Default)]
struct Slot {
    gen: u16,
    entry: Option<Entry>,
    /// The expiry last reported to the timer, to notice changes.
    expiry_seen: Option<Instant>,
    /// The local port was allocated by us (host-initiated) and goes back to the pool.
    owns_port: bool,
}

fn make_token(slot: usize, gen: u16) -> u32 {
    (u32::from(gen & 0x7fff) << 16) | slot as u32
}

pub struct Muxer {
    guest_cid: u64,
    listener: HostListener,
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    max_connections: usize,
    keys: HashMap<ConnKey, u32>,
    local_ports: HashSet<u32>,
    next_local_port: u32,
    rxq: VecDeque<u32>,
    rsts: VecDeque<ConnKey>,
    /// Host sockets to add to the event loop: (fd, token).
    pub registrations: Vec<(RawFd, u32)>,
    /// Host sockets to remove from the event loop, then close.
    pub graveyard: Vec<UnixStream>,
    timers_dirty: bool,
    accept_paused_until: Option<Instant>,
    /// The listener must leave (false) or rejoin (true) the event loop.
    pub listener_change: Option<bool>,
}

impl Muxer {
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Muxer> {
        Ok(Muxer {
            guest_cid,
            listener: HostListener::bind(uds_path)?,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max_connections: MAX_CONNECTIONS,
            keys: HashMap::new(),
            local_ports: HashSet::new(),
            next_local_port: LOCAL_PORT_FIRST,
            rxq: VecDeque::new(),
            rsts: VecDeque::new(),
            registrations: Vec::new(),
            graveyard: Vec::new(),
            timers_dirty: false,
            accept_paused_until: None,
            listener_change: None,
        })
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.listener.as_raw_fd()
    }

    /// Connections and handshakes alive.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live
    }

    #[cfg(test)]
    pub fn set_max_connections(&mut self, n: usize) {
        self.max_connections = n;
    }

    fn slot_of(&self, token: u32) -> Option<usize> {
        let slot = (token & 0xffff) as usize;
        let s = self.slots.get(slot)?;
        (s.entry.is_some() && make_token(slot, s.gen) == token).then_some(slot)
    }

    fn conn_mut(&mut self, token: u32) -> Option<&mut Connection> {
        let slot = self.slot_of(token)?;
        match self.slots.get_mut(slot)?.entry.as_mut()? {
            Entry::Conn(c) => Some(c),
            Entry::Handshake { .. } => None,
        }
    }

    fn insert(&mut self, entry: Entry, fd: RawFd, owns_port: bool) -> Option<u32> {
        if self.live >= self.max_connections {
            return None;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let s = self.slots.get_mut(slot)?;
        s.entry = Some(entry);
        s.expiry_seen = None;
        s.owns_port = owns_port;
        self.live += 1;
        let token = make_token(slot, s.gen);
        self.registrations.push((fd, token));
        Some(token)
    }

    /// Forgets an entry; its socket goes to the graveyard, and with `rst` the guest is told.
    fn remove(&mut self, token: u32, rst: bool) {
        let Some(slot) = self.slot_of(token) else {
            return;
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(entry) = s.entry.take() else {
            return;
        };
        s.gen = s.gen.wrapping_add(1) & 0x7fff;
        let owns_port = std::mem::take(&mut s.owns_port);
        if s.expiry_seen.take().is_some() {
            self.timers_dirty = true;
        }
        self.free.push(slot);
        self.live -= 1;
        match entry {
            Entry::Handshake { stream, .. } => self.graveyard.push(stream),
            Entry::Conn(mut c) => {
                self.keys.remove(&c.key);
                if owns_port {
                    self.local_ports.remove(&c.key.local_port);
                }
                if let Some(stream) = c.take_stream() {
                    self.graveyard.push(stream);
                }
                if c.queued {
                    self.rxq.retain(|&t| t != token);
                }
                if rst {
                    self.queue_rst(c.key);
                }
            }
        }
    }

    fn queue_rst(&mut self, key: ConnKey) {
        if self.rsts.len() < MAX_PENDING_RSTS {
            self.rsts.push_back(key);
        }
    }

    /// Applies what a connection said, and puts it in the RX queue if it has something to say.
    fn settle(&mut self, token: u32, verdict: Verdict) {
        match verdict {
            Verdict::Reset => return self.remove(token, true),
            Verdict::Remove => return self.remove(token, false),
            Verdict::Keep => {}
        }
        let Some(slot) = self.slot_of(token) else {
            return;
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(Entry::Conn(c)) = s.entry.as_mut() else {
            return;
        };
        c.check_stall();
        if c.state() == State::Closing {
            if let Some(stream) = c.take_stream() {
                self.graveyard.push(stream);
            }
        }
        if c.expiry != s.expiry_seen {
            s.expiry_seen = c.expiry;
            self.timers_dirty = true;
        }
        if c.has_rx() && !c.queued {
            c.queued = true;
            self.rxq.push_back(token);
        }
    }

    /// Accepts every pending host connection.
    pub fn accept(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(_) => {
                    // Out of descriptors or memory: the connection stays in the backlog and the
                    // listener readable, so stop watching it for a while instead of spinning.
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    self.listener_change = Some(false);
                    self.timers_dirty = true;
                    return;
                }
            };
            if self.live >= self.max_connections {
                // Closed at once: the host program sees EOF.
                drop(stream);
                continue;
            }
            let fd = stream.as_raw_fd();
            let expiry = now + HANDSHAKE_TIMEOUT;
            if let Some(token) = self.insert(Entry::Handshake { stream, expiry }, fd, false) {
                if let Some(s) = self.slot_of(token).and_then(|i| self.slots.get_mut(i)) {
                    s.expiry_seen = Some(expiry);
                }
                self.timers_dirty = true;
            }
        }
    }

    fn alloc_local_port(&mut self) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let p = self.next_local_port;
            self.next_local_port = if p + 1 >= LOCAL_PORT_END {
                LOCAL_PORT_FIRST
            } else {
                p + 1
            };
            if self.local_ports.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// Readiness of the host socket behind `token`.
    pub fn host_event(
        &mut self,
        token: u32,
        readable: bool,
        writable: bool,
        eof_coming: bool,
        hung_up: bool,
    ) {
        let Some(slot) = self.slot_of(token) else {
            return;
        };
        let is_handshake = matches!(
            self.slots.get(slot).and_then(|s| s.entry.as_ref()),
            Some(Entry::Handshake { .. })
        );
        if is_handshake {
            if readable || eof_coming || hung_up {
                self.handshake(token, slot, eof_coming || hung_up);
            }
            return;
        }
        let verdict = match self.conn_mut(token) {
            Some(c) => c.host_event(readable, writable, eof_coming, hung_up),
            None => return,
        };
        self.settle(token, verdict);
    }

    fn handshake(&mut self, token: u32, slot: usize, hung_up: bool) {
        let Some(Some(Entry::Handshake { stream, .. })) = self.slots.get(slot).map(|s| &s.entry)
        else {
            return;
        };
        let port = match unix::read_handshake(stream.as_raw_fd()) {
            Ok(Handshake::Connect { port, .. }) => port,
            Ok(Handshake::Incomplete) if !hung_up => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !hung_up => return,
            _ => return self.remove(token, false),
        };
        let Some(local_port) = self.alloc_local_port() else {
            return self.remove(token, false);
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(Entry::Handshake { stream, .. }) = s.entry.take() else {
            return;
        };
        let key = ConnKey {
            local_port,
            peer_port: port,
        };
        s.entry = Some(Entry::Conn(Box::new(Connection::new_local(
            key,
            self.guest_cid,
            stream,
        ))));
        s.owns_port = true;
        self.keys.insert(key, token);
        self.settle(token, Verdict::Keep);
    }

    /// A guest REQUEST for a connection we do not have: connect to `<uds_path>_<port>`.
    fn peer_request(&mut self, key: ConnKey, hdr: &Header) {
        if self.live >= self.max_connections {
            return self.queue_rst(key);
        }
        let path = unix::port_path(self.listener.path(), key.local_port);
        let Ok(stream) = unix::connect_nonblocking(&path) else {
            return self.queue_rst(key);
        };
        let fd = stream.as_raw_fd();
        let conn = Connection::new_peer(key, self.guest_cid, stream, hdr);
        match self.insert(Entry::Conn(Box::new(conn)), fd, false) {
            Some(token) => {
                self.keys.insert(key, token);
                self.settle(token, Verdict::Keep);
            }
            None => self.queue_rst(key),
        }
    }

    /// A validated guest packet; `range` of `payload` holds its `hdr.len` data bytes.
    pub fn guest_packet(
        &mut self,
        hdr: &Header,
        payload: &IoVecs,
        range: Range<usize>,
        now: Instant,
    ) {
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        let Some(&token) = self.keys.get(&key) else {
            match hdr.op {
                OP_REQUEST => self.peer_request(key, hdr),
                OP_RST => {}
                _ => self.queue_rst(key),
            }
            return;
        };
        match hdr.op {
            OP_RST => self.remove(token, false),
            // A second REQUEST on a live connection.
            OP_REQUEST => self.remove(token, true),
            _ => {
                let verdict = match self.conn_mut(token) {
                    Some(c) => c.guest_packet(hdr, payload, range, now),
                    None => return,
                };
                self.settle(token, verdict);
            }
        }
    }

    /// The token of the connection a guest packet belongs to.
    pub fn token_of(&self, hdr: &Header) -> Option<u32> {
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        self.keys.get(&key).copied()
    }

    /// A validated RW packet that may join a batch written to its host socket in one go: the
    /// connection's token if it takes it (its bytes are then counted as received), None if the
    /// packet must go through [`Muxer::guest_packet`].
    pub fn accept_direct(&mut self, hdr: &Header) -> Option<u32> {
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        let token = *self.keys.get(&key)?;
        self.conn_mut(token)?.accept_direct(hdr).then_some(token)
    }

    /// Writes a batch of accepted data for `token` (the whole of `payload`, `bytes` long).
    pub fn write_direct(&mut self, token: u32, payload: &IoVecs, bytes: usize) {
        let verdict = match self.conn_mut(token) {
            Some(c) => c.write_direct(payload, bytes),
            None => return,
        };
        self.settle(token, verdict);
    }

    /// A guest packet with good addressing but bad contents: reset it (and its connection).
    pub fn reset_packet(&mut self, hdr: &Header) {
        if hdr.op == OP_RST {
            return;
        }
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        match self.keys.get(&key) {
            Some(&token) => self.remove(token, true),
            None => self.queue_rst(key),
        }
    }

    /// Ends whatever expired by `now`.
    pub fn timeouts(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.listener_change = Some(true);
            self.timers_dirty = true;
        }
        for slot in 0..self.slots.len() {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            let token = make_token(slot, s.gen);
            let verdict = match s.entry.as_mut() {
                Some(Entry::Handshake { expiry, .. }) if *expiry <= now => Verdict::Remove,
                Some(Entry::Conn(c)) if c.expiry.is_some_and(|t| t <= now) => c.expired(now),
                _ => continue,
            };
            self.settle(token, verdict);
        }
    }

    /// Gives up on a connection (its socket could not be watched): RST to the guest.
    pub fn abort(&mut self, token: u32) {
        self.remove(token, true);
    }

    pub fn mark_timers_dirty(&mut self) {
        self.timers_dirty = true;
    }

    /// Whether the timer must be re-armed (and clears the flag).
    pub fn take_timers_dirty(&mut self) -> bool {
        std::mem::take(&mut self.timers_dirty)
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.expiry_seen)
            .chain(self.accept_paused_until)
            .min()
    }

    /// Whether anything waits for guest RX buffers.
    pub fn has_rx(&self) -> bool {
        !self.rsts.is_empty() || !self.rxq.is_empty()
    }

    /// Fills guest RX buffers, in order from the first of `chains`, and pushes the length used
    /// in each onto `used`: those chains are consumed, the rest are not. `scratch` is working
    /// space.
    pub fn fill_rx(
        &mut self,
        iovs: &IoVecs,
        chains: &[RxChain],
        used: &mut Vec<u32>,
        scratch: &mut IoVecs,
        now: Instant,
    ) {
        let guest_cid = self.guest_cid;
        while let Some(chain) = chains.get(used.len()) {
            if let Some(key) = self.rsts.pop_front() {
                let hdr = Header {
                    src_cid: HOST_CID,
                    dst_cid: guest_cid,
                    src_port: key.local_port,
                    dst_port: key.peer_port,
                    type_: TYPE_STREAM,
                    op: OP_RST,
                    ..Header::default()
                };
                iovs.write_at(chain.range.clone(), 0, &hdr.to_bytes());
                used.push(HDR_LEN as u32);
                continue;
            }
            let Some(&token) = self.rxq.front() else {
                return;
            };
            let Some(conn) = self.conn_mut(token) else {
                self.rxq.pop_front();
                continue;
            };
            let next = conn.next_rx();
            let verdict = match next {
                None => Verdict::Keep,
                Some(RxNext::Control { op, flags }) => {
                    let hdr = conn.header(op, 0, flags);
                    iovs.write_at(chain.range.clone(), 0, &hdr.to_bytes());
                    used.push(HDR_LEN as u32);
                    conn.control_sent(op, now)
                }
                Some(RxNext::Data { max }) => {
                    let first = used.len();
                    let rest = chains.get(first..).unwrap_or(&[]);
                    read_into_chains(conn, iovs, rest, max, used, scratch)
                }
            };
            // Round-robin: the connection goes to the back of the queue if it has more.
            self.rxq.pop_front();
            conn_requeue(self, token);
            self.settle(token, verdict);
        }
    }

    /// Drops every connection (the driver reset the device, or the VM ends): their sockets go to
    /// the graveyard, and nothing is owed to the guest any more.
    pub fn reset(&mut self) {
        for slot in 0..self.slots.len() {
            if let Some(s) = self.slots.get(slot) {
                let token = make_token(slot, s.gen);
                self.remove(token, false);
            }
        }
        self.rxq.clear();
        self.rsts.clear();
        self.registrations.clear();
        self.timers_dirty = true;
    }
}

/// Marks the connection as out of the RX queue (it was just popped).
fn conn_requeue(m: &mut Muxer, token: u32) {
    if let Some(c) = m.conn_mut(token) {
        c.queued = false;
    }
}

/// Reads host data for `conn` into as many of `chains` as the guest's credit and the read
/// allows, with one readv, and writes an RW header in front of each filled buffer.
fn read_into_chains(
    conn: &mut Connection,
    iovs: &IoVecs,
    chains: &[RxChain],
    max: u32,
    used: &mut Vec<u32>,
    scratch: &mut IoVecs,
) -> Verdict {
    let limit = (max as usize).min(MAX_READ_BYTES);
    let mut rooms = [0usize; MAX_CHAINS_PER_READ];
    let mut count = 0;
    let mut total = 0;
    scratch.clear();
    for chain in chains.iter().take(MAX_CHAINS_PER_READ) {
        let room = chain
            .cap
            .saturating_sub(HDR_LEN)
            .min(MAX_PKT_PAYLOAD as usize)
            .min(limit - total);
        if room == 0 || scratch.len() + chain.range.len() > IOV_MAX {
            break;
        }
        let got = iovs.sub(chain.range.clone(), HDR_LEN, room, scratch);
        if let Some(r) = rooms.get_mut(count) {
            *r = got;
        }
        count += 1;
        total += got;
        if total >= limit {
            break;
        }
    }
    let Some(first) = chains.first() else {
        return Verdict::Keep;
    };
    if total == 0 {
        // The first buffer only has room for a header: spend it on a credit update.
        let hdr = conn.header(OP_CREDIT_UPDATE, 0, 0);
        iovs.write_at(first.range.clone(), 0, &hdr.to_bytes());
        used.push(HDR_LEN as u32);
        return conn.control_sent(OP_CREDIT_UPDATE, Instant::now());
    }
    let n = match conn.read_data(scratch.get(0..scratch.len()), total) {
        Ok(n) => n,
        Err(v) => return v,
    };
    scratch.clear();
    let mut left = n;
    for (chain, &room) in chains.iter().zip(rooms.iter().take(count)) {
        if left == 0 {
            break;
        }
        let take = room.min(left);
        let hdr = conn.header(OP_RW, take as u32, 0);
        iovs.write_at(chain.range.clone(), 0, &hdr.to_bytes());
        used.push((HDR_LEN + take) as u32);
        left -= take;
    }
    Verdict::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_listener_is_watched_again_after_the_backoff() {
        let dir = std::env::temp_dir().join(format!("vmctl-vsock-muxer-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut m = Muxer::new(3, &dir.join("v.sock")).unwrap();
        let t0 = Instant::now();
        // What a failing accept(2) leaves behind.
        m.accept_paused_until = Some(t0 + ACCEPT_BACKOFF);
        assert_eq!(m.next_expiry(), Some(t0 + ACCEPT_BACKOFF));
        m.timeouts(t0);
        assert_eq!(m.listener_change, None);
        m.timeouts(t0 + ACCEPT_BACKOFF);
        assert_eq!(m.listener_change, Some(true));
        assert_eq!(m.next_expiry(), None);
        drop(m);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn local_ports_are_unique_and_wrap() {
        let dir = std::env::temp_dir().join(format!("vmctl-vsock-ports-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut m = Muxer::new(3, &dir.join("v.sock")).unwrap();
        m.next_local_port = LOCAL_PORT_END - 1;
        let a = m.alloc_local_port().unwrap();
        let b = m.alloc_local_port().unwrap();
        assert_eq!((a, b), (LOCAL_PORT_END - 1, LOCAL_PORT_FIRST));
        m.next_local_port = LOCAL_PORT_END - 1;
        assert_eq!(
            m.alloc_local_port(),
            Some(LOCAL_PORT_FIRST + 1),
            "ports in use are skipped"
        );
        drop(m);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
