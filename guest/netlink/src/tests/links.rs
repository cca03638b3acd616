use super::fixtures::Tap;
use super::{in_new_netns, link, run, veth_pair};
use crate::{Error, Netlink};

#[test]
fn links_lists_loopback_and_both_veth_ends() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        run("ip", "link add va type veth peer name vb");

        let links = netlink.links().unwrap();

        let lo = links.iter().find(|link| link.name == "lo").expect("lo");
        assert_eq!(
            (lo.kind.as_deref(), lo.link_type, lo.mtu),
            (None, libc::ARPHRD_LOOPBACK, 65536)
        );
        for name in ["va", "vb"] {
            let veth = links.iter().find(|link| link.name == name).expect(name);
            assert_eq!(veth.kind.as_deref(), Some("veth"));
            assert_eq!(
                (veth.link_type, veth.mtu, veth.up),
                (libc::ARPHRD_ETHER, 1500, false)
            );
            let mac = veth.mac.expect("a veth has a MAC address");
            assert_ne!(mac, [0; 6]);
            let shown = run("ip", &format!("link show {name}"));
            assert!(shown.contains(&format_mac(mac)), "{shown}");
        }
    });
}

#[test]
fn links_lists_every_link_of_a_dump_spanning_several_datagrams() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        // About 80 × 1.5 KiB of RTM_NEWLINK: several 32 KiB datagrams.
        for pair in 0..40 {
            run(
                "ip",
                &format!("link add a{pair} type veth peer name b{pair}"),
            );
        }

        let links = netlink.links().unwrap();

        assert_eq!(links.len(), 81);
        for pair in 0..40 {
            assert!(
                links.iter().any(|link| link.name == format!("a{pair}")),
                "a{pair} missing"
            );
            assert!(
                links.iter().any(|link| link.name == format!("b{pair}")),
                "b{pair} missing"
            );
        }
    });
}

#[test]
fn link_by_name_is_none_for_a_missing_link() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();

        let missing = netlink.link_by_name("nosuch0").unwrap();

        assert_eq!(missing, None);
    });
}

#[test]
fn set_up_and_down_are_visible_in_links() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        netlink.set_up(va.index, true).unwrap();
        let after_up = link(&mut netlink, "va").up;
        netlink.set_up(va.index, false).unwrap();
        let after_down = link(&mut netlink, "va").up;

        assert_eq!((after_up, after_down), (true, false));
    });
}

#[test]
fn set_mtu_is_visible_in_links() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        netlink.set_mtu(va.index, 1400).unwrap();

        assert_eq!(link(&mut netlink, "va").mtu, 1400);
    });
}

#[test]
fn set_name_renames_a_down_link() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        netlink.set_name(va.index, "eth0").unwrap();

        let renamed = link(&mut netlink, "eth0");
        assert_eq!(
            (renamed.index, netlink.link_by_name("va").unwrap()),
            (va.index, None)
        );
    });
}

#[test]
fn set_name_to_a_taken_name_is_refused_with_eexist() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);

        let error = netlink.set_name(va.index, "vb").unwrap_err();

        let Error::Kernel { source, .. } = &error else {
            panic!("not a kernel error: {error}")
        };
        assert_eq!(source.raw_os_error(), Some(libc::EEXIST));
        let expected = format!(
            "cannot rename link {} to \"vb\": File exists (os error 17)",
            va.index
        );
        assert!(error.to_string().starts_with(&expected), "{error}");
    });
}

#[test]
fn set_mac_is_visible_in_links() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let (va, _) = veth_pair(&mut netlink);
        let mac = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];

        netlink.set_mac(va.index, mac).unwrap();

        assert_eq!(link(&mut netlink, "va").mac, Some(mac));
    });
}

#[test]
fn tap_made_with_tunsetiff_has_kind_tun() {
    in_new_netns(|| {
        let mut netlink = Netlink::open().unwrap();
        let _tap = Tap::create("tap0").unwrap();

        let tap = link(&mut netlink, "tap0");

        assert_eq!(
            (tap.kind.as_deref(), tap.link_type),
            (Some("tun"), libc::ARPHRD_ETHER)
        );
        assert!(tap.mac.is_some());
    });
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn changes_tells_of_a_new_link_and_nothing_else() {
    in_new_netns(|| {
        // Arrange
        let mut changes = crate::Changes::open().unwrap();
        let quiet = changes
            .wait(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        // Act
        run("ip", "link add va type veth peer name vb");
        let told = changes
            .wait(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // Assert
        assert!(!quiet, "a change with nothing changed");
        assert!(told, "no change told for a new link");
    });
}

#[test]
fn set_netns_moves_the_link_out_of_sight() {
    in_new_netns(|| {
        // Arrange: a second namespace, made by a thread of its own and held by a descriptor.
        let (va, _) = veth_pair(&mut Netlink::open().unwrap());
        let other = std::thread::spawn(|| {
            // SAFETY: unshare(2) takes no pointers and moves only this thread, which ends here.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            std::fs::File::open("/proc/thread-self/ns/net").unwrap()
        })
        .join()
        .unwrap();
        let mut netlink = Netlink::open().unwrap();
        // Act
        use std::os::fd::AsFd;
        netlink.set_netns(va.index, other.as_fd()).unwrap();
        // Assert
        assert_eq!(netlink.link_by_name("va").unwrap(), None);
    });
}
