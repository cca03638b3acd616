use std::net::IpAddr;

use super::{in_new_netns, veth_pair};
use crate::{Address, Error, IpNet, Netlink};

fn net(addr: &str, prefix: u8) -> IpNet {
    IpNet {
        addr: addr.parse().unwrap(),
        prefix,
    }
}

#[test]
fn add_address_ipv4_is_listed() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();

        let expected = Address {
            net: net("192.0.2.2", 24),
            scope: libc::RT_SCOPE_UNIVERSE,
        };
        assert_eq!(netlink.addresses(va.index).unwrap(), vec![expected]);
    });
}

#[test]
fn add_address_ipv6_is_listed() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        netlink
            .add_address(va.index, net("2001:db8::2", 64))
            .unwrap();

        let expected = Address {
            net: net("2001:db8::2", 64),
            scope: libc::RT_SCOPE_UNIVERSE,
        };
        assert_eq!(netlink.addresses(va.index).unwrap(), vec![expected]);
    });
}

#[test]
fn addresses_lists_loopback_addresses_with_host_scope() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let lo = netlink.link_by_name("lo").unwrap().unwrap();
        netlink.set_up(lo.index, true).unwrap();

        let addresses = netlink.addresses(lo.index).unwrap();

        let loopback: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let listed: Vec<IpAddr> = addresses.iter().map(|address| address.net.addr).collect();
        assert_eq!(listed, loopback);
        assert!(addresses
            .iter()
            .all(|address| address.scope == libc::RT_SCOPE_HOST));
    });
}

#[test]
fn addresses_of_another_link_are_not_listed() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, vb) = veth_pair(&mut netlink);
        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();

        let addresses = netlink.addresses(vb.index).unwrap();

        assert_eq!(addresses, vec![]);
    });
}

#[test]
fn add_address_twice_is_a_file_exists_error() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);
        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();

        let error = netlink
            .add_address(va.index, net("192.0.2.2", 24))
            .unwrap_err();

        let Error::Kernel { source, .. } = &error else {
            panic!("not a kernel error: {error}")
        };
        assert_eq!(source.raw_os_error(), Some(libc::EEXIST));
        let expected = format!(
            "cannot add 192.0.2.2/24 to link {}: File exists (os error 17)",
            va.index
        );
        assert!(error.to_string().starts_with(&expected), "{error}");
    });
}

#[test]
fn add_address_with_a_too_long_prefix_is_invalid() {
    let mut netlink = Netlink::open().unwrap();

    let error = netlink.add_address(1, net("192.0.2.2", 33)).unwrap_err();

    assert!(matches!(error, Error::Invalid { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot add 192.0.2.2/33 to link 1: prefix length 33 is longer than 32"
    );
}

#[test]
fn delete_address_removes_it_from_the_listing() {
    in_new_netns(|| {
        // Arrange
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);
        netlink.add_address(va.index, net("192.0.2.2", 24)).unwrap();
        // Act
        netlink
            .delete_address(va.index, net("192.0.2.2", 24))
            .unwrap();
        // Assert
        assert_eq!(netlink.addresses(va.index).unwrap(), vec![]);
        let again = netlink.delete_address(va.index, net("192.0.2.2", 24));
        assert!(matches!(again, Err(Error::Kernel { .. })), "{again:?}");
    });
}
