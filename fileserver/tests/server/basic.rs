//! Version, attach, walk, getattr, open, read, write, create, setattr, statfs, locks.

use std::os::unix::fs::MetadataExt;

use crate::client::{a, o, Client, SetAttr, QTDIR};
use crate::fixture::Fixture;
use fileserver::Limits;

#[test]
fn version_negotiates_the_smaller_msize() {
    let fx = Fixture::new();
    let mut big = Client::start(fx.shares.clone(), Limits::default());
    let mut small = Client::start(fx.shares.clone(), Limits::default());

    let (big_msize, big_version) = big.version(4 << 20, "9P2000.L");
    let (small_msize, _) = small.version(64 * 1024, "9P2000.L");

    assert_eq!(big_version, "9P2000.L");
    assert_eq!(big_msize, fileserver::DEFAULT_MAX_MSIZE);
    assert_eq!(small_msize, 64 * 1024);
}

#[test]
fn version_refuses_other_protocols() {
    let fx = Fixture::new();
    let mut c = Client::start(fx.shares.clone(), Limits::default());

    let (_, version) = c.version(65536, "9P2000.u");

    assert_eq!(version, "unknown");
}

#[test]
fn attach_picks_the_share_by_aname_and_refuses_auth() {
    let fx = Fixture::new();
    let mut c = Client::connect(&fx.shares);

    let root = c.attach(0, "root", 0);
    let unknown = c.attach(1, "nope", 0);
    let auth = c.rpc(
        crate::client::t::TAUTH,
        crate::client::Msg::default()
            .u32(5)
            .str("u")
            .str("root")
            .u32(0),
    );

    assert_eq!(root.unwrap().ty, QTDIR);
    assert_eq!(unknown, Err(libc::ENOENT));
    assert!(auth.is_err());
}

#[test]
fn walk_getattr_and_read_a_file() {
    let fx = Fixture::new();
    fx.mkdir("etc");
    fx.write("etc/os-release", b"NAME=test\n");
    let mut c = Client::attached(&fx.shares, "root", 0);

    let qids = c.walk_to(1, "etc/os-release").unwrap();
    let attr = c.getattr(1).unwrap();
    c.lopen(1, o::RDONLY).unwrap();
    let data = c.read(1, 0, 4096).unwrap();
    let eof = c.read(1, 100, 4096).unwrap();

    assert_eq!(qids.len(), 2);
    assert_eq!(qids[0].ty, QTDIR);
    assert_eq!(attr.size, 10);
    assert_eq!(attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(attr.valid & 0x7ff, 0x7ff);
    assert_eq!(data, b"NAME=test\n");
    assert!(eof.is_empty());
}

#[test]
fn a_partial_walk_returns_the_qids_so_far_and_makes_no_fid() {
    let fx = Fixture::new();
    fx.mkdir("a");
    let mut c = Client::attached(&fx.shares, "root", 0);

    let partial = c.walk(0, 1, &["a", "missing"]).unwrap();
    let first_fails = c.walk(0, 2, &["missing"]);

    assert_eq!(partial.len(), 1);
    assert_eq!(c.getattr(1).err(), Some(libc::EBADF));
    assert_eq!(first_fails, Err(libc::ENOENT));
}

#[test]
fn writes_land_in_the_host_file_and_host_writes_show_up() {
    let fx = Fixture::new();
    fx.write("f", b"0123456789");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDWR).unwrap();

    let n = c.write(1, 2, b"ab").unwrap();
    let on_host = std::fs::read(fx.shared("f")).unwrap();
    fx.write("f", b"host wrote this");
    let seen = c.read_all(1).unwrap();

    assert_eq!(n, 2);
    assert_eq!(on_host, b"01ab456789");
    assert_eq!(seen, b"host wrote this");
}

#[test]
fn lcreate_makes_the_fid_the_new_open_file() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "").unwrap();

    let qid = c.lcreate(1, "new.txt", o::RDWR, 0o644, 0).unwrap();
    c.write(1, 0, b"created").unwrap();
    let back = c.read(1, 0, 100).unwrap();
    let again = {
        c.walk_to(2, "").unwrap();
        c.lcreate(2, "new.txt", o::RDWR | o::EXCL, 0o644, 0)
    };

    assert_eq!(qid.ty, 0);
    assert_eq!(back, b"created");
    assert_eq!(std::fs::read(fx.shared("new.txt")).unwrap(), b"created");
    assert_eq!(again, Err(libc::EEXIST));
}

