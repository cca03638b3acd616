//! What a non-root guest user creates is theirs, with exactly the mode asked for.

use std::os::unix::fs::MetadataExt;

use crate::client::{o, Client};
use crate::fixture::{lstat, Fixture};

const UID: u32 = 1000;
const GID: u32 = 1001;

#[test]
fn created_files_belong_to_the_attaching_user_and_the_requested_group() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", UID);
    c.walk_to(1, "").unwrap();

    c.lcreate(1, "file", o::RDWR, 0o640, GID).unwrap();
    c.mkdir(0, "dir", 0o2775, GID).unwrap();
    c.symlink(0, "link", "file", GID).unwrap();
    c.mknod(0, "fifo", libc::S_IFIFO | 0o604, (0, 0), GID)
        .unwrap();
    c.mknod(0, "reg", libc::S_IFREG | 0o4755, (0, 0), GID)
        .unwrap();

    for (name, mode) in [
        ("file", 0o640),
        ("dir", 0o2775),
        ("fifo", 0o604),
        ("reg", 0o4755),
    ] {
        let meta = std::fs::metadata(fx.shared(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (UID, GID), "{name}");
        assert_eq!(
            meta.mode() & 0o7777,
            mode,
            "{name}: the exact mode, no umask"
        );
    }
    let link = lstat(&fx.shared("link"));
    assert_eq!((link.st_uid, link.st_gid), (UID, GID));
    c.walk_to(2, "dir").unwrap();
    let seen = c.getattr(2).unwrap();
    assert_eq!((seen.uid, seen.gid, seen.mode & 0o7777), (UID, GID, 0o2775));
    assert_eq!(seen.qid.ty, crate::client::QTDIR);
}

#[test]
fn each_attach_has_its_own_user() {
    let fx = Fixture::new();
    let mut c = Client::connect(&fx.shares);
    c.attach(0, "root", 0).unwrap();
    c.attach(1, "root", UID).unwrap();

    c.mkdir(0, "by-root", 0o755, 0).unwrap();
    c.mkdir(1, "by-user", 0o755, GID).unwrap();

    let root = std::fs::metadata(fx.shared("by-root")).unwrap();
    let user = std::fs::metadata(fx.shared("by-user")).unwrap();
    assert_eq!((root.uid(), root.gid()), (0, 0));
    assert_eq!((user.uid(), user.gid()), (UID, GID));
}

#[test]
fn opening_an_existing_file_through_lcreate_keeps_its_owner() {
    let fx = Fixture::new();
    fx.write("mine", b"x");
    let mut c = Client::attached(&fx.shares, "root", UID);
    c.walk_to(1, "").unwrap();

    c.lcreate(1, "mine", o::RDWR, 0o666, GID).unwrap();

    let meta = std::fs::metadata(fx.shared("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}
