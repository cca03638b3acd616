//! The host <-> guest agent protocol of vmctl, one crate used by both sides.
//!
//! Everything travels over virtio-vsock stream connections:
//!
//! | port | who connects | what flows |
//! |---|---|---|
//! | [`AGENT_PORT`] | the host, to the agent | [`Request`]/[`Response`] frames; after an [`Request::Attach`] answered [`Response::Ok`], raw stdio bytes |
//! | [`READY_PORT`] | the agent, to the host | one [`Request::Hello`] frame when the agent listens, answered by a [`Response::Hello`] |
//! | [`FILES_PORT`] | the agent, to the host | 9P2000.L, one connection per mounted share (the share's tag is the attach name) |
//! | [`DNS_UDP_PORT`] | the agent, to the host | one DNS query a guest client sent over UDP and its answer, each framed as in DNS over TCP (a 2-byte length; RFC 1035 4.2.2); the host asks over UDP |
//! | [`DNS_TCP_PORT`] | the agent, to the host | a guest client's DNS-over-TCP connection, byte for byte |
//!
//! A frame is a 6-byte header, the payload's length (u32, little endian) and the protocol version
//! (u16, little endian), then the payload, a JSON document of at most [`MAX_FRAME`] bytes. A reader
//! never allocates more than that, whatever the header says; a frame it cannot use (too large, of
//! another version, not a message it knows) is an error the caller answers with
//! [`Response::Error`], never a crash.

mod frame;
mod messages;

pub use frame::{read_frame, write_frame, FrameError, HEADER_LEN, MAX_FRAME, VERSION};
pub use messages::*;

/// The agent's listening port for host requests.
pub const AGENT_PORT: u32 = 1024;
/// The host port the agent connects to once it is ready to take requests.
pub const READY_PORT: u32 = 1025;
/// The host port of the file server (9P2000.L); one connection per mount.
pub const FILES_PORT: u32 = 564;
/// The host ports that relay DNS to the name server [`ContainerSpec::dns_relay`] names, for
/// queries the guest's clients send over UDP and over TCP.
pub const DNS_UDP_PORT: u32 = 1053;
pub const DNS_TCP_PORT: u32 = 53;
/// The host's vsock context id (VMADDR_CID_HOST).
pub const HOST_CID: u32 = 2;
/// The guest's vsock context id in container VMs.
pub const GUEST_CID: u32 = 3;

/// The kernel command-line switch that makes vmctl-init run as the container agent.
pub const AGENT_CMDLINE_FLAG: &str = "vmctl.agent=1";
