//! A small synchronous rtnetlink client for both sides of vmctl.
//!
//! The host runtime uses it inside a container's network namespace to list links, addresses
//! and routes and to redirect a veth's ingress to a tap; the guest agent uses it to configure
//! the VM's links, addresses and routes.
//!
//! A [`Netlink`] talks to the network namespace of the thread that opened it, whichever thread
//! uses it later. Each call sends one request and reads its whole reply: an ACK for changes
//! (NLM_F_REQUEST|NLM_F_ACK, plus NLM_F_CREATE|NLM_F_EXCL for additions), every part of a dump up
//! to its NLMSG_DONE for listings. Nothing the kernel sends makes it panic: a reply it cannot
//! decode is an [`Error::Decode`].

mod address;
mod changes;
mod error;
mod frame;
mod ipnet;
mod keep;
mod link;
mod route;
mod socket;
mod tc;
#[cfg(test)]
mod tests;

pub use address::Address;
pub use changes::Changes;
pub use error::Error;
pub use ipnet::IpNet;
pub use keep::Flow;
pub use link::Link;
pub use route::Route;

/// A NETLINK_ROUTE socket of the opening thread's network namespace, with its sequence counter.
pub struct Netlink {
    socket: socket::Socket,
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, Error> {
        let socket = socket::Socket::open().map_err(Error::Socket)?;
        Ok(Netlink { socket })
    }
}
