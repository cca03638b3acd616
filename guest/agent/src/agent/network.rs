//! The VM's network, as the host's interfaces describe it. `lo` comes up (a container's namespace
//! always has it); each guest interface, found by the MAC of the host interface it stands for
//! (the VMM gives the virtio-net device that MAC), gets that interface's name, MTU and addresses;
//! then the routes go in. Names are first moved aside, so two interfaces may swap names.
//! Spare interfaces (for host interfaces that appear later, `docker network connect`) wait in a
//! network namespace of the agent's own, out of the container's sight, until `add` brings one
//! into the VM's namespace as the new interface; `remove` sends it back.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use guest_protocol::{NetInterface, NetRoute};
use vmctl_netlink::{IpNet, Link, Netlink};

use crate::Error;

/// Bounds on what one create may ask for (a VM has a handful of NICs).
const MAX_INTERFACES: usize = 32;
const MAX_ADDRESSES: usize = 64;
const MAX_ROUTES: usize = 1024;

pub fn configure(
    interfaces: &[NetInterface],
    routes: &[NetRoute],
    spares: &[[u8; 6]],
) -> Result<(), Error> {
    check(interfaces, routes)?;
    if spares.len() > MAX_INTERFACES {
        return Err(Error::Invalid(format!(
            "network: {} spare interfaces (at most {MAX_INTERFACES})",
            spares.len()
        )));
    }
    let mut nl = Netlink::open().map_err(net)?;
    let links = nl.links().map_err(net)?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        nl.set_up(lo.index, true).map_err(net)?;
    }
    // Spares first, out of the way of the names the kernel gave and the container wants, and
    // out of its sight.
    for mac in spares {
        let link = find_by_mac(&links, mac, "a spare")?;
        nl.set_up(link.index, false).map_err(net)?;
        nl.set_name(link.index, &spare_name(link.index))
            .map_err(net)?;
        nl.set_netns(link.index, spare_netns()?.as_fd())
            .map_err(net)?;
    }
    let mut matched = Vec::with_capacity(interfaces.len());
    for want in interfaces {
        let link = find_by_mac(&links, &want.mac, &want.name)?;
        nl.set_up(link.index, false).map_err(net)?;
        // Aside first: the kernel may already have given `want.name` to another of them.
        nl.set_name(link.index, &format!("vmnet{}", link.index))
            .map_err(net)?;
        matched.push((link.index, want));
    }
    let mut index_of = BTreeMap::new();
    for (index, want) in matched {
        bring_up(&mut nl, index, want)?;
        index_of.insert(want.name.as_str(), index);
    }
    add_routes(&mut nl, routes, &index_of)
}

/// The spare interface with MAC `spare` becomes `want` (`docker network connect`).
pub fn add(spare: &[u8; 6], want: &NetInterface, routes: &[NetRoute]) -> Result<(), Error> {
    check(std::slice::from_ref(want), routes)?;
    let mut nl = Netlink::open().map_err(net)?;
    if nl.link_by_name(&want.name).map_err(net)?.is_some() {
        return Err(Error::Network(format!(
            "the VM already has an interface named {}",
            want.name
        )));
    }
    in_spare_netns(|spares, vm| {
        let links = spares.links().map_err(net)?;
        let link = find_by_mac(&links, spare, &want.name)?;
        spares.set_mac(link.index, want.mac).map_err(net)?;
        spares.set_netns(link.index, vm).map_err(net)
    })?;
    let links = nl.links().map_err(net)?;
    let link = find_by_mac(&links, &want.mac, &want.name)?;
    bring_up(&mut nl, link.index, want)?;
    add_routes(
        &mut nl,
        routes,
        &BTreeMap::from([(want.name.as_str(), link.index)]),
    )
}

