//! Directories and names: mkdir, readdir, renames, unlinks, removes, symlinks, hard links.

use std::collections::BTreeSet;

use crate::client::{o, Client, QTDIR, QTSYMLINK};
use crate::fixture::Fixture;

#[test]
fn readdir_lists_every_entry_once() {
    let fx = Fixture::new();
    fx.mkdir("d/sub");
    fx.write("d/a", b"");
    std::os::unix::fs::symlink("a", fx.shared("d/l")).unwrap();
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "d").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let entries = c.readdir(1, 0, 8192).unwrap();

    let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from([".", "..", "a", "l", "sub"]));
    let sub = entries.iter().find(|e| e.name == "sub").unwrap();
    let link = entries.iter().find(|e| e.name == "l").unwrap();
    assert_eq!((sub.qid.ty, sub.ty), (QTDIR, libc::DT_DIR));
    assert_eq!((link.qid.ty, link.ty), (QTSYMLINK, libc::DT_LNK));
}

#[test]
fn a_large_directory_takes_several_readdirs() {
    let fx = Fixture::new();
    fx.mkdir("big");
    let expected: BTreeSet<String> = (0..3000)
        .map(|i| format!("entry-with-a-longish-name-{i:05}"))
        .collect();
    for name in &expected {
        fx.write(&format!("big/{name}"), b"");
    }
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "big").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let mut calls = 0;
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let entries = c.readdir(1, offset, 4096).unwrap();
        calls += 1;
        let Some(last) = entries.last() else { break };
        offset = last.offset;
        names.extend(entries.into_iter().map(|e| e.name));
    }

    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(unique.len(), names.len(), "no entry twice");
    let files: BTreeSet<String> = unique
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect();
    assert_eq!(files, expected);
    assert!(calls > 10, "{calls} calls");
}

#[test]
fn readdir_restarts_at_offset_zero() {
    let fx = Fixture::new();
    fx.mkdir("d");
    fx.write("d/x", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "d").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let first = c.readdir_all(1, 4096).unwrap();
    let second = c.readdir_all(1, 4096).unwrap();

    assert_eq!(first.len(), 3);
    assert_eq!(first, second);
}

#[test]
fn readdir_needs_an_open_directory() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "").unwrap();
    c.walk_to(2, "f").unwrap();
    c.lopen(2, o::RDONLY).unwrap();

    assert_eq!(c.readdir(1, 0, 4096).err(), Some(libc::EBADF));
    assert_eq!(c.readdir(2, 0, 4096).err(), Some(libc::ENOTDIR));
}

#[test]
fn mkdir_then_walk_into_it() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    let qid = c.mkdir(0, "newdir", 0o755, 0).unwrap();
    let walked = c.walk_to(1, "newdir").unwrap();
    let again = c.mkdir(0, "newdir", 0o755, 0);

    assert_eq!(qid.ty, QTDIR);
    assert_eq!(walked[0], qid);
    assert!(fx.shared("newdir").is_dir());
    assert_eq!(again, Err(libc::EEXIST));
}

#[test]
fn renameat_and_unlinkat() {
    let fx = Fixture::new();
    fx.mkdir("a");
    fx.mkdir("b");
    fx.write("a/f", b"data");
    fx.mkdir("a/emptydir");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "a").unwrap();
    c.walk_to(2, "b").unwrap();

    c.renameat(1, "f", 2, "g").unwrap();
    let not_empty = c.unlinkat(0, "b", libc::AT_REMOVEDIR as u32);
    c.unlinkat(2, "g", 0).unwrap();
    let dir_without_flag = c.unlinkat(1, "emptydir", 0);
    c.unlinkat(1, "emptydir", libc::AT_REMOVEDIR as u32)
        .unwrap();
    let bad_flags = c.unlinkat(1, "x", 1);

    assert!(!fx.shared("a/f").exists());
    assert!(!fx.shared("b/g").exists());
    assert!(!fx.shared("a/emptydir").exists());
    assert_eq!(not_empty, Err(libc::ENOTEMPTY));
    assert_eq!(dir_without_flag, Err(libc::EISDIR));
    assert_eq!(bad_flags, Err(libc::EINVAL));
}

#[test]
fn rename_and_remove_by_fid() {
    let fx = Fixture::new();
    fx.mkdir("d");
    fx.write("f", b"data");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.walk_to(2, "d").unwrap();

    c.rename(1, 2, "moved").unwrap();
    let moved = std::fs::read(fx.shared("d/moved")).unwrap();
    c.remove(1).unwrap();
    let root = c.remove(0);

    assert_eq!(moved, b"data");
    assert!(!fx.shared("d/moved").exists());
    assert_eq!(c.getattr(1).err(), Some(libc::EBADF), "remove clunks");
    assert_eq!(root, Err(libc::EBUSY));
    assert!(fx.shared("").exists());
}

#[test]
fn remove_of_a_name_now_holding_another_file_fails() {
    let fx = Fixture::new();
    fx.write("f", b"first");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    std::fs::remove_file(fx.shared("f")).unwrap();
    fx.write("f", b"second");

    let removed = c.remove(1);

    assert_eq!(removed, Err(libc::ENOENT));
    assert_eq!(std::fs::read(fx.shared("f")).unwrap(), b"second");
}

#[test]
fn symlink_readlink_and_link() {
    let fx = Fixture::new();
    fx.write("target", b"t");
    let mut c = Client::attached(&fx.shares, "root", 0);

    let qid = c.symlink(0, "l", "some/where/../else", 0).unwrap();
    c.walk_to(1, "l").unwrap();
    let text = c.readlink(1).unwrap();
    c.walk_to(2, "target").unwrap();
    c.link(0, 2, "hard").unwrap();
    let nlink = c.getattr(2).unwrap().nlink;
    c.walk_to(3, "").unwrap();
    let dir_link = c.link(0, 3, "dirlink");
    let readlink_on_file = c.readlink(2);

    assert_eq!(qid.ty, QTSYMLINK);
    assert_eq!(text, "some/where/../else");
    assert_eq!(
        std::fs::read_link(fx.shared("l")).unwrap().to_str(),
        Some("some/where/../else")
    );
    assert_eq!(nlink, 2);
    assert_eq!(std::fs::read(fx.shared("hard")).unwrap(), b"t");
    assert_eq!(dir_link, Err(libc::EPERM));
    assert_eq!(readlink_on_file, Err(libc::EINVAL));
}

#[test]
fn mknod_makes_regular_files_fifos_and_sockets() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    c.mknod(0, "reg", libc::S_IFREG | 0o600, (0, 0), 0).unwrap();
    c.mknod(0, "fifo", libc::S_IFIFO | 0o600, (0, 0), 0)
        .unwrap();
    c.mknod(0, "sock", libc::S_IFSOCK | 0o600, (0, 0), 0)
        .unwrap();

    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(fx.shared("reg")).unwrap().is_file());
    assert!(std::fs::metadata(fx.shared("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::metadata(fx.shared("sock"))
        .unwrap()
        .file_type()
        .is_socket());
}
