//! Every way out of a share the tests could think of must fail.

use std::os::unix::fs::MetadataExt;

use crate::client::{a, o, Client, SetAttr, QTSYMLINK};
use crate::fixture::{host_mknod, Fixture};

const BAD_NAMES: [&[u8]; 7] = [b"..", b".", b"", b"a/b", b"/etc", b"../outside", b"x\0y"];

#[test]
fn walks_with_dot_dot_slashes_or_nul_are_refused() {
    let fx = Fixture::new();
    fx.mkdir("a/b");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "a/b").unwrap();

    for fid in [0, 1] {
        for name in BAD_NAMES {
            let r = c.walk_bytes(fid, 5, &[name]);
            assert_eq!(r, Err(libc::EINVAL), "walk {name:?} from fid {fid}");
        }
    }
    let deep = c.walk_bytes(1, 5, &[b"..", b"..", b"..", b"outside"]);
    assert_eq!(deep, Err(libc::EINVAL));
}

#[test]
fn names_of_every_creating_request_are_checked() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(2, "f").unwrap();

    for name in ["..", ".", "", "a/b", "../outside/x", "/tmp/x"] {
        c.walk_to(1, "").unwrap();
        assert_eq!(
            c.lcreate(1, name, o::RDWR, 0o644, 0),
            Err(libc::EINVAL),
            "lcreate {name:?}"
        );
        c.clunk(1).unwrap();
        assert_eq!(
            c.mkdir(0, name, 0o755, 0),
            Err(libc::EINVAL),
            "mkdir {name:?}"
        );
        assert_eq!(
            c.symlink(0, name, "t", 0),
            Err(libc::EINVAL),
            "symlink {name:?}"
        );
        let fifo = libc::S_IFIFO | 0o644;
        assert_eq!(
            c.mknod(0, name, fifo, (0, 0), 0),
            Err(libc::EINVAL),
            "mknod {name:?}"
        );
        assert_eq!(c.link(0, 2, name), Err(libc::EINVAL), "link {name:?}");
        assert_eq!(
            c.renameat(0, "f", 0, name),
            Err(libc::EINVAL),
            "renameat to {name:?}"
        );
        assert_eq!(
            c.renameat(0, name, 0, "g"),
            Err(libc::EINVAL),
            "renameat from {name:?}"
        );
        assert_eq!(c.rename(2, 0, name), Err(libc::EINVAL), "rename {name:?}");
        assert_eq!(
            c.unlinkat(0, name, 0),
            Err(libc::EINVAL),
            "unlinkat {name:?}"
        );
    }
    assert!(fx.scratch.path("outside/secret").exists());
    assert_eq!(std::fs::read_dir(fx.shared("")).unwrap().count(), 1);
}

