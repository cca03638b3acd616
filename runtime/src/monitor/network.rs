//! The container's network namespace, carried into its VM (Kata's "tc filter" model). For each
//! Ethernet interface the namespace holds when the VM is built (Docker's veth `eth0`, moved in by
//! its prestart hook before that), the VM gets a virtio-net device on a tap of its own with the
//! interface's MAC, and tc redirects every frame arriving on either of the two out of the other:
//! the guest is on the container's network as the namespace was. The interface's addresses and
//! routes go to the agent, which gives them to the guest's interface; the namespace keeps its
//! copies, unused (every frame on the interface goes to the tap before its stack sees it).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use guest_protocol::{IpPrefix, NetInterface, NetRoute};
use vmctl_netlink::{Flow, Link, Netlink, Route};

use crate::Error;

/// At most this many interfaces are carried into a VM, spares included.
const MAX_NICS: usize = 8;
/// Spare virtio-net devices a VM gets for interfaces that appear in its namespace after boot.
const SPARE_NICS: usize = 2;
/// Routes the kernel made itself (an address's prefix route): the guest's kernel makes its own.
const RTPROT_KERNEL: u8 = 2;
/// The namespace's own ephemeral ports, 0xf000-0xffff: the guest's kernel takes its own from
/// 32768-60999 (Linux's default), so an answer to one of these is the namespace's.
const OWN_PORTS: (u16, u16) = (0xf000, 0xf000);
const OWN_PORT_RANGE: &str = "61440 65535";
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// One interface of the namespace and the tap that stands for it.
#[derive(Clone, Debug)]
pub struct Nic {
    pub host_index: u32,
    pub tap: String,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// What the namespace holds: the interfaces to carry, and the agent's view of them. Dropping it
/// undoes [`Network::connect`] on the namespace's interfaces, which may outlive the VM (a joined
/// namespace); the taps' side goes with the taps.
#[derive(Debug, Default)]
pub struct Network {
    pub nics: Vec<Nic>,
    pub interfaces: Vec<NetInterface>,
    pub routes: Vec<NetRoute>,
    /// Taps for interfaces that appear later (`docker network connect`), see `hotplug`.
    pub spares: Vec<Spare>,
    /// Interfaces that got our ingress qdisc.
    redirected: Arc<Mutex<Vec<u32>>>,
}

/// A virtio-net device held for an interface that appears later, and its placeholder MAC.
#[derive(Clone, Debug)]
pub struct Spare {
    pub tap: String,
    pub mac: [u8; 6],
}

/// Reads the calling thread's network namespace.
pub fn discover() -> Result<Network, Error> {
    let mut nl = Netlink::open().map_err(net)?;
    let links = nl.links().map_err(net)?;
    if links.iter().any(is_our_tap) {
        return Err(Error::Unsupported(
            "the network namespace is another vmctl container's (--network container:X): its \
             interfaces belong to that container's VM, and a second VM cannot share them; put \
             both containers on a user-defined network instead"
                .into(),
        ));
    }
    let carried: Vec<&Link> = links.iter().filter(|l| carried(l)).collect();
    if carried.len() > MAX_NICS {
        return Err(Error::Unsupported(format!(
            "{} network interfaces in the container's namespace (a VM takes at most {MAX_NICS})",
            carried.len()
        )));
    }
    let routes = nl.routes().map_err(net)?;
    let mut network = Network::default();
    for (i, link) in carried.into_iter().enumerate() {
        let Some((interface, link_routes)) = describe(&mut nl, link, &routes)? else {
            continue;
        };
        network.nics.push(Nic {
            host_index: link.index,
            tap: format!("vmtap{i}"),
            mac: interface.mac,
            mtu: link.mtu,
        });
        network.interfaces.push(interface);
        network.routes.extend(link_routes);
    }
    // A namespace without interfaces (`--network none`) is never connected to one later.
    let first = network.nics.len();
    let spares = if first == 0 { 0 } else { SPARE_NICS };
    for i in 0..spares.min(MAX_NICS - first) {
        network.spares.push(Spare {
            tap: format!("vmtap{}", first + i),
            // Locally administered, and never a container's: the guest sees it only while spare.
            mac: [0x0e, b'v', b'm', b's', b'p', i as u8],
        });
    }
    Ok(network)
}

/// What the agent needs of host interface `link`: its name, MAC, MTU and addresses, and the
/// routes through it; `None` for a link without a MAC.
pub fn describe(
    nl: &mut Netlink,
    link: &Link,
    routes: &[Route],
) -> Result<Option<(NetInterface, Vec<NetRoute>)>, Error> {
    let Some(mac) = link.mac else { return Ok(None) };
    let addresses = nl
        .addresses(link.index)
        .map_err(net)?
        .into_iter()
        .filter(|a| !is_link_local(a.net.addr))
        .map(|a| IpPrefix {
            addr: a.net.addr,
            prefix: a.net.prefix,
        })
        .collect();
    let interface = NetInterface {
        name: link.name.clone(),
        mac,
        mtu: link.mtu,
        addresses,
    };
    let routes = routes
        .iter()
        .filter(|r| r.oif == Some(link.index))
        .filter(|r| {
            r.protocol != RTPROT_KERNEL
                && !r
                    .destination
                    .is_some_and(|d| is_link_local(d.addr) || d.addr.is_multicast())
        })
        .map(|r| NetRoute {
            destination: r.destination.map(|d| IpPrefix {
                addr: d.addr,
                prefix: d.prefix,
            }),
            gateway: r.gateway,
            interface: link.name.clone(),
        })
        .collect();
    Ok(Some((interface, routes)))
}

impl Network {
    /// Joins each interface to its tap, once the VMM has opened the taps (before the guest runs).
    /// With `own_dns`, the namespace keeps the DNS answers to its own queries (Docker's embedded
    /// name server forwards from it) and a copy of its neighbours' replies, which it needs to
    /// send them.
    pub fn connect(&mut self, own_dns: bool) -> Result<(), Error> {
        if self.nics.is_empty() {
            return Ok(());
        }
        let mut nl = Netlink::open().map_err(net)?;
        for nic in &self.nics {
            join(
                &mut nl,
                nic.host_index,
                &nic.tap,
                nic.mtu,
                own_dns,
                &self.redirected,
            )?;
        }
        if own_dns {
            std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", OWN_PORT_RANGE)
                .map_err(|e| Error::io("cannot set the namespace's ip_local_port_range", e))?;
        }
        Ok(())
    }

