//! One stream between a guest port and a host Unix socket: its state machine and its credit.
//!
//! Flow control (virtio 1.2, 5.10.6.3): each side advertises `buf_alloc` (receive buffer size)
//! and `fwd_cnt` (bytes it has passed on) in every packet. We never send the guest more than
//! `peer_buf_alloc - (rx_cnt - peer_fwd_cnt)`, and we never hold more than [`CONN_BUF_ALLOC`]
//! bytes of guest data the host socket has not taken yet: a guest that sends past its credit is
//! reset.
//!
//! Shutdown: the host closing its socket (EOF and hang-up) sends SHUTDOWN(RCV|SEND) and waits for
//! the guest's RST (or sends one after [`CLOSE_TIMEOUT`]); the host shutting only its write side
//! sends SHUTDOWN(SEND) and keeps forwarding guest data. A guest SHUTDOWN(SEND) becomes
//! `shutdown(SHUT_WR)` on the host socket once buffered data is written; SHUTDOWN(RCV|SEND) is
//! answered with RST once it is.

use std::io;
use std::num::Wrapping;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::iov;
use super::packet::*;
use super::txbuf::TxBuf;
use super::unix;
use crate::virtio::iovec::IoVecs;

/// The receive buffer we advertise to the guest, per connection.
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// A credit update is sent once this many bytes were forwarded since the guest last heard.
pub const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_ALLOC / 2;
/// How long the guest has to accept a host-initiated connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection waits for the guest's RST (Linux's VSOCK_CLOSE_TIMEOUT).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(8);
/// Room for the `OK <port>\n` handshake reply in front of the guest's data.
const REPLY_ROOM: usize = 32;

/// A connection's identity: our (host) port and the guest's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub local_port: u32,
    pub peer_port: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: a REQUEST is due or sent; waiting for the guest's RESPONSE.
    LocalInit,
    /// Guest-initiated: connected to the host listener; our RESPONSE is due.
    PeerInit,
    Established,
    /// The host socket is gone and SHUTDOWN(RCV|SEND) is sent: waiting for the guest's RST.
    Closing,
}

/// What the owner must do with the connection after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Send the guest an RST for it and forget it (closing the host socket).
    Reset,
    /// Forget it without a word (the guest reset it, or never heard of it).
    Remove,
}

/// The next packet a connection has for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxNext {
    Control {
        op: u16,
        flags: u32,
    },
    /// Data from the host socket, at most this many bytes (the guest's free credit).
    Data {
        max: u32,
    },
}

const P_REQUEST: u8 = 1;
const P_RESPONSE: u8 = 2;
const P_SHUTDOWN: u8 = 4;
const P_CREDIT_UPDATE: u8 = 8;
const P_CREDIT_REQUEST: u8 = 16;

pub struct Connection {
    pub key: ConnKey,
    guest_cid: u64,
    /// None once the host side is closed (Closing).
    stream: Option<UnixStream>,
    state: State,
    /// P_* packets owed to the guest.
    pending: u8,
    /// Flags of the SHUTDOWN owed to the guest.
    shutdown_flags: u32,
    /// Edge-triggered readiness of the host socket, as last seen.
    readable: bool,
    writable: bool,
    /// The host shut its write side: read until the EOF.
    eof_coming: bool,
    // host -> guest
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    rx_cnt: Wrapping<u32>,
    credit_requested: bool,
    // guest -> host
    tx_cnt: Wrapping<u32>,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
    txbuf: TxBuf,
    /// Bytes at the front of `txbuf` that are our handshake reply, not guest data.
    reply_len: usize,
    /// SHUTDOWN flags the guest sent.
    peer_shut: u32,
    /// SHUTDOWN flags we sent (or owe).
    local_shut: u32,
    host_write_shut: bool,
    /// When the connection is reset unless something happens first.
    pub expiry: Option<Instant>,
    /// Whether the owner has it in its RX queue.
    pub queued: bool,
}

