//! virtio-vsock with a Firecracker-compatible hybrid Unix-socket backend.
//!
//! - `device`: configuration space, activation/reset, and the RX/TX queue loops;
//! - `event_handler`: the device as an event-loop subscriber;
//! - `packet`: the packet header and its validation;
//! - `muxer`: the connection table, host listener and handshake, RX scheduling;
//! - `connection`: one stream's state machine and credit accounting;
//! - `txbuf`: guest data the host socket could not take yet;
//! - `unix`: the host-side Unix sockets;
//! - `iov`: guest buffers as iovecs for readv/writev.

mod connection;
mod device;
mod event_handler;
mod iov;
mod muxer;
mod packet;
mod txbuf;
mod unix;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use device::Vsock;

/// How the VMM asks for a vsock device.
#[derive(Clone, Debug)]
pub struct VsockConfig {
    pub guest_cid: u64,
    /// Host connects here and writes `CONNECT <port>\n`; guest connections to host port P
    /// reach `<uds_path>_<P>`.
    pub uds_path: PathBuf,
}
