//! IP addresses of links: listing and adding them.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ipnet::family;
use crate::{Error, IpNet, Netlink};

/// An IP address of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The address and its prefix length.
    pub net: IpNet,
    /// The scope, one of the RT_SCOPE_* constants.
    pub scope: u8,
}

impl Netlink {
    /// Lists the IPv4 and IPv6 addresses of link `index`.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<Address>, Error> {
        let what = || format!("cannot list the addresses of link {index}");
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        let replies = self.socket.dump(request).map_err(|f| f.context(what()))?;
        replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(message) => Some(message),
                _ => None,
            })
            .filter(|message| message.header.index == index)
            .filter(|message| {
                matches!(
                    message.header.family,
                    AddressFamily::Inet | AddressFamily::Inet6
                )
            })
            .map(|message| {
                address(message).map_err(|reason| Error::Decode {
                    what: what(),
                    reason,
                })
            })
            .collect()
    }

    /// Adds `net` to link `index`; an address the link already has is an error (EEXIST).
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<(), Error> {
        let what = || format!("cannot add {net} to link {index}");
        let message = address_message(index, net).map_err(|reason| Error::Invalid {
            what: what(),
            reason,
        })?;
        let request = RouteNetlinkMessage::NewAddress(message);
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.socket
            .request(request, flags)
            .map_err(|f| f.context(what()))
    }

    /// Removes `net` from link `index` (`ip addr del`); an address it lacks is an error.
    pub fn delete_address(&mut self, index: u32, net: IpNet) -> Result<(), Error> {
        let what = || format!("cannot delete {net} from link {index}");
        let message = address_message(index, net).map_err(|reason| Error::Invalid {
            what: what(),
            reason,
        })?;
        let request = RouteNetlinkMessage::DelAddress(message);
        self.socket
            .request(request, 0)
            .map_err(|f| f.context(what()))
    }
}

/// The RTM_NEWADDR or RTM_DELADDR body for `net` on link `index`.
fn address_message(index: u32, net: IpNet) -> Result<AddressMessage, String> {
    net.check()?;
    {
        let mut message = AddressMessage::default();
        message.header.family = family(net.addr);
        message.header.prefix_len = net.prefix;
        message.header.index = index;
        // As ip(8) does; the kernel computes IPv6 scopes itself.
        message.header.scope = if net.addr.is_loopback() {
            AddressScope::Host
        } else {
            AddressScope::Universe
        };
        message.attributes.push(AddressAttribute::Local(net.addr));
        message.attributes.push(AddressAttribute::Address(net.addr));
        Ok(message)
    }
}

/// The [`Address`] an RTM_NEWADDR describes: IFA_LOCAL is the local address when there is one
/// (IFA_ADDRESS is then the peer of a point-to-point link), else IFA_ADDRESS.
fn address(message: AddressMessage) -> Result<Address, String> {
    let (mut local, mut address) = (None::<IpAddr>, None::<IpAddr>);
    for attribute in message.attributes {
        match attribute {
            AddressAttribute::Local(value) => local = Some(value),
            AddressAttribute::Address(value) => address = Some(value),
            _ => {}
        }
    }
    let index = message.header.index;
    let addr = local.or(address).ok_or_else(|| {
        format!("an address of link {index} has neither IFA_LOCAL nor IFA_ADDRESS")
    })?;
    Ok(Address {
        net: IpNet {
            addr,
            prefix: message.header.prefix_len,
        },
        scope: message.header.scope.into(),
    })
}