#[test]
fn links_pointing_outside_are_never_followed() {
    let fx = Fixture::new();
    let secret = fx.scratch.path("outside/secret");
    std::os::unix::fs::symlink(&secret, fx.shared("abs")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", fx.shared("rel")).unwrap();
    std::os::unix::fs::symlink(fx.scratch.path("outside"), fx.shared("dirlink")).unwrap();
    let before = std::fs::metadata(&secret).unwrap();
    let mut c = Client::attached(&fx.shares, "root", 0);

    for (fid, name) in [(1, "abs"), (2, "rel")] {
        let qids = c.walk(0, fid, &[name]).unwrap();
        assert_eq!(qids[0].ty, QTSYMLINK, "{name}");
        assert_eq!(c.getattr(fid).unwrap().mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(c.lopen(fid, o::RDONLY), Err(libc::ELOOP), "{name}");
        assert_eq!(c.read(fid, 0, 100), Err(libc::EBADF));
        let chmod = SetAttr {
            valid: a::MODE,
            mode: 0o777,
            ..Default::default()
        };
        assert!(c.setattr(fid, &chmod).is_err(), "chmod through {name}");
        let truncate = SetAttr {
            valid: a::SIZE,
            ..Default::default()
        };
        assert_eq!(
            c.setattr(fid, &truncate),
            Err(libc::EINVAL),
            "truncate {name}"
        );
        let chown = SetAttr {
            valid: a::UID | a::GID,
            uid: 4242,
            gid: 4242,
            ..Default::default()
        };
        c.setattr(fid, &chown).unwrap();
        assert!(
            c.setxattr(fid, "user.x", b"v", 0).is_err(),
            "setxattr through {name}"
        );
        assert!(c.getxattr(fid, "user.x").is_err());
    }
    let through = c.walk(0, 3, &["dirlink", "secret"]).unwrap();
    assert_eq!(through.len(), 1, "the walk stops at the link");
    assert_eq!(c.walk(0, 4, &["abs", "x"]).unwrap().len(), 1);
    assert_eq!(c.readlink(1).unwrap(), secret.to_str().unwrap());
    assert_eq!(c.readlink(2).unwrap(), "../outside/secret");

    let after = std::fs::metadata(&secret).unwrap();
    assert_eq!(after.mode(), before.mode());
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(std::fs::read(&secret).unwrap(), b"host secret");
    assert!(xattr_names(&secret).is_empty());
    let link = std::fs::symlink_metadata(fx.shared("abs")).unwrap();
    assert_eq!(
        (link.uid(), link.gid()),
        (4242, 4242),
        "chown acted on the link itself"
    );
}

#[test]
fn a_fid_inside_a_renamed_directory_stays_inside() {
    let fx = Fixture::new();
    fx.mkdir("a/b");
    fx.write("a/b/file", b"inside");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "a/b").unwrap();
    c.walk_to(2, "a").unwrap();

    std::fs::rename(fx.shared("a"), fx.shared("c")).unwrap();
    c.renameat(0, "c", 0, "d").unwrap();
    let walked = c.walk(1, 3, &["file"]).unwrap();
    c.lopen(3, o::RDONLY).unwrap();
    let data = c.read(3, 0, 100).unwrap();
    let up = c.walk(1, 4, &[".."]);
    let up_from_a = c.walk(2, 4, &["..", "outside"]);

    assert_eq!(walked.len(), 1);
    assert_eq!(data, b"inside");
    assert_eq!(up, Err(libc::EINVAL));
    assert_eq!(up_from_a, Err(libc::EINVAL));
}

#[test]
fn renames_and_links_across_shares_are_refused() {
    let fx = Fixture::new();
    fx.write("f", b"");
    let other = crate::fixture::Scratch::new();
    fx.shares
        .add(fileserver::Share {
            tag: "other".into(),
            source: fileserver::ShareSource::Dir(other.0.clone()),
            readonly: false,
        })
        .unwrap();
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.attach(1, "other", 0).unwrap();
    c.walk_to(2, "f").unwrap();

    assert_eq!(c.renameat(0, "f", 1, "f"), Err(libc::EXDEV));
    assert_eq!(c.rename(2, 1, "f"), Err(libc::EXDEV));
    assert_eq!(c.link(1, 2, "f"), Err(libc::EXDEV));
}

#[test]
fn special_files_are_never_opened() {
    let fx = Fixture::new();
    host_mknod(
        &fx.shared("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    host_mknod(&fx.shared("fifo"), libc::S_IFIFO | 0o666, 0);
    let mut c = Client::attached(&fx.shares, "root", 0);

    for (fid, name) in [(1, "null"), (2, "fifo")] {
        c.walk(0, fid, &[name]).unwrap();
        for flags in [o::RDONLY, o::WRONLY, o::RDWR] {
            assert_eq!(c.lopen(fid, flags), Err(libc::EACCES), "{name} {flags}");
        }
    }
    c.walk_to(3, "").unwrap();
    assert_eq!(c.lcreate(3, "fifo", o::WRONLY, 0o644, 0), Err(libc::EEXIST));
}

#[test]
fn device_nodes_cannot_be_made() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    let chr = c.mknod(0, "mem", libc::S_IFCHR | 0o666, (1, 1), 0);
    let blk = c.mknod(0, "sda", libc::S_IFBLK | 0o666, (8, 0), 0);
    let dir = c.mknod(0, "dir", libc::S_IFDIR | 0o755, (0, 0), 0);

    assert_eq!(chr, Err(libc::EPERM));
    assert_eq!(blk, Err(libc::EPERM));
    assert_eq!(dir, Err(libc::EINVAL));
    assert_eq!(std::fs::read_dir(fx.shared("")).unwrap().count(), 0);
}

/// The extended attribute names of a host file.
fn xattr_names(path: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated; `buf` is writable for its length.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0);
    buf.truncate(n as usize);
    buf
}
