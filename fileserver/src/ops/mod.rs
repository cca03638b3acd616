//! Request handlers, one file per group of requests; this file routes a request to its handler
//! and holds the checks they share.

mod attr;
mod create;
mod dir;
mod fids;
mod io;
mod lock;
mod remove;
mod xattr;

use std::sync::Arc;

use crate::errno::{Errno, OpResult, EOPNOTSUPP, EPERM, EROFS, EXDEV};
use crate::fid::{Fid, Kind};
use crate::proto::Request;
use crate::session::Session;
use crate::wire::OutBuf;

impl Session {
    /// Serves one request; its reply's header is already in `out`, the handler adds the body.
    pub(crate) fn dispatch(
        &self,
        req: Request<'_>,
        out: &mut OutBuf,
        dents: &mut Vec<u8>,
    ) -> OpResult {
        match req {
            Request::Auth => Err(EOPNOTSUPP),
            Request::Attach {
                fid,
                afid,
                aname,
                n_uname,
            } => self.attach(fid, afid, aname, n_uname, out),
            Request::Walk { fid, newfid, names } => self.walk(fid, newfid, names.as_slice(), out),
            Request::Clunk { fid } => self.clunk(fid),
            Request::Getattr { fid } => self.getattr(fid, out),
            Request::Setattr { fid, attr } => self.setattr(fid, &attr),
            Request::Statfs { fid } => self.statfs(fid, out),
            Request::Lopen { fid, flags } => self.lopen(fid, flags, out),
            Request::Lcreate {
                fid,
                name,
                flags,
                mode,
                gid,
            } => self.lcreate(fid, name, flags, mode, gid, out),
            Request::Read { fid, offset, count } => self.read(fid, offset, count, out),
            Request::Write { fid, offset, data } => self.write(fid, offset, data, out),
            Request::Fsync { fid, datasync } => self.fsync(fid, datasync),
            Request::Readdir { fid, offset, count } => self.readdir(fid, offset, count, out, dents),
            Request::Readlink { fid } => self.readlink(fid, out),
            Request::Mkdir {
                dfid,
                name,
                mode,
                gid,
            } => self.mkdir(dfid, name, mode, gid, out),
            Request::Symlink {
                fid,
                name,
                target,
                gid,
            } => self.symlink(fid, name, target, gid, out),
            Request::Mknod {
                dfid,
                name,
                mode,
                gid,
            } => self.mknod(dfid, name, mode, gid, out),
            Request::Link { dfid, fid, name } => self.link(dfid, fid, name),
            Request::Rename { fid, dfid, name } => self.rename(fid, dfid, name),
            Request::Renameat {
                olddirfid,
                oldname,
                newdirfid,
                newname,
            } => self.renameat(olddirfid, oldname, newdirfid, newname),
            Request::Unlinkat { dfid, name, flags } => self.unlinkat(dfid, name, flags),
            Request::Remove { fid } => self.remove(fid),
            Request::Xattrwalk { fid, newfid, name } => self.xattrwalk(fid, newfid, name, out),
            Request::Xattrcreate {
                fid,
                name,
                size,
                flags,
            } => self.xattrcreate(fid, name, size, flags),
            Request::Lock { fid, lock } => self.lock(fid, &lock, out),
            Request::Getlock { fid, lock } => self.getlock(fid, &lock, out),
        }
    }
}

/// Fails with EROFS on a read-only share.
pub(crate) fn writable(fid: &Fid) -> OpResult {
    if fid.share.readonly {
        Err(EROFS)
    } else {
        Ok(())
    }
}

/// A directory whose entries may change: writable, a directory, not a File share's root.
pub(crate) fn changeable_dir(fid: &Fid) -> OpResult {
    writable(fid)?;
    if fid.is_file_share_root() {
        return Err(EPERM);
    }
    if fid.node.kind != Kind::Dir {
        return Err(Errno(libc::ENOTDIR));
    }
    Ok(())
}

/// Fails with EXDEV when two fids belong to different shares.
pub(crate) fn same_share(a: &Fid, b: &Fid) -> OpResult {
    if Arc::ptr_eq(&a.share, &b.share) {
        Ok(())
    } else {
        Err(EXDEV)
    }
}
