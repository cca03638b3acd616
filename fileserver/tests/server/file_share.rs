//! A File share shows one entry of a host directory and nothing else.

use std::sync::Arc;

use crate::client::{a, o, Client, SetAttr};
use crate::fixture::Scratch;
use fileserver::{Share, ShareSource, Shares};

struct Etc {
    scratch: Scratch,
    shares: Arc<Shares>,
}

fn etc() -> Etc {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("etc")).unwrap();
    std::fs::write(scratch.path("etc/resolv.conf"), b"nameserver 10.0.0.1\n").unwrap();
    std::fs::write(scratch.path("etc/shadow"), b"root:secret").unwrap();
    std::fs::create_dir(scratch.path("etc/subdir")).unwrap();
    let shares = Arc::new(Shares::new());
    shares
        .add(Share {
            tag: "resolv".into(),
            source: ShareSource::File {
                dir: scratch.path("etc"),
                name: "resolv.conf".into(),
            },
            readonly: false,
        })
        .unwrap();
    Etc { scratch, shares }
}

#[test]
fn only_the_shared_entry_can_be_walked_to_and_listed() {
    let e = etc();
    let mut c = Client::attached(&e.shares, "resolv", 0);
    c.walk_to(1, "").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let listed = c.readdir_all(1, 4096).unwrap();
    let shadow = c.walk(0, 2, &["shadow"]);
    let subdir = c.walk(0, 2, &["subdir"]);
    c.walk_to(3, "resolv.conf").unwrap();
    c.lopen(3, o::RDWR).unwrap();
    let data = c.read(3, 0, 100).unwrap();
    c.write(3, 0, b"nameserver 10.0.0.2\n").unwrap();

    let mut listed = listed;
    listed.sort();
    assert_eq!(listed, [".", "..", "resolv.conf"]);
    assert_eq!(shadow, Err(libc::ENOENT));
    assert_eq!(subdir, Err(libc::ENOENT));
    assert_eq!(data, b"nameserver 10.0.0.1\n");
    let on_host = std::fs::read(e.scratch.path("etc/resolv.conf")).unwrap();
    assert_eq!(on_host, b"nameserver 10.0.0.2\n");
}

#[test]
fn nothing_can_be_created_removed_or_renamed_in_its_root() {
    let e = etc();
    let mut c = Client::attached(&e.shares, "resolv", 0);
    c.walk_to(1, "resolv.conf").unwrap();
    c.walk_to(2, "").unwrap();

    assert_eq!(c.lcreate(2, "new", o::RDWR, 0o644, 0), Err(libc::EPERM));
    assert_eq!(c.mkdir(0, "new", 0o755, 0), Err(libc::EPERM));
    assert_eq!(c.symlink(0, "new", "x", 0), Err(libc::EPERM));
    assert_eq!(
        c.mknod(0, "new", libc::S_IFIFO | 0o644, (0, 0), 0),
        Err(libc::EPERM)
    );
    assert_eq!(c.link(0, 1, "new"), Err(libc::EPERM));
    assert_eq!(c.unlinkat(0, "resolv.conf", 0), Err(libc::EPERM));
    assert_eq!(c.unlinkat(0, "shadow", 0), Err(libc::EPERM));
    assert_eq!(c.renameat(0, "resolv.conf", 0, "gone"), Err(libc::EPERM));
    assert_eq!(c.rename(1, 0, "gone"), Err(libc::EPERM));
    let chmod = SetAttr {
        valid: a::MODE,
        mode: 0o777,
        ..Default::default()
    };
    assert_eq!(c.setattr(0, &chmod), Err(libc::EPERM));
    assert_eq!(c.setxattr(0, "user.x", b"1", 0), Err(libc::EPERM));
    assert_eq!(c.remove(1), Err(libc::EPERM));

    let mut left: Vec<String> = std::fs::read_dir(e.scratch.path("etc"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["resolv.conf", "shadow", "subdir"]);
}

#[test]
fn the_shared_file_itself_can_be_changed() {
    let e = etc();
    let mut c = Client::attached(&e.shares, "resolv", 0);
    c.walk_to(1, "resolv.conf").unwrap();

    let chmod = SetAttr {
        valid: a::MODE | a::SIZE,
        mode: 0o600,
        size: 4,
        ..Default::default()
    };
    c.setattr(1, &chmod).unwrap();

    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(e.scratch.path("etc/resolv.conf")).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.len()), (0o600, 4));
}

#[test]
fn a_file_share_needs_a_plain_existing_name() {
    let e = etc();

    let add = |name: &str| {
        e.shares.add(Share {
            tag: format!("t-{name}"),
            source: ShareSource::File {
                dir: e.scratch.path("etc"),
                name: name.into(),
            },
            readonly: true,
        })
    };

    assert!(matches!(
        add("../etc"),
        Err(fileserver::Error::InvalidFileName { .. })
    ));
    assert!(matches!(
        add(".."),
        Err(fileserver::Error::InvalidFileName { .. })
    ));
    assert!(matches!(
        add("missing"),
        Err(fileserver::Error::FileEntry { .. })
    ));
    assert!(add("shadow").is_ok());
    assert!(matches!(
        add("shadow"),
        Err(fileserver::Error::DuplicateTag(_))
    ));
}
