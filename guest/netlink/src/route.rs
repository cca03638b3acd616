//! Routes of the main table: listing and adding them.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ipnet::family;
use crate::{Error, IpNet, Netlink};

/// A route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination network; `None` for a default route.
    pub destination: Option<IpNet>,
    /// The next hop, if the route has one.
    pub gateway: Option<IpAddr>,
    /// The output interface index, if the route has one.
    pub oif: Option<u32>,
    /// Who installed the route, one of the RTPROT_* constants.
    pub protocol: u8,
    /// The scope, one of the RT_SCOPE_* constants.
    pub scope: u8,
}

impl Netlink {
    /// Lists the IPv4 and IPv6 unicast routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>, Error> {
        let what = || "cannot list routes".to_string();
        let request = RouteNetlinkMessage::GetRoute(RouteMessage::default());
        let replies = self.socket.dump(request).map_err(|f| f.context(what()))?;
        let mut routes = Vec::new();
        for reply in replies {
            if let RouteNetlinkMessage::NewRoute(message) = reply {
                if let Some(route) = route(message).map_err(|reason| Error::Decode {
                    what: what(),
                    reason,
                })? {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    /// Adds a route to `destination` (`None`: a default route) through link `oif`, via `gateway`
    /// if given, to the main table, as RTPROT_BOOT; its scope is universe with a gateway, else link.
    ///
    /// An IPv4 destination must have no host bits set (the kernel answers EINVAL otherwise).
    pub fn add_route(
        &mut self,
        destination: Option<IpNet>,
        gateway: Option<IpAddr>,
        oif: u32,
    ) -> Result<(), Error> {
        let what = || describe(destination, gateway, oif);
        let message =
            route_message(destination, gateway, oif).map_err(|reason| Error::Invalid {
                what: what(),
                reason,
            })?;
        let request = RouteNetlinkMessage::NewRoute(message);
        let flags = NLM_F_CREATE | NLM_F_EXCL;
        self.socket
            .request(request, flags)
            .map_err(|f| f.context(what()))
    }
}

fn route_message(
    destination: Option<IpNet>,
    gateway: Option<IpAddr>,
    oif: u32,
) -> Result<RouteMessage, String> {
    if let Some(destination) = destination {
        destination.check()?;
    }
    let families = (destination.map(|net| family(net.addr)), gateway.map(family));
    let address_family = match families {
        (Some(destination), Some(gateway)) if destination != gateway => {
            return Err("the destination and the gateway are of different families".to_string())
        }
        (Some(family), _) | (None, Some(family)) => family,
        // "default dev X": IPv4, as with ip(8).
        (None, None) => AddressFamily::Inet,
    };
    let mut message = RouteMessage::default();
    message.header.address_family = address_family;
    message.header.destination_prefix_length = destination.map_or(0, |net| net.prefix);
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = if gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    message.header.kind = RouteType::Unicast;
    if let Some(destination) = destination {
        message
            .attributes
            .push(RouteAttribute::Destination(destination.addr.into()));
    }
    if let Some(gateway) = gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(gateway.into()));
    }
    message.attributes.push(RouteAttribute::Oif(oif));
    Ok(message)
}

/// The [`Route`] an RTM_NEWROUTE describes, if it is an IPv4 or IPv6 unicast route of the main table.
fn route(message: RouteMessage) -> Result<Option<Route>, String> {
    let header = &message.header;
    let ip = matches!(
        header.address_family,
        AddressFamily::Inet | AddressFamily::Inet6
    );
    if !ip || header.kind != RouteType::Unicast {
        return Ok(None);
    }
    let mut table = u32::from(header.table);
    let (mut destination, mut gateway, mut oif) = (None, None, None);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(value) => table = *value,
            RouteAttribute::Destination(value) => destination = ip_addr(value),
            RouteAttribute::Gateway(value) => gateway = ip_addr(value),
            RouteAttribute::Oif(value) => oif = Some(*value),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return Ok(None);
    }
    let prefix = header.destination_prefix_length;
    let destination = match (prefix, destination) {
        (0, _) => None,
        (prefix, Some(addr)) => Some(IpNet { addr, prefix }),
        (prefix, None) => {
            return Err(format!(
                "a route with a /{prefix} destination has no RTA_DST"
            ))
        }
    };
    Ok(Some(Route {
        destination,
        gateway,
        oif,
        protocol: header.protocol.into(),
        scope: header.scope.into(),
    }))
}

fn ip_addr(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(addr) => Some(IpAddr::V4(*addr)),
        RouteAddress::Inet6(addr) => Some(IpAddr::V6(*addr)),
        _ => None,
    }
}

/// "cannot add route default via 192.0.2.1 through link 3"
fn describe(destination: Option<IpNet>, gateway: Option<IpAddr>, oif: u32) -> String {
    let destination = destination.map_or("default".to_string(), |net| net.to_string());
    let gateway = gateway.map_or(String::new(), |gateway| format!(" via {gateway}"));
    format!("cannot add route {destination}{gateway} through link {oif}")
}
