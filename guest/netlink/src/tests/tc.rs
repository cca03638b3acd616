use std::time::Duration;

use super::fixtures::{carries, test_frame, udp_carries, udp_frame, PacketSocket, Tap};
use super::{in_new_netns, link, run, veth_pair_up};
use crate::{Error, Flow, Link, Netlink};

/// How long a frame that should arrive may take.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long to wait for a frame that should not arrive.
const STAYS_AWAY: Duration = Duration::from_millis(500);

/// A veth pair, both ends up, `va` with an ingress qdisc; a tap, up; a packet socket on `vb`
/// that sends frames into `va`.
struct VethToTap {
    netlink: Netlink,
    va: Link,
    vb: Link,
    tap: Tap,
    tap_link: Link,
    sender: PacketSocket,
}

fn veth_to_tap() -> VethToTap {
    let mut netlink = Netlink::open().unwrap();
    let (va, vb) = veth_pair_up(&mut netlink);
    let tap = Tap::create("tap0").unwrap();
    let tap_link = link(&mut netlink, "tap0");
    netlink.set_up(tap_link.index, true).unwrap();
    let sender = PacketSocket::bind(vb.index).unwrap();
    netlink.add_ingress_qdisc(va.index).unwrap();
    VethToTap {
        netlink,
        va,
        vb,
        tap,
        tap_link,
        sender,
    }
}

#[test]
fn redirect_ingress_sends_frames_entering_the_veth_to_the_tap() {
    in_new_netns(|| {
        let VethToTap {
            mut netlink,
            va,
            vb,
            mut tap,
            tap_link,
            sender,
        } = veth_to_tap();
        netlink.redirect_ingress(va.index, tap_link.index).unwrap();
        sender
            .send(&test_frame(vb.mac.unwrap(), b"redirected"))
            .unwrap();

        assert!(tap.receives(|frame| carries(frame, b"redirected"), ARRIVES));
        let filters = run("tc", "filter show dev va ingress");
        assert!(
            filters.contains("mirred (Egress Redirect to device tap0)"),
            "{filters}"
        );
    });
}

#[test]
fn delete_ingress_qdisc_removes_the_redirect() {
    in_new_netns(|| {
        let VethToTap {
            mut netlink,
            va,
            vb,
            mut tap,
            tap_link,
            sender,
        } = veth_to_tap();
        netlink.redirect_ingress(va.index, tap_link.index).unwrap();
        sender
            .send(&test_frame(vb.mac.unwrap(), b"before delete"))
            .unwrap();
        assert!(
            tap.receives(|frame| carries(frame, b"before delete"), ARRIVES),
            "the redirect never worked"
        );

        netlink.delete_ingress_qdisc(va.index).unwrap();
        sender
            .send(&test_frame(vb.mac.unwrap(), b"after delete"))
            .unwrap();

        assert!(!tap.receives(|frame| carries(frame, b"after delete"), STAYS_AWAY));
        let qdiscs = run("tc", "qdisc show dev va");
        assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    });
}

#[test]
fn add_ingress_qdisc_is_shown_by_tc() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);

        netlink.add_ingress_qdisc(va.index).unwrap();

        let qdiscs = run("tc", "qdisc show dev va");
        assert!(
            qdiscs.contains("qdisc ingress ffff: parent ffff:fff1"),
            "{qdiscs}"
        );
    });
}

#[test]
fn add_ingress_qdisc_twice_is_a_file_exists_error() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);
        netlink.add_ingress_qdisc(va.index).unwrap();

        let error = netlink.add_ingress_qdisc(va.index).unwrap_err();

        let Error::Kernel { source, .. } = &error else {
            panic!("not a kernel error: {error}")
        };
        assert_eq!(source.raw_os_error(), Some(libc::EEXIST), "{error}");
    });
}

#[test]
fn delete_ingress_qdisc_without_one_is_ok() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair_up(&mut netlink);

        let result = netlink.delete_ingress_qdisc(va.index);

        assert!(result.is_ok(), "{result:?}");
    });
}

#[test]
fn redirect_ingress_without_an_ingress_qdisc_is_a_kernel_error() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, vb) = veth_pair_up(&mut netlink);

        let error = netlink.redirect_ingress(va.index, vb.index).unwrap_err();

        assert!(matches!(error, Error::Kernel { .. }), "{error}");
        let expected = format!(
            "cannot redirect the ingress of link {} to link {}: ",
            va.index, vb.index
        );
        assert!(error.to_string().starts_with(&expected), "{error}");
    });
}

/// UDP from port 53 to a port in 0xf000-0xffff.
const DNS_ANSWERS: Flow = Flow::Ports {
    ipv6: false,
    tcp: false,
    src_port: 53,
    dst_port: 0xf000,
    dst_mask: 0xf000,
};

#[test]
fn keep_ingress_keeps_matching_packets_out_of_the_redirect() {
    in_new_netns(|| {
        // Arrange
        let VethToTap {
            mut netlink,
            va,
            vb,
            mut tap,
            tap_link,
            sender,
        } = veth_to_tap();
        netlink.redirect_ingress(va.index, tap_link.index).unwrap();
        // Act
        netlink
            .keep_ingress(va.index, 1, DNS_ANSWERS, None)
            .unwrap();
        let mac = vb.mac.unwrap();
        sender.send(&udp_frame(mac, 53, 61500, b"kept")).unwrap();
        sender
            .send(&udp_frame(mac, 53, 40000, b"passed on"))
            .unwrap();
        // Assert
        assert!(tap.receives(|f| udp_carries(f, b"passed on"), ARRIVES));
        assert!(!tap.receives(|f| udp_carries(f, b"kept"), STAYS_AWAY));
        let filters = run("tc", "filter show dev va ingress");
        // Protocol 17 at offset 8; source port 53 and destination 0xf000/0xf000 at 20.
        assert!(
            filters.contains("match 00110000/00ff0000 at 8"),
            "{filters}"
        );
        assert!(
            filters.contains("match 0035f000/fffff000 at 20"),
            "{filters}"
        );
    });
}

#[test]
fn keep_ingress_with_a_copy_sends_one_to_the_tap_too() {
    in_new_netns(|| {
        // Arrange
        let VethToTap {
            mut netlink,
            va,
            vb,
            mut tap,
            tap_link,
            sender,
        } = veth_to_tap();
        // Act
        netlink
            .keep_ingress(va.index, 1, DNS_ANSWERS, Some(tap_link.index))
            .unwrap();
        sender
            .send(&udp_frame(vb.mac.unwrap(), 53, 61500, b"copied"))
            .unwrap();
        // Assert
        assert!(tap.receives(|f| udp_carries(f, b"copied"), ARRIVES));
        let filters = run("tc", "filter show dev va ingress");
        assert!(
            filters.contains("mirred (Egress Mirror to device tap0) pipe"),
            "{filters}"
        );
    });
}
