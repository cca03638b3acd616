//! Walking: one checked component at a time, never following a link, never going up.
//!
//! Why a guest cannot leave its share, even racing renames against the server:
//! - every fid holds its inode by an `O_PATH` descriptor, and every step of a walk is
//!   `openat(parent_fd, name, O_PATH | O_NOFOLLOW)` with `name` a single component that is not
//!   `.` or `..` (see [`Name`]). Such a step can only reach a child of the directory the parent
//!   descriptor holds. Starting from the share's root, walks therefore only ever reach inodes
//!   below the root: there is no step that goes up, and links are never followed (a link is
//!   itself the result of its step; walking on from it fails with ENOTDIR);
//! - descriptors refer to inodes, not paths: renaming a directory (by the guest or the host)
//!   while a fid holds it, or while a walk is half way, changes nothing about what the fid can
//!   reach, which is still only what lies below that inode. The guest's own renames keep
//!   everything inside the share (both directories of a rename are fids of the same share);
//! - files are opened anew from their `O_PATH` descriptor through `/proc/self/fd/N`, which the
//!   kernel resolves to exactly that inode, and which fails for a link (ELOOP): the server never
//!   opens anything by a path the guest can influence;
//! - creation and removal are `*at()` calls on the parent's descriptor with one checked name.
//!
//! What remains outside this argument is the host itself moving a directory out of the share
//! while a guest fid holds it: the guest then still reaches that directory's own subtree (what
//! was shared, and moved by the host), never anything above it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::errno::{OpResult, ENOENT};
use crate::fid::{Fid, Kind, Node, Parent};
use crate::name::Name;
use crate::share::ShareRoot;
use crate::sys;
use crate::wire::Qid;

const QTDIR: u8 = 0x80;
const QTSYMLINK: u8 = 0x02;
const QTFILE: u8 = 0x00;

pub(crate) fn kind_of(mode: u32) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Special,
    }
}

/// The qid type of a file of type `kind`.
pub(crate) fn qid_type(kind: Kind) -> u8 {
    match kind {
        Kind::Dir => QTDIR,
        Kind::Symlink => QTSYMLINK,
        Kind::File | Kind::Special => QTFILE,
    }
}

/// The qid type of a getdents64 `d_type`.
pub(crate) fn qid_type_of_dtype(d_type: u8) -> u8 {
    match d_type {
        libc::DT_DIR => QTDIR,
        libc::DT_LNK => QTSYMLINK,
        _ => QTFILE,
    }
}

/// The qid path: the inode number, mixed with the device when a file lies on another file
/// system than the share's root (a mount inside the shared tree), so that two files the guest
/// sees rarely share a path. The version is 0: the client's caching modes we serve do not use it.
pub(crate) fn qid_path(ino: u64, dev: u64, root_dev: u64) -> u64 {
    if dev == root_dev {
        ino
    } else {
        ino ^ dev.rotate_left(40)
    }
}

/// A node for a descriptor just opened with `O_PATH | O_NOFOLLOW`.
pub(crate) fn node_of(share: &ShareRoot, fd: Arc<OwnedFd>, is_root: bool) -> OpResult<Node> {
    let st = sys::fstat(fd.as_fd())?;
    let kind = kind_of(st.st_mode);
    Ok(Node {
        qid: Qid {
            ty: qid_type(kind),
            version: 0,
            path: qid_path(st.st_ino, st.st_dev, share.dev),
        },
        fd,
        kind,
        dev: st.st_dev,
        ino: st.st_ino,
        is_root,
    })
}

/// The node of a share's root.
pub(crate) fn root_node(share: &ShareRoot) -> OpResult<Node> {
    node_of(share, Arc::clone(&share.root), true)
}

/// Opens `name` in the directory `dir` holds, as a new `O_PATH` node, without following it.
pub(crate) fn open_child(share: &ShareRoot, dir: &OwnedFd, name: &Name) -> OpResult<Node> {
    let fd = sys::openat(
        dir.as_fd(),
        name.as_cstr(),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )?;
    node_of(share, Arc::new(fd), false)
}

/// One step of a walk from `from`: the child and where it was found.
pub(crate) fn step(from: &Fid, node: &Node, raw: &[u8]) -> OpResult<(Node, Parent)> {
    let name = Name::new(raw)?;
    let in_file_share_root = node.is_root && from.share.only.is_some();
    if in_file_share_root && from.share.only.as_ref().map(Name::as_bytes) != Some(raw) {
        return Err(ENOENT);
    }
    let child = open_child(&from.share, &node.fd, &name)?;
    let parent = Parent {
        dir: Arc::clone(&node.fd),
        name,
        in_file_share_root,
    };
    Ok((child, parent))
}
