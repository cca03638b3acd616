//! A NETLINK_ROUTE socket that sends one request at a time and reads its whole reply.

use std::io;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, SocketAddr};

use crate::error::Failure;
use crate::frame::{frames, Body};

/// Room for one datagram; the kernel's dump datagrams are at most 32 KiB unless one message
/// needs more, in which case the buffer grows.
const RECV_BUFFER: usize = 64 * 1024;
/// How often a dump that concurrent changes made inconsistent is tried.
const DUMP_ATTEMPTS: usize = 5;

pub(crate) struct Socket {
    socket: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens a socket of the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Socket> {
        let mut socket = netlink_sys::Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Best effort: both only shape error replies (no echo of the request, the kernel's
        // explanation added), and kernels before 4.12 lack them.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(Socket {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Sends `message` with NLM_F_REQUEST|NLM_F_ACK|`flags` and waits for its ACK.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), Failure> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        loop {
            self.recv()?;
            for frame in frames(&self.buf) {
                let frame = frame?;
                if frame.seq != seq {
                    continue;
                }
                match frame.body {
                    Body::Ack => return Ok(()),
                    Body::Error { errno, message } => {
                        return Err(Failure::Kernel { errno, message })
                    }
                    Body::Done | Body::Noop | Body::Message(_) => {}
                }
            }
        }
    }

    /// Sends `message` with NLM_F_REQUEST|NLM_F_DUMP and returns every message of the reply.
    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        for _ in 0..DUMP_ATTEMPTS {
            if let Some(messages) = self.dump_once(message.clone())? {
                return Ok(messages);
            }
        }
        Err(Failure::Kernel {
            errno: libc::EINTR,
            message: Some(format!(
                "the dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"
            )),
        })
    }

    /// One dump, read to its NLMSG_DONE; `None` when the kernel flagged it inconsistent.
    fn dump_once(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Option<Vec<RouteNetlinkMessage>>, Failure> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut messages = Vec::new();
        let mut interrupted = false;
        let mut undecodable = None;
        loop {
            self.recv()?;
            for frame in frames(&self.buf) {
                let frame = frame?;
                if frame.seq != seq {
                    continue;
                }
                interrupted |= frame.flags & NLM_F_DUMP_INTR != 0;
                match frame.body {
                    Body::Message(bytes) => {
                        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                            Ok(NetlinkMessage {
                                payload: NetlinkPayload::InnerMessage(message),
                                ..
                            }) => messages.push(message),
                            Ok(_) => {}
                            // Keep reading to the end of the dump, so that nothing of it is left queued.
                            Err(e) => {
                                undecodable.get_or_insert(e.to_string());
                            }
                        }
                    }
                    Body::Done if interrupted => return Ok(None),
                    Body::Done => {
                        return match undecodable {
                            Some(reason) => Err(Failure::Decode(reason)),
                            None => Ok(Some(messages)),
                        }
                    }
                    Body::Error { errno, message } => {
                        return Err(Failure::Kernel { errno, message })
                    }
                    Body::Ack | Body::Noop => {}
                }
            }
        }
    }

    /// Sends `message` with `flags` and the next sequence number, which it returns.
    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, Failure> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::from(message);
        packet.header.flags = flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        loop {
            match self.socket.send(&bytes, 0) {
                Ok(sent) if sent == bytes.len() => return Ok(self.seq),
                Ok(sent) => {
                    let short = format!("sent {sent} of {} bytes", bytes.len());
                    return Err(Failure::Io(io::Error::new(io::ErrorKind::WriteZero, short)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// Reads the next datagram, whole, into `self.buf`.
    fn recv(&mut self) -> Result<(), Failure> {
        loop {
            self.buf.clear();
            // MSG_TRUNC makes recv(2) tell the datagram's real size.
            let len = match self
                .socket
                .recv(&mut self.buf, libc::MSG_PEEK | libc::MSG_TRUNC)
            {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Io(e)),
            };
            self.buf.clear();
            self.buf.reserve(len);
            match self.socket.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(received) if received <= self.buf.len() => return Ok(()),
                Ok(received) => {
                    let reason = format!(
                        "a datagram of {received} bytes did not fit in {}",
                        self.buf.len()
                    );
                    return Err(Failure::Decode(reason));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }
}
