//! Extended attributes: get, list, set, remove; names outside the allowed set are refused.

use crate::client::Client;
use crate::fixture::Fixture;

#[test]
fn set_get_list_and_remove_a_user_attribute() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();

    c.setxattr(1, "user.color", b"blue", 0).unwrap();
    let got = c.getxattr(1, "user.color").unwrap();
    let listed = c.getxattr(1, "").unwrap();
    let create_again = c.setxattr(1, "user.color", b"red", 1);
    c.setxattr(1, "user.color", b"", 2).unwrap();
    let gone = c.getxattr(1, "user.color");

    assert_eq!(got, b"blue");
    assert_eq!(listed, b"user.color\0");
    assert_eq!(create_again, Err(libc::EEXIST));
    assert_eq!(gone, Err(libc::ENODATA));
}

#[test]
fn file_capabilities_round_trip() {
    let fx = Fixture::new();
    fx.write("ping", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "ping").unwrap();
    // VFS_CAP_REVISION_2, permitted CAP_NET_RAW (bit 13), effective.
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    c.setxattr(1, "security.capability", &cap, 0).unwrap();
    let got = c.getxattr(1, "security.capability").unwrap();

    assert_eq!(got, cap);
}

#[test]
fn other_namespaces_are_refused_and_hidden() {
    let fx = Fixture::new();
    fx.write("f", b"");
    set_host_xattr(&fx.shared("f"), "trusted.overlay.redirect", b"/etc");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();

    let set = c.setxattr(1, "trusted.overlay.opaque", b"y", 0);
    let get = c.getxattr(1, "trusted.overlay.redirect");
    let list = c.getxattr(1, "").unwrap();

    assert_eq!(set, Err(libc::EOPNOTSUPP));
    assert_eq!(get, Err(libc::EOPNOTSUPP));
    assert_eq!(list, b"");
}

#[test]
fn values_are_bounded_and_must_be_written_whole() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.walk_to(2, "f").unwrap();

    let too_big = c.xattrcreate(1, "user.big", 64 * 1024 + 1, 0);
    c.xattrcreate(2, "user.partial", 10, 0).unwrap();
    c.write(2, 0, b"12345").unwrap();
    let beyond = c.write(2, 8, b"12345");
    let partial = c.clunk(2);

    assert_eq!(too_big, Err(libc::E2BIG));
    assert_eq!(beyond, Err(libc::ENOSPC));
    assert_eq!(partial, Err(libc::EINVAL));
    assert_eq!(c.getxattr(1, "user.partial"), Err(libc::ENODATA));
}

fn set_host_xattr(path: &std::path::Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated; `value` is readable for its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name}");
}

#[test]
fn the_values_fids_hold_are_bounded_in_total() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);

    let mut held = 0;
    let full = loop {
        let fid = 100 + held;
        c.walk_to(fid, "f").unwrap();
        match c.xattrcreate(fid, "user.v", 64 * 1024, 0) {
            Ok(()) => held += 1,
            Err(e) => break e,
        }
    };
    c.clunk(100).unwrap_err();
    let freed = c.xattrcreate(100 + held, "user.v", 64 * 1024, 0);

    assert_eq!(full, libc::ENOMEM);
    assert_eq!(held, 16);
    assert_eq!(freed, Ok(()));
}
