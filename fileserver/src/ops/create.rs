//! Tmkdir, Tsymlink, Tmknod, Tlink: new names in a directory, owned as a local file system
//! would own them.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};

use crate::errno::{Errno, OpResult, EINVAL, EPERM};
use crate::fid::Kind;
use crate::name::Name;
use crate::ops::{changeable_dir, same_share};
use crate::session::Session;
use crate::sys;
use crate::walk;
use crate::wire::OutBuf;

/// Gives a new inode its owner (the attaching user, the group the client chose) and, when
/// `mode` is given, exactly that mode: the server runs as root under the VMM's umask, and a
/// chown by root clears set-id bits, so the mode is set after the owner.
pub(crate) fn own(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: Option<u32>) -> OpResult {
    sys::chown_fd(fd, Some(uid), Some(gid))?;
    if let Some(mode) = mode {
        sys::chmod_fd(fd, mode & 0o7777)?;
    }
    Ok(())
}

/// A link target from the guest: any text without NUL, 1 to 4095 bytes. (It is stored, never
/// followed by the server.)
fn link_target(raw: &[u8]) -> OpResult<CString> {
    if raw.is_empty() {
        return Err(Errno(libc::ENOENT));
    }
    if raw.len() >= libc::PATH_MAX as usize {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    CString::new(raw).map_err(|_| EINVAL)
}

impl Session {
    /// Tmkdir.
    pub(crate) fn mkdir(
        &self,
        dfid: u32,
        name: &[u8],
        mode: u32,
        gid: u32,
        out: &mut OutBuf,
    ) -> OpResult {
        let dir = self.fids.get(dfid)?;
        changeable_dir(&dir)?;
        let name = Name::new(name)?;
        sys::mkdirat(dir.fd(), name.as_cstr(), mode & 0o7777)?;
        let node = walk::open_child(&dir.share, &dir.node.fd, &name)?;
        if node.kind != Kind::Dir {
            return Err(Errno(libc::ENOTDIR)); // replaced by someone racing us
        }
        own(node.fd.as_fd(), dir.uid, gid, Some(mode))?;
        out.put_qid(node.qid);
        Ok(())
    }

    /// Tsymlink: a link holding `target` as text.
    pub(crate) fn symlink(
        &self,
        fid: u32,
        name: &[u8],
        target: &[u8],
        gid: u32,
        out: &mut OutBuf,
    ) -> OpResult {
        let dir = self.fids.get(fid)?;
        changeable_dir(&dir)?;
        let name = Name::new(name)?;
        let target = link_target(target)?;
        sys::symlinkat(&target, dir.fd(), name.as_cstr())?;
        let node = walk::open_child(&dir.share, &dir.node.fd, &name)?;
        if node.kind != Kind::Symlink {
            return Err(Errno(libc::EEXIST)); // replaced by someone racing us
        }
        own(node.fd.as_fd(), dir.uid, gid, None)?;
        out.put_qid(node.qid);
        Ok(())
    }

    /// Tmknod: regular files, fifos and sockets only. Character and block devices are refused
    /// (EPERM): a guest must not plant device nodes in a host directory.
    pub(crate) fn mknod(
        &self,
        dfid: u32,
        name: &[u8],
        mode: u32,
        gid: u32,
        out: &mut OutBuf,
    ) -> OpResult {
        let dir = self.fids.get(dfid)?;
        changeable_dir(&dir)?;
        let name = Name::new(name)?;
        let file_type = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => libc::S_IFREG,
            libc::S_IFIFO => libc::S_IFIFO,
            libc::S_IFSOCK => libc::S_IFSOCK,
            libc::S_IFCHR | libc::S_IFBLK => return Err(EPERM),
            _ => return Err(EINVAL),
        };
        sys::mknodat(dir.fd(), name.as_cstr(), file_type | (mode & 0o7777))?;
        let node = walk::open_child(&dir.share, &dir.node.fd, &name)?;
        if !matches!(node.kind, Kind::File | Kind::Special) {
            return Err(Errno(libc::EEXIST)); // replaced by someone racing us
        }
        own(node.fd.as_fd(), dir.uid, gid, Some(mode))?;
        out.put_qid(node.qid);
        Ok(())
    }

    /// Tlink: a new name in `dfid` for the inode `fid` holds (not a directory; same share).
    pub(crate) fn link(&self, dfid: u32, fid: u32, name: &[u8]) -> OpResult {
        let dir = self.fids.get(dfid)?;
        let target = self.fids.get(fid)?;
        same_share(&dir, &target)?;
        changeable_dir(&dir)?;
        if target.node.kind == Kind::Dir {
            return Err(EPERM);
        }
        let name = Name::new(name)?;
        sys::link_fd(target.fd(), dir.fd(), name.as_cstr())?;
        Ok(())
    }
}