/// Interface `name` is a spare again, down, without addresses, with MAC `spare`.
pub fn remove(name: &str, spare: &[u8; 6]) -> Result<(), Error> {
    let mut nl = Netlink::open().map_err(net)?;
    let link = nl
        .link_by_name(name)
        .map_err(net)?
        .ok_or_else(|| Error::Network(format!("the VM has no interface named {name}")))?;
    nl.set_up(link.index, false).map_err(net)?;
    for a in nl.addresses(link.index).map_err(net)? {
        nl.delete_address(link.index, a.net).map_err(net)?;
    }
    nl.set_mac(link.index, *spare).map_err(net)?;
    nl.set_name(link.index, &spare_name(link.index))
        .map_err(net)?;
    nl.set_netns(link.index, spare_netns()?.as_fd())
        .map_err(net)
}

/// The agent's network namespace for spare interfaces: the container shares the VM's, and
/// should see only its own interfaces there, as with runc. Made on first use, kept open.
fn spare_netns() -> Result<&'static File, Error> {
    static SPARES: OnceLock<File> = OnceLock::new();
    if let Some(ns) = SPARES.get() {
        return Ok(ns);
    }
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) takes no pointers; it moves only this thread, which ends here
            // (the namespace lives on through the descriptor).
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            File::open("/proc/thread-self/ns/net")
        })
        .join()
    });
    let ns = match made {
        Ok(Ok(ns)) => ns,
        Ok(Err(e)) => {
            return Err(Error::Network(format!(
                "cannot make a namespace for spare interfaces: {e}"
            )))
        }
        Err(_) => {
            return Err(Error::Network(
                "the spare namespace's thread panicked".into(),
            ))
        }
    };
    Ok(SPARES.get_or_init(|| ns))
}

/// Runs `f` with a netlink socket of the spare namespace and a descriptor of the VM's own.
fn in_spare_netns(
    f: impl FnOnce(&mut Netlink, BorrowedFd) -> Result<(), Error> + Send,
) -> Result<(), Error> {
    let spares = spare_netns()?;
    let vm = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::Network(format!("cannot open the VM's network namespace: {e}")))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on a namespace descriptor we hold; it moves only this thread,
            // which ends with the scope.
            if unsafe { libc::setns(spares.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::Network(format!(
                    "cannot enter the spare namespace: {}",
                    std::io::Error::last_os_error()
                )));
            }
            let mut nl = Netlink::open().map_err(net)?;
            f(&mut nl, vm.as_fd())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Network(
                "the spare namespace's thread panicked".into(),
            ))
        })
    })
}

fn spare_name(index: u32) -> String {
    format!("vmspare{index}")
}