impl Connection {
    fn new(key: ConnKey, guest_cid: u64, stream: UnixStream, state: State, pending: u8) -> Self {
        unix::tune(&stream, 2 * CONN_BUF_ALLOC as usize);
        Connection {
            key,
            guest_cid,
            stream: Some(stream),
            state,
            pending,
            shutdown_flags: 0,
            readable: true,
            writable: true,
            eof_coming: false,
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            credit_requested: false,
            tx_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            txbuf: TxBuf::new(CONN_BUF_ALLOC as usize + REPLY_ROOM),
            reply_len: 0,
            peer_shut: 0,
            local_shut: 0,
            host_write_shut: false,
            expiry: None,
            queued: false,
        }
    }

    /// A host program asked (`CONNECT <port>`) to reach guest port `key.peer_port`.
    pub fn new_local(key: ConnKey, guest_cid: u64, stream: UnixStream) -> Self {
        Self::new(key, guest_cid, stream, State::LocalInit, P_REQUEST)
    }

    /// The guest's REQUEST `hdr` reached a host listener, now connected as `stream`.
    pub fn new_peer(key: ConnKey, guest_cid: u64, stream: UnixStream, hdr: &Header) -> Self {
        let mut c = Self::new(key, guest_cid, stream, State::PeerInit, P_RESPONSE);
        c.peer_buf_alloc = hdr.buf_alloc;
        c.peer_fwd_cnt = Wrapping(hdr.fwd_cnt);
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Hands the host socket over (to be unregistered and closed).
    pub fn take_stream(&mut self) -> Option<UnixStream> {
        self.stream.take()
    }

    /// Bytes the guest can still take.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        // A guest reporting more forwarded than it was sent gets no credit rather than a lot.
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn may_send_data(&self) -> bool {
        self.state == State::Established
            && self.stream.is_some()
            && self.peer_shut & SHUTDOWN_RCV == 0
            && self.local_shut & SHUTDOWN_SEND == 0
    }

    fn wants_data(&self) -> bool {
        self.readable && self.may_send_data() && self.peer_credit() > 0
    }

    /// Whether the connection has a packet for the guest.
    pub fn has_rx(&self) -> bool {
        self.pending != 0 || self.wants_data()
    }

    pub fn next_rx(&self) -> Option<RxNext> {
        let control = |op| Some(RxNext::Control { op, flags: 0 });
        if self.pending & P_REQUEST != 0 {
            return control(OP_REQUEST);
        }
        if self.pending & P_RESPONSE != 0 {
            return control(OP_RESPONSE);
        }
        if self.wants_data() {
            return Some(RxNext::Data {
                max: self.peer_credit(),
            });
        }
        if self.pending & P_SHUTDOWN != 0 {
            return Some(RxNext::Control {
                op: OP_SHUTDOWN,
                flags: self.shutdown_flags,
            });
        }
        if self.pending & P_CREDIT_REQUEST != 0 {
            return control(OP_CREDIT_REQUEST);
        }
        if self.pending & P_CREDIT_UPDATE != 0 {
            return control(OP_CREDIT_UPDATE);
        }
        None
    }

    /// The header of a packet from us to the guest on this connection.
    pub fn header(&self, op: u16, len: u32, flags: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.key.local_port,
            dst_port: self.key.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF_ALLOC,
            fwd_cnt: self.fwd_cnt.0,
        }
    }

    /// Any packet we sent told the guest our current `fwd_cnt`.
    fn sent_credit(&mut self) {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        self.pending &= !P_CREDIT_UPDATE;
    }

    /// The control packet `op` reached a guest buffer.
    pub fn control_sent(&mut self, op: u16, now: Instant) -> Verdict {
        self.sent_credit();
        match op {
            OP_REQUEST => {
                self.pending &= !P_REQUEST;
                self.expiry = Some(now + REQUEST_TIMEOUT);
            }
            OP_RESPONSE => {
                self.pending &= !P_RESPONSE;
                self.state = State::Established;
            }
            OP_SHUTDOWN => {
                self.pending &= !P_SHUTDOWN;
                if self.shutdown_flags == SHUTDOWN_BOTH {
                    self.state = State::Closing;
                    self.expiry = Some(now + CLOSE_TIMEOUT);
                }
            }
            OP_CREDIT_REQUEST => {
                self.pending &= !P_CREDIT_REQUEST;
                self.credit_requested = true;
            }
            _ => {}
        }
        Verdict::Keep
    }

