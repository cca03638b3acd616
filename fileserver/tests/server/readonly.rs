//! A read-only share refuses every change with EROFS, whatever the guest asks.

use std::os::unix::fs::MetadataExt;

use crate::client::{a, o, Client, SetAttr};
use crate::fixture::Fixture;

fn fixture() -> (Fixture, Client) {
    let fx = Fixture::new();
    fx.mkdir("d");
    fx.write("f", b"original");
    let c = Client::attached(&fx.shares, "ro", 0);
    (fx, c)
}

#[test]
fn every_modifying_request_fails_with_erofs() {
    let (fx, mut c) = fixture();
    c.walk_to(1, "f").unwrap();
    c.walk_to(2, "d").unwrap();
    c.walk_to(3, "").unwrap();
    let before = std::fs::metadata(fx.shared("f")).unwrap();

    let erofs = Err(libc::EROFS);
    assert_eq!(c.lcreate(3, "new", o::RDWR, 0o644, 0).map(drop), erofs);
    assert_eq!(c.mkdir(0, "new", 0o755, 0).map(drop), erofs);
    assert_eq!(c.symlink(0, "new", "f", 0).map(drop), erofs);
    assert_eq!(
        c.mknod(0, "new", libc::S_IFIFO | 0o644, (0, 0), 0)
            .map(drop),
        erofs
    );
    assert_eq!(c.link(0, 1, "new"), erofs);
    assert_eq!(c.renameat(0, "f", 2, "f"), erofs);
    assert_eq!(c.rename(1, 2, "f"), erofs);
    assert_eq!(c.unlinkat(0, "f", 0), erofs);
    assert_eq!(c.unlinkat(0, "d", libc::AT_REMOVEDIR as u32), erofs);
    for valid in [
        a::MODE,
        a::UID,
        a::GID,
        a::SIZE,
        a::ATIME,
        a::MTIME | a::MTIME_SET,
    ] {
        let set = SetAttr {
            valid,
            mode: 0o777,
            uid: 1,
            gid: 1,
            ..Default::default()
        };
        assert_eq!(c.setattr(1, &set), erofs, "setattr {valid:#x}");
    }
    assert_eq!(c.setxattr(1, "user.x", b"1", 0), erofs);
    for flags in [
        o::WRONLY,
        o::RDWR,
        o::RDONLY | o::TRUNC,
        o::RDONLY | o::APPEND,
        o::RDONLY | o::CREATE,
    ] {
        c.walk_to(5, "f").unwrap();
        assert_eq!(c.lopen(5, flags).map(drop), erofs, "lopen {flags:#o}");
        c.clunk(5).unwrap();
    }
    c.walk_to(4, "f").unwrap();
    assert_eq!(c.remove(4), erofs);

    let after = std::fs::metadata(fx.shared("f")).unwrap();
    assert_eq!(std::fs::read(fx.shared("f")).unwrap(), b"original");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    let mut names: Vec<String> = std::fs::read_dir(fx.shared(""))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "f"]);
}

#[test]
fn reading_works_and_writing_through_a_read_open_fails() {
    let (_fx, mut c) = fixture();
    c.walk_to(1, "f").unwrap();
    c.walk_to(2, "d").unwrap();

    c.lopen(1, o::RDONLY).unwrap();
    c.lopen(2, o::RDONLY).unwrap();
    let data = c.read(1, 0, 100).unwrap();
    let write = c.write(1, 0, b"x");
    let listed = c.readdir_all(2, 4096).unwrap();

    assert_eq!(data, b"original");
    assert_eq!(write, Err(libc::EROFS));
    assert_eq!(listed.len(), 2);
}
