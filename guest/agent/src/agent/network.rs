//! The VM's network, as the host's interfaces describe it. `lo` comes up (a container's namespace
//! always has it); each guest interface, found by the MAC of the host interface it stands for
//! (the VMM gives the virtio-net device that MAC), gets that interface's name, MTU and addresses;
//! then the routes go in. Names are first moved aside, so two interfaces may swap names.

use std::collections::BTreeMap;

use guest_protocol::{NetInterface, NetRoute};
use vmctl_netlink::{IpNet, Netlink};

use crate::Error;

/// Bounds on what one create may ask for (a VM has a handful of NICs).
const MAX_INTERFACES: usize = 32;
const MAX_ADDRESSES: usize = 64;
const MAX_ROUTES: usize = 1024;

pub fn configure(interfaces: &[NetInterface], routes: &[NetRoute]) -> Result<(), Error> {
    check(interfaces, routes)?;
    let mut nl = Netlink::open().map_err(net)?;
    let links = nl.links().map_err(net)?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        nl.set_up(lo.index, true).map_err(net)?;
    }
    let mut matched = Vec::with_capacity(interfaces.len());
    for want in interfaces {
        let link = links
            .iter()
            .find(|l| l.mac == Some(want.mac))
            .ok_or_else(|| {
                Error::Network(format!(
                    "no interface with MAC {} in the VM for {} (the VM has {})",
                    mac_text(&want.mac),
                    want.name,
                    links
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        nl.set_up(link.index, false).map_err(net)?;
        // Aside first: the kernel may already have given `want.name` to another of them.
        nl.set_name(link.index, &format!("vmnet{}", link.index))
            .map_err(net)?;
        matched.push((link.index, want));
    }
    let mut index_of = BTreeMap::new();
    for (index, want) in matched {
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
        index_of.insert(want.name.as_str(), index);
    }
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