    /// Reads host data into `bufs` (guest memory). Returns the number of bytes read; 0 when
    /// there was nothing to read or the host closed its side (a SHUTDOWN is then owed).
    pub fn read_data(&mut self, bufs: &[libc::iovec], wanted: usize) -> Result<usize, Verdict> {
        let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) else {
            self.readable = false;
            return Ok(0);
        };
        match iov::readv(fd, bufs) {
            Ok(0) => {
                self.host_eof(unix::peer_hung_up(fd));
                Ok(0)
            }
            Ok(n) => {
                let n = n.min(wanted);
                self.rx_cnt += Wrapping(n as u32);
                if n < wanted && !self.eof_coming {
                    // The socket is drained for now: the next edge tells when there is more.
                    self.readable = false;
                }
                self.sent_credit();
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(_) => Err(Verdict::Reset),
        }
    }

    /// The host shut its write side (`hung_up`: it closed the socket entirely).
    fn host_eof(&mut self, hung_up: bool) {
        self.readable = false;
        let nothing_left = self.peer_shut & SHUTDOWN_SEND != 0 && self.txbuf.is_empty();
        if hung_up || nothing_left || self.peer_shut & SHUTDOWN_RCV != 0 {
            self.close_both(hung_up);
        } else if self.local_shut & SHUTDOWN_SEND == 0 {
            self.local_shut |= SHUTDOWN_SEND;
            self.owe_shutdown(SHUTDOWN_SEND);
        }
    }

    /// The host side is done: tell the guest, and wait for its RST.
    fn close_both(&mut self, hung_up: bool) {
        if hung_up {
            // Nobody will read what the guest still sends.
            self.txbuf.clear();
            self.reply_len = 0;
        }
        if self.local_shut != SHUTDOWN_BOTH {
            self.local_shut = SHUTDOWN_BOTH;
            self.owe_shutdown(SHUTDOWN_BOTH);
        }
    }

    fn owe_shutdown(&mut self, flags: u32) {
        self.shutdown_flags = flags;
        self.pending |= P_SHUTDOWN;
    }

    /// Readiness of the host socket (edge-triggered). `eof_coming`: the host shut its write side
    /// (EPOLLRDHUP); `hung_up`: it closed the socket (EPOLLHUP).
    pub fn host_event(
        &mut self,
        readable: bool,
        writable: bool,
        eof_coming: bool,
        hung_up: bool,
    ) -> Verdict {
        if readable || eof_coming || hung_up {
            self.readable = true;
        }
        if eof_coming || hung_up {
            // Reads go on until they return the EOF, whatever their size.
            self.eof_coming = true;
        }
        if writable || hung_up {
            self.writable = true;
        }
        let verdict = self.flush();
        if verdict != Verdict::Keep {
            return verdict;
        }
        if hung_up && self.state == State::LocalInit {
            // The host program gave up before the guest answered.
            return if self.pending & P_REQUEST != 0 {
                Verdict::Remove
            } else {
                Verdict::Reset
            };
        }
        if hung_up
            && self.state == State::Established
            && (self.local_shut & SHUTDOWN_SEND != 0 || self.peer_shut & SHUTDOWN_RCV != 0)
        {
            // Its EOF was already seen (or will never be read): the host is gone.
            self.close_both(true);
        }
        Verdict::Keep
    }

    /// Takes the credit fields every guest packet carries.
    fn peer_credit_from(&mut self, hdr: &Header) {
        let had_credit = self.peer_credit() > 0;
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = Wrapping(hdr.fwd_cnt);
        if self.peer_credit() > 0 && !had_credit {
            self.credit_requested = false;
        }
    }

    /// An RW packet (validated, `hdr.len > 0`) whose bytes may go to the host socket in one
    /// write with the ones before it: true (and its bytes are counted as received) when nothing
    /// is queued ahead of them and they are within the credit. Otherwise the packet must go
    /// through [`Connection::guest_packet`].
    pub fn accept_direct(&mut self, hdr: &Header) -> bool {
        let unforwarded = (self.tx_cnt - self.fwd_cnt).0 as usize;
        let ok = self.state == State::Established
            && self.stream.is_some()
            && self.peer_shut & SHUTDOWN_SEND == 0
            && self.txbuf.is_empty()
            && self.writable
            && unforwarded + hdr.len as usize <= CONN_BUF_ALLOC as usize;
        if ok {
            self.peer_credit_from(hdr);
            self.tx_cnt += Wrapping(hdr.len);
        }
        ok
    }

