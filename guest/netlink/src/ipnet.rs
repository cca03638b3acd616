//! An IP address with a prefix length.

use std::fmt;
use std::net::IpAddr;

use netlink_packet_route::AddressFamily;

/// An IP address with a prefix length, e.g. `10.0.0.2/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The address; for a route's destination, the network address.
    pub addr: IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix: u8,
}

impl IpNet {
    /// Fails with the reason when the prefix is too long for the address family.
    pub(crate) fn check(&self) -> Result<(), String> {
        let max = match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if self.prefix > max {
            return Err(format!(
                "prefix length {} is longer than {max}",
                self.prefix
            ));
        }
        Ok(())
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The netlink address family of `addr`.
pub(crate) fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}
