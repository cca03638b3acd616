//! Network interfaces: listing them, and setting their state, MTU, name and MAC address.

use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::{Error, Netlink};

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The interface name, e.g. "eth0".
    pub name: String,
    /// The hardware address, when the link has an Ethernet-sized one (`lo`'s is all zeros).
    pub mac: Option<[u8; 6]>,
    /// The MTU.
    pub mtu: u32,
    /// Whether the link is administratively up (IFF_UP).
    pub up: bool,
    /// The driver kind (IFLA_INFO_KIND): "veth", "tun", ...; `None` for `lo` and physical links.
    pub kind: Option<String>,
    /// The link layer type, one of the ARPHRD_* constants.
    pub link_type: u16,
}

impl Netlink {
    /// Lists every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let what = || "cannot list links".to_string();
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let replies = self.socket.dump(request).map_err(|f| f.context(what()))?;
        replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Some(message),
                _ => None,
            })
            .map(|message| {
                link(message).map_err(|reason| Error::Decode {
                    what: what(),
                    reason,
                })
            })
            .collect()
    }

    /// The link named `name`, if there is one.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, Error> {
        Ok(self.links()?.into_iter().find(|link| link.name == name))
    }

    /// Brings link `index` up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), Error> {
        let mut message = link_message(index);
        message.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        message.header.change_mask = LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        self.set_link(message, || format!("cannot set link {index} {state}"))
    }

    /// Sets the MTU of link `index`.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), Error> {
        let mut message = link_message(index);
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(message, || {
            format!("cannot set the MTU of link {index} to {mtu}")
        })
    }

    /// Renames link `index`; the link must be down (older kernels refuse to rename an up link
    /// with EBUSY, newer ones such as 6.18 allow it).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<(), Error> {
        let what = || format!("cannot rename link {index} to {name:?}");
        if name.contains('\0') {
            let reason = "a link name cannot contain NUL".to_string();
            return Err(Error::Invalid {
                what: what(),
                reason,
            });
        }
        let mut message = link_message(index);
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.set_link(message, what)
    }

    /// Sets the MAC address of link `index`.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), Error> {
        let mut message = link_message(index);
        message
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
        self.set_link(message, || {
            format!(
                "cannot set the MAC address of link {index} to {}",
                format_mac(mac)
            )
        })
    }

    /// Moves link `index` to the network namespace `netns` (a descriptor of one, e.g. an open
    /// `/proc/PID/ns/net`); there it keeps its name, which must be free.
    pub fn set_netns(&mut self, index: u32, netns: BorrowedFd) -> Result<(), Error> {
        let mut message = link_message(index);
        message
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.set_link(message, || {
            format!("cannot move link {index} to another network namespace")
        })
    }

    fn set_link(
        &mut self,
        message: LinkMessage,
        what: impl FnOnce() -> String,
    ) -> Result<(), Error> {
        let request = RouteNetlinkMessage::SetLink(message);
        self.socket
            .request(request, 0)
            .map_err(|f| f.context(what()))
    }
}

fn link_message(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
}

/// The [`Link`] an RTM_NEWLINK describes.
fn link(message: LinkMessage) -> Result<Link, String> {
    let index = message.header.index;
    let (mut name, mut mac, mut mtu, mut kind) = (None, None, None, None);
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(value) => name = Some(value),
            LinkAttribute::Address(value) => mac = <[u8; 6]>::try_from(value.as_slice()).ok(),
            LinkAttribute::Mtu(value) => mtu = Some(value),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(value) => Some(value.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    Ok(Link {
        index,
        name: name.ok_or_else(|| format!("link {index} has no IFLA_IFNAME"))?,
        mac,
        mtu: mtu.ok_or_else(|| format!("link {index} has no IFLA_MTU"))?,
        up: message.header.flags.contains(LinkFlags::Up),
        kind,
        link_type: message.header.link_layer_type.into(),
    })
}

fn format_mac(mac: [u8; 6]) -> String {
    let bytes: Vec<String> = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    bytes.join(":")
}