    /// The interfaces that got our ingress qdisc, shared with whoever joins more later.
    pub fn redirected(&self) -> Arc<Mutex<Vec<u32>>> {
        self.redirected.clone()
    }
}

/// Joins host interface `host_index` to tap `tap`: the tap gets its MTU and comes up, and each
/// one's ingress leaves through the other (see [`Network::connect`] for `own_dns`).
pub fn join(
    nl: &mut Netlink,
    host_index: u32,
    tap: &str,
    mtu: u32,
    own_dns: bool,
    redirected: &Mutex<Vec<u32>>,
) -> Result<(), Error> {
    let tap = nl
        .link_by_name(tap)
        .map_err(net)?
        .ok_or_else(|| Error::Internal(format!("tap {tap} went away")))?;
    nl.set_mtu(tap.index, mtu).map_err(net)?;
    nl.set_up(tap.index, true).map_err(net)?;
    nl.set_up(host_index, true).map_err(net)?;
    nl.add_ingress_qdisc(host_index).map_err(net)?;
    lock(redirected).push(host_index);
    nl.redirect_ingress(host_index, tap.index).map_err(net)?;
    nl.add_ingress_qdisc(tap.index).map_err(net)?;
    nl.redirect_ingress(tap.index, host_index).map_err(net)?;
    if own_dns {
        for (priority, (flow, copy)) in (1..).zip(own_flows()) {
            nl.keep_ingress(host_index, priority, flow, copy.then_some(tap.index))
                .map_err(net)?;
        }
    }
    Ok(())
}

/// Undoes [`join`] on the tap's side (the host interface is gone, and its filters with it):
/// the tap goes down, without its redirect.
pub fn part(
    nl: &mut Netlink,
    host_index: u32,
    tap: &str,
    redirected: &Mutex<Vec<u32>>,
) -> Result<(), Error> {
    lock(redirected).retain(|&i| i != host_index);
    if let Some(tap) = nl.link_by_name(tap).map_err(net)? {
        nl.delete_ingress_qdisc(tap.index).map_err(net)?;
        nl.set_up(tap.index, false).map_err(net)?;
    }
    Ok(())
}

fn lock(m: &Mutex<Vec<u32>>) -> std::sync::MutexGuard<'_, Vec<u32>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Network {
    fn drop(&mut self) {
        let redirected = std::mem::take(&mut *lock(&self.redirected));
        if redirected.is_empty() {
            return;
        }
        if let Ok(mut nl) = Netlink::open() {
            for &index in &redirected {
                let _ = nl.delete_ingress_qdisc(index);
            }
        }
    }
}

/// What the namespace keeps of an interface's ingress for itself, and whether the guest gets a
/// copy: neighbours' replies (both need them), and answers from port 53 to its own ports.
fn own_flows() -> Vec<(Flow, bool)> {
    let mut flows = vec![
        (Flow::Arp, true),
        (
            Flow::Icmpv6 {
                kind: NEIGHBOUR_ADVERTISEMENT,
            },
            true,
        ),
    ];
    for ipv6 in [false, true] {
        for tcp in [false, true] {
            let ports = Flow::Ports {
                ipv6,
                tcp,
                src_port: 53,
                dst_port: OWN_PORTS.0,
                dst_mask: OWN_PORTS.1,
            };
            flows.push((ports, false));
        }
    }
    flows
}

/// Ethernet interfaces other than our own taps (a tap is the VMM's end, never a container's).
pub fn carried(link: &Link) -> bool {
    link.link_type == libc::ARPHRD_ETHER
        && link.name != "lo"
        && link.kind.as_deref() != Some("tun")
        && link.mac.is_some()
}

/// A tap a VMM of ours made (`vmtapN`): the namespace already carries a VM.
fn is_our_tap(link: &Link) -> bool {
    link.kind.as_deref() == Some("tun") && link.name.starts_with("vmtap")
}

/// fe80::/10: each side makes its own from the MAC.
fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

fn net(e: vmctl_netlink::Error) -> Error {
    Error::Network(e.to_string())
}
