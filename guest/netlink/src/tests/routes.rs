use super::{in_new_netns, veth_pair_up};
use crate::{Error, IpNet, Netlink, Route};

fn net(addr: &str, prefix: u8) -> IpNet {
    IpNet {
        addr: addr.parse().unwrap(),
        prefix,
    }
}

/// The routes to IPv4 networks (an up link also has an fe80::/64 route).
fn ipv4_routes(netlink: &mut Netlink) -> Vec<Route> {
    let routes = netlink.routes().unwrap();
    routes
        .into_iter()
        .filter(|route| route.destination.is_some_and(|net| net.addr.is_ipv4()))
        .collect()
}

#[test]
fn add_route_default_via_gateway_is_listed() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);
        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();

        netlink
            .add_route(None, Some("192.0.2.1".parse().unwrap()), va.index)
            .unwrap();

        let expected = Route {
            destination: None,
            gateway: Some("192.0.2.1".parse().unwrap()),
            oif: Some(va.index),
            protocol: libc::RTPROT_BOOT,
            scope: libc::RT_SCOPE_UNIVERSE,
        };
        let routes = netlink.routes().unwrap();
        assert!(routes.contains(&expected), "{routes:?}");
    });
}

#[test]
fn add_route_without_gateway_is_link_scoped() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);

        netlink
            .add_route(Some(net("198.51.100.0", 24)), None, va.index)
            .unwrap();

        let expected = Route {
            destination: Some(net("198.51.100.0", 24)),
            gateway: None,
            oif: Some(va.index),
            protocol: libc::RTPROT_BOOT,
            scope: libc::RT_SCOPE_LINK,
        };
        assert_eq!(ipv4_routes(&mut netlink), vec![expected]);
    });
}

#[test]
fn add_route_ipv6_default_via_gateway_is_listed() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);
        netlink
            .add_address(va.index, net("2001:db8::2", 64))
            .unwrap();

        netlink
            .add_route(None, Some("2001:db8::1".parse().unwrap()), va.index)
            .unwrap();

        let expected = Route {
            destination: None,
            gateway: Some("2001:db8::1".parse().unwrap()),
            oif: Some(va.index),
            protocol: libc::RTPROT_BOOT,
            scope: libc::RT_SCOPE_UNIVERSE,
        };
        let routes = netlink.routes().unwrap();
        assert!(routes.contains(&expected), "{routes:?}");
    });
}

#[test]
fn routes_lists_the_prefix_routes_of_an_address_but_not_local_ones() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);

        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();

        let expected = Route {
            destination: Some(net("192.0.2.0", 24)),
            gateway: None,
            oif: Some(va.index),
            protocol: libc::RTPROT_KERNEL,
            scope: libc::RT_SCOPE_LINK,
        };
        assert_eq!(ipv4_routes(&mut netlink), vec![expected]);
    });
}

#[test]
fn add_route_with_a_gateway_of_another_family_is_invalid() {
    let mut netlink = Netlink::open().unwrap();

    let error = netlink
        .add_route(
            Some(net("198.51.100.0", 24)),
            Some("2001:db8::1".parse().unwrap()),
            1,
        )
        .unwrap_err();

    assert!(matches!(error, Error::Invalid { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot add route 198.51.100.0/24 via 2001:db8::1 through link 1: \
         the destination and the gateway are of different families"
    );
}

#[test]
fn add_route_via_an_unreachable_gateway_is_a_kernel_error() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);

        let error = netlink
            .add_route(None, Some("203.0.113.1".parse().unwrap()), va.index)
            .unwrap_err();

        assert!(matches!(error, Error::Kernel { .. }), "{error}");
        let expected = format!(
            "cannot add route default via 203.0.113.1 through link {}: ",
            va.index
        );
        assert!(error.to_string().starts_with(&expected), "{error}");
    });
}