    /// Writes `bytes` bytes of accepted data (the buffers of `payload`) to the host socket; what
    /// it does not take is buffered.
    pub fn write_direct(&mut self, payload: &IoVecs, bytes: usize) -> Verdict {
        let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return Verdict::Keep;
        };
        let all = 0..payload.len();
        let mut written = 0;
        match iov::writev(fd, payload.get(all.clone())) {
            Ok(n) => {
                written = n.min(bytes);
                if written < bytes {
                    self.writable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Verdict::Reset,
        }
        self.fwd_cnt += Wrapping(written as u32);
        if written < bytes
            && self
                .txbuf
                .push_guest(payload, all, written, bytes - written)
                .is_err()
        {
            return Verdict::Reset;
        }
        self.credit_check();
        Verdict::Keep
    }

    /// A packet from the guest for this connection (already validated; RST and REQUEST are the
    /// owner's business). `payload` holds the `hdr.len` data bytes of an RW packet.
    pub fn guest_packet(
        &mut self,
        hdr: &Header,
        payload: &IoVecs,
        range: Range<usize>,
        now: Instant,
    ) -> Verdict {
        self.peer_credit_from(hdr);
        match (self.state, hdr.op) {
            (State::LocalInit, OP_RESPONSE) => {
                if self.pending & P_REQUEST != 0 {
                    // An answer to a request we have not sent.
                    return Verdict::Reset;
                }
                self.state = State::Established;
                self.expiry = None;
                let reply = format!("OK {}\n", self.key.local_port);
                if self.txbuf.push(reply.as_bytes()).is_err() {
                    return Verdict::Reset;
                }
                self.reply_len = self.txbuf.len();
                self.flush()
            }
            (State::Established, OP_RW) => self.guest_data(hdr, payload, range),
            (State::Established, OP_SHUTDOWN) => {
                self.peer_shut |= hdr.flags & SHUTDOWN_BOTH;
                if self.peer_shut == SHUTDOWN_BOTH && !self.txbuf.is_empty() {
                    // Give the host a while to take what is buffered.
                    self.expiry = Some(now + CLOSE_TIMEOUT);
                }
                self.flush()
            }
            (State::Established | State::PeerInit, OP_CREDIT_UPDATE) => Verdict::Keep,
            (State::Established | State::PeerInit, OP_CREDIT_REQUEST) => {
                self.pending |= P_CREDIT_UPDATE;
                Verdict::Keep
            }
            (State::Closing, OP_SHUTDOWN) => Verdict::Reset,
            (State::Closing, _) => {
                if self.rx_cnt == self.peer_fwd_cnt {
                    // The guest consumed everything we sent: nothing is lost by ending now.
                    Verdict::Reset
                } else {
                    Verdict::Keep
                }
            }
            // Anything else is out of order for the state (data before the handshake, a second
            // REQUEST or RESPONSE, ...).
            _ => Verdict::Reset,
        }
    }

    fn guest_data(&mut self, hdr: &Header, payload: &IoVecs, range: Range<usize>) -> Verdict {
        if self.peer_shut & SHUTDOWN_SEND != 0 {
            // Data after the guest promised to send no more.
            return Verdict::Reset;
        }
        let len = hdr.len as usize;
        if len == 0 {
            return Verdict::Keep;
        }
        let unforwarded = (self.tx_cnt - self.fwd_cnt).0 as usize;
        if unforwarded + len > CONN_BUF_ALLOC as usize {
            // Past the credit we gave it.
            return Verdict::Reset;
        }
        self.tx_cnt += Wrapping(hdr.len);
        let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return Verdict::Keep;
        };
        let mut written = 0;
        if self.txbuf.is_empty() && self.writable {
            match iov::writev(fd, payload.get(range.clone())) {
                Ok(n) => {
                    written = n.min(len);
                    if written < len {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Reset,
            }
        }
        self.fwd_cnt += Wrapping(written as u32);
        if written < len
            && self
                .txbuf
                .push_guest(payload, range, written, len - written)
                .is_err()
        {
            return Verdict::Reset;
        }
        self.credit_check();
        Verdict::Keep
    }

    /// Writes buffered data to the host socket and does what becomes possible once it is all
    /// written.
    fn flush(&mut self) -> Verdict {
        let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return Verdict::Keep;
        };
        while !self.txbuf.is_empty() && self.writable {
            let before = self.txbuf.len();
            match self.txbuf.flush_to(fd) {
                Ok(n) => {
                    let reply = n.min(self.reply_len);
                    self.reply_len -= reply;
                    self.fwd_cnt += Wrapping((n - reply) as u32);
                    if n < before {
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Reset,
            }
        }
        if !self.txbuf.is_empty() {
            self.credit_check();
            return Verdict::Keep;
        }
        if self.peer_shut & SHUTDOWN_SEND != 0 && !self.host_write_shut {
            if let Some(s) = &self.stream {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            self.host_write_shut = true;
        }
        if self.state == State::Established && self.peer_shut == SHUTDOWN_BOTH {
            // The guest is done both ways and everything reached the host.
            return Verdict::Reset;
        }
        if self.state == State::Established
            && self.peer_shut & SHUTDOWN_SEND != 0
            && self.local_shut & SHUTDOWN_SEND != 0
        {
            // Neither side sends any more.
            self.close_both(false);
        }
        self.credit_check();
        Verdict::Keep
    }

    /// Owes the guest a credit update once enough was forwarded since it last heard.
    fn credit_check(&mut self) {
        if (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD
            && self.state == State::Established
        {
            self.pending |= P_CREDIT_UPDATE;
        }
    }

    /// Owes a CREDIT_REQUEST when host data waits and the guest has no room (once per stall).
    pub fn check_stall(&mut self) {
        if self.readable
            && self.may_send_data()
            && self.peer_credit() == 0
            && !self.credit_requested
        {
            self.pending |= P_CREDIT_REQUEST;
        }
    }

    /// The expiry passed.
    pub fn expired(&mut self, now: Instant) -> Verdict {
        match self.expiry {
            Some(t) if t <= now => {
                self.expiry = None;
                Verdict::Reset
            }
            _ => Verdict::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const CID: u64 = 3;

    fn key() -> ConnKey {
        ConnKey {
            local_port: 1 << 30,
            peer_port: 52,
        }
    }

    fn hdr(op: u16, len: u32, flags: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port: 52,
            dst_port: 1 << 30,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    fn established() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Connection::new_local(key(), CID, a);
        assert_eq!(
            c.next_rx(),
            Some(RxNext::Control {
                op: OP_REQUEST,
                flags: 0
            })
        );
        let now = Instant::now();
        c.control_sent(OP_REQUEST, now);
        assert!(c.expiry.is_some());
        let empty = IoVecs::with_capacity(0);
        let v = c.guest_packet(&hdr(OP_RESPONSE, 0, 0, 4096, 0), &empty, 0..0, now);
        assert_eq!(v, Verdict::Keep);
        assert_eq!(c.state(), State::Established);
        assert!(c.expiry.is_none());
        let mut ok = [0u8; 14];
        (&b).read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"OK 1073741824\n");
        (c, b)
    }

    #[test]
    fn credit_bounds_what_goes_to_the_guest() {
        let (mut c, _b) = established();
        assert_eq!(c.peer_credit(), 4096);
        assert_eq!(c.next_rx(), Some(RxNext::Data { max: 4096 }));
        c.rx_cnt += Wrapping(4096);
        assert_eq!(c.peer_credit(), 0);
        assert!(!c.has_rx());
        c.check_stall();
        assert_eq!(
            c.next_rx(),
            Some(RxNext::Control {
                op: OP_CREDIT_REQUEST,
                flags: 0
            })
        );
        c.control_sent(OP_CREDIT_REQUEST, Instant::now());
        c.check_stall();
        assert!(!c.has_rx(), "one credit request per stall");
        // A guest claiming to have forwarded more than it got gets no credit.
        let empty = IoVecs::with_capacity(0);
        c.guest_packet(
            &hdr(OP_CREDIT_UPDATE, 0, 0, 4096, 8192),
            &empty,
            0..0,
            Instant::now(),
        );
        assert_eq!(c.peer_credit(), 0);
        c.guest_packet(
            &hdr(OP_CREDIT_UPDATE, 0, 0, 4096, 4096),
            &empty,
            0..0,
            Instant::now(),
        );
        assert_eq!(c.peer_credit(), 4096);
    }

    #[test]
    fn host_close_sends_shutdown_then_waits_for_rst() {
        let (mut c, b) = established();
        drop(b);
        assert_eq!(c.host_event(true, false, true, true), Verdict::Keep);
        let mut buf = [0u8; 16];
        let iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }];
        assert_eq!(c.read_data(&iov, 16), Ok(0));
        assert_eq!(
            c.next_rx(),
            Some(RxNext::Control {
                op: OP_SHUTDOWN,
                flags: SHUTDOWN_BOTH
            })
        );
        c.control_sent(OP_SHUTDOWN, Instant::now());
        assert_eq!(c.state(), State::Closing);
        assert!(c.expiry.is_some());
        let empty = IoVecs::with_capacity(0);
        assert_eq!(
            c.guest_packet(
                &hdr(OP_SHUTDOWN, 0, SHUTDOWN_BOTH, 0, 0),
                &empty,
                0..0,
                Instant::now()
            ),
            Verdict::Reset
        );
    }

    #[test]
    fn host_half_close_keeps_the_other_direction() {
        let (mut c, b) = established();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        let iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }];
        assert_eq!(c.read_data(&iov, 16), Ok(0));
        assert_eq!(
            c.next_rx(),
            Some(RxNext::Control {
                op: OP_SHUTDOWN,
                flags: SHUTDOWN_SEND
            })
        );
        c.control_sent(OP_SHUTDOWN, Instant::now());
        assert_eq!(c.state(), State::Established);
        // The guest finishes: SHUTDOWN(SEND) reaches the host as EOF, then both are done.
        let empty = IoVecs::with_capacity(0);
        c.guest_packet(
            &hdr(OP_SHUTDOWN, 0, SHUTDOWN_SEND, 4096, 0),
            &empty,
            0..0,
            Instant::now(),
        );
        let mut rest = Vec::new();
        (&b).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            c.next_rx(),
            Some(RxNext::Control {
                op: OP_SHUTDOWN,
                flags: SHUTDOWN_BOTH
            })
        );
    }

    #[test]
    fn out_of_order_packets_reset() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new_local(key(), CID, a);
        let empty = IoVecs::with_capacity(0);
        // RESPONSE before our REQUEST went out.
        assert_eq!(
            c.guest_packet(&hdr(OP_RESPONSE, 0, 0, 0, 0), &empty, 0..0, Instant::now()),
            Verdict::Reset
        );
        let (mut c, _b) = established();
        for op in [OP_RESPONSE, OP_REQUEST] {
            assert_eq!(
                c.guest_packet(&hdr(op, 0, 0, 0, 0), &empty, 0..0, Instant::now()),
                Verdict::Reset
            );
        }
    }

    #[test]
    fn request_timeout_resets() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new_local(key(), CID, a);
        let t0 = Instant::now();
        c.control_sent(OP_REQUEST, t0);
        assert_eq!(c.expired(t0), Verdict::Keep);
        assert_eq!(c.expired(t0 + REQUEST_TIMEOUT), Verdict::Reset);
    }

    #[test]
    fn guest_shutdown_rcv_stops_host_to_guest_data() {
        let (mut c, mut b) = established();
        b.write_all(b"data").unwrap();
        assert!(c.has_rx());
        let empty = IoVecs::with_capacity(0);
        c.guest_packet(
            &hdr(OP_SHUTDOWN, 0, SHUTDOWN_RCV, 4096, 0),
            &empty,
            0..0,
            Instant::now(),
        );
        assert!(!c.has_rx());
    }
}