fn find_by_mac<'a>(links: &'a [Link], mac: &[u8; 6], what: &str) -> Result<&'a Link, Error> {
    links.iter().find(|l| l.mac == Some(*mac)).ok_or_else(|| {
        Error::Network(format!(
            "no interface with MAC {} in the VM for {what} (the VM has {})",
            mac_text(mac),
            links
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Link `index` (down) gets `want`'s name, MTU and addresses, and comes up.
fn bring_up(nl: &mut Netlink, index: u32, want: &NetInterface) -> Result<(), Error> {
    nl.set_name(index, &want.name).map_err(net)?;
    if want.mtu > 0 {
        nl.set_mtu(index, want.mtu).map_err(net)?;
    }
    nl.set_up(index, true).map_err(net)?;
    for a in &want.addresses {
        nl.add_address(
            index,
            IpNet {
                addr: a.addr,
                prefix: a.prefix,
            },
        )
        .map_err(net)?;
    }
    Ok(())
}

fn add_routes(
    nl: &mut Netlink,
    routes: &[NetRoute],
    index_of: &BTreeMap<&str, u32>,
) -> Result<(), Error> {
    // Routes through a gateway need the gateway's own (link) route first.
    let (direct, via): (Vec<&NetRoute>, Vec<&NetRoute>) =
        routes.iter().partition(|r| r.gateway.is_none());
    for r in direct.into_iter().chain(via) {
        let index = *index_of.get(r.interface.as_str()).ok_or_else(|| {
            Error::Network(format!(
                "a route names interface {:?}, which is not given",
                r.interface
            ))
        })?;
        let destination = r.destination.map(|d| IpNet {
            addr: d.addr,
            prefix: d.prefix,
        });
        nl.add_route(destination, r.gateway, index).map_err(net)?;
    }
    Ok(())
}

fn check(interfaces: &[NetInterface], routes: &[NetRoute]) -> Result<(), Error> {
    let invalid = |why: String| Err(Error::Invalid(format!("network: {why}")));
    if interfaces.len() > MAX_INTERFACES || routes.len() > MAX_ROUTES {
        return invalid(format!(
            "{} interfaces and {} routes (at most {MAX_INTERFACES} and {MAX_ROUTES})",
            interfaces.len(),
            routes.len()
        ));
    }
    for i in interfaces {
        if i.name.is_empty()
            || i.name.len() > 15
            || i.name.contains(['/', ':', ' ', '\0'])
            || i.name == "."
            || i.name == ".."
            || i.name == "lo"
        {
            return invalid(format!("{:?} is not a usable interface name", i.name));
        }
        if i.mtu != 0 && !(68..=65535).contains(&i.mtu) {
            return invalid(format!("MTU {} of {} (68 to 65535)", i.mtu, i.name));
        }
        if i.addresses.len() > MAX_ADDRESSES {
            return invalid(format!(
                "{} has more than {MAX_ADDRESSES} addresses",
                i.name
            ));
        }
        if interfaces
            .iter()
            .filter(|o| o.name == i.name || o.mac == i.mac)
            .count()
            > 1
        {
            return invalid(format!("{} is given twice (by name or MAC)", i.name));
        }
    }
    let prefixes = interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().copied())
        .chain(routes.iter().filter_map(|r| r.destination));
    for p in prefixes {
        let max = if p.addr.is_ipv4() { 32 } else { 128 };
        if p.prefix > max {
            return invalid(format!("{}/{} is not a valid prefix", p.addr, p.prefix));
        }
    }
    Ok(())
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn net(e: vmctl_netlink::Error) -> Error {
    Error::Network(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_protocol::IpPrefix;

    fn iface(name: &str, mac: u8) -> NetInterface {
        NetInterface {
            name: name.into(),
            mac: [2, 0, 0, 0, 0, mac],
            mtu: 1500,
            addresses: vec![IpPrefix {
                addr: "10.0.0.2".parse().unwrap(),
                prefix: 24,
            }],
        }
    }

    #[test]
    fn a_sane_network_passes_the_checks() {
        let routes = [NetRoute {
            destination: None,
            gateway: Some("10.0.0.1".parse().unwrap()),
            interface: "eth0".into(),
        }];

        assert!(check(&[iface("eth0", 1), iface("eth1", 2)], &routes).is_ok());
    }

    #[test]
    fn bad_names_prefixes_mtus_and_duplicates_are_refused() {
        let mut long = iface("eth0", 1);
        long.name = "a-name-too-long-for-linux".into();
        let mut slash = iface("eth0", 1);
        slash.name = "a/b".into();
        let mut prefix = iface("eth0", 1);
        prefix.addresses[0].prefix = 33;
        let mut mtu = iface("eth0", 1);
        mtu.mtu = 20;

        for bad in [
            vec![long],
            vec![slash],
            vec![prefix],
            vec![mtu],
            vec![iface("eth0", 1), iface("eth0", 2)],
        ] {
            let err = check(&bad, &[]).unwrap_err().to_string();
            assert!(err.starts_with("network: "), "{err}");
        }
    }

    #[test]
    fn too_many_routes_are_refused() {
        let route = NetRoute {
            destination: None,
            gateway: None,
            interface: "eth0".into(),
        };

        let err = check(&[], &vec![route; MAX_ROUTES + 1])
            .unwrap_err()
            .to_string();

        assert!(err.contains("routes"), "{err}");
    }
}