#[test]
fn lcreate_without_excl_opens_an_existing_file_and_truncates_on_request() {
    let fx = Fixture::new();
    fx.write("old", b"old contents");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "").unwrap();

    c.lcreate(1, "old", o::WRONLY | o::TRUNC, 0o600, 0).unwrap();

    assert_eq!(std::fs::read(fx.shared("old")).unwrap(), b"");
}

#[test]
fn setattr_changes_mode_size_owner_and_times() {
    let fx = Fixture::new();
    fx.write("f", b"0123456789");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();

    c.setattr(
        1,
        &SetAttr {
            valid: a::MODE | a::SIZE | a::UID | a::GID,
            mode: 0o4755,
            size: 3,
            uid: 1234,
            gid: 5678,
            ..Default::default()
        },
    )
    .unwrap();
    c.setattr(
        1,
        &SetAttr {
            valid: a::ATIME | a::ATIME_SET | a::MTIME | a::MTIME_SET,
            atime: (1_000_000, 5),
            mtime: (2_000_000, 7),
            ..Default::default()
        },
    )
    .unwrap();
    let set = std::fs::metadata(fx.shared("f")).unwrap();
    c.setattr(
        1,
        &SetAttr {
            valid: a::MTIME,
            ..Default::default()
        },
    )
    .unwrap();
    let now = std::fs::metadata(fx.shared("f")).unwrap();

    assert_eq!(set.mode() & 0o7777, 0o4755);
    assert_eq!(set.len(), 3);
    assert_eq!((set.uid(), set.gid()), (1234, 5678));
    assert_eq!((set.atime(), set.atime_nsec()), (1_000_000, 5));
    assert_eq!((set.mtime(), set.mtime_nsec()), (2_000_000, 7));
    assert_eq!(now.atime(), 1_000_000, "atime left alone");
    let seen = c.getattr(1).unwrap();
    assert_eq!(
        (seen.atime, seen.mtime.0 > 2_000_000),
        ((1_000_000, 5), true)
    );
    assert!(now.mtime() > 2_000_000, "mtime set to now");
    let bad_nsec = c.setattr(
        1,
        &SetAttr {
            valid: a::MTIME | a::MTIME_SET,
            mtime: (1, 1_000_000_000),
            ..Default::default()
        },
    );
    assert_eq!(bad_nsec, Err(libc::EINVAL));
}

#[test]
fn statfs_fsync_and_locks() {
    let fx = Fixture::new();
    fx.write("f", b"x");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDWR).unwrap();

    let st = c.statfs(0).unwrap();
    let synced = c.fsync(1);
    let locked = c.lock(1, 1).unwrap();
    let (ty, start, len, pid, client) = c.getlock(1, 0).unwrap();
    let bad_lock = c.lock(1, 9);

    assert!(st.bsize > 0 && st.blocks > 0);
    assert_eq!(st.namelen, 255);
    assert_eq!(synced, Ok(()));
    assert_eq!(locked, 0);
    assert_eq!(
        (ty, start, len, pid, client.as_str()),
        (2, 10, 20, 42, "guest")
    );
    assert_eq!(bad_lock, Err(libc::EINVAL));
}

#[test]
fn clunked_and_unknown_fids_are_ebadf() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "").unwrap();

    c.clunk(1).unwrap();

    assert_eq!(c.getattr(1).err(), Some(libc::EBADF));
    assert_eq!(c.clunk(77), Err(libc::EBADF));
}

#[test]
fn a_fid_cannot_be_opened_twice_and_unopened_fids_cannot_do_io() {
    let fx = Fixture::new();
    fx.write("f", b"x");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();

    let unopened = c.read(1, 0, 10);
    c.lopen(1, o::RDONLY).unwrap();
    let twice = c.lopen(1, o::RDONLY);
    let bad_mode = {
        c.walk_to(2, "f").unwrap();
        c.lopen(2, 3)
    };

    assert_eq!(unopened, Err(libc::EBADF));
    assert_eq!(twice, Err(libc::EBADF));
    assert_eq!(bad_mode, Err(libc::EINVAL));
}

#[test]
fn an_empty_walk_onto_the_same_fid_leaves_it_open() {
    let fx = Fixture::new();
    fx.write("f", b"still open");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let qids = c.walk(1, 1, &[]).unwrap();
    let data = c.read(1, 0, 100).unwrap();

    assert!(qids.is_empty());
    assert_eq!(data, b"still open");
}
