//! Tgetattr, Tsetattr, Tstatfs.

use crate::errno::{Errno, OpResult, EINVAL, EPERM};
use crate::fid::Kind;
use crate::ops::writable;
use crate::proto::SetAttr;
use crate::session::Session;
use crate::sys;
use crate::walk;
use crate::wire::{OutBuf, Qid};

/// The Rgetattr fields the server fills (P9_STATS_BASIC: mode to blocks).
const STATS_BASIC: u64 = 0x7ff;

/// Tsetattr's valid bits (fs/9p/vfs_inode_dotl.c).
const ATTR_MODE: u32 = 1 << 0;
const ATTR_UID: u32 = 1 << 1;
const ATTR_GID: u32 = 1 << 2;
const ATTR_SIZE: u32 = 1 << 3;
const ATTR_ATIME: u32 = 1 << 4;
const ATTR_MTIME: u32 = 1 << 5;
const ATTR_ATIME_SET: u32 = 1 << 7;
const ATTR_MTIME_SET: u32 = 1 << 8;

impl Session {
    /// Tgetattr: the inode's status, as lstat sees it.
    pub(crate) fn getattr(&self, fid: u32, out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        let st = sys::fstat(fid.fd())?;
        let kind = walk::kind_of(st.st_mode);
        out.put_u64(STATS_BASIC);
        out.put_qid(Qid {
            ty: walk::qid_type(kind),
            version: 0,
            path: walk::qid_path(st.st_ino, st.st_dev, fid.share.dev),
        });
        out.put_u32(st.st_mode);
        out.put_u32(st.st_uid);
        out.put_u32(st.st_gid);
        out.put_u64(st.st_nlink);
        out.put_u64(st.st_rdev);
        out.put_u64(st.st_size as u64);
        out.put_u64(st.st_blksize as u64);
        out.put_u64(st.st_blocks as u64);
        for (sec, nsec) in [
            (st.st_atime, st.st_atime_nsec),
            (st.st_mtime, st.st_mtime_nsec),
            (st.st_ctime, st.st_ctime_nsec),
            (0, 0),
        ] {
            out.put_u64(sec as u64);
            out.put_u64(nsec as u64);
        }
        out.put_u64(0); // gen
        out.put_u64(0); // data_version
        Ok(())
    }

    /// Tsetattr: owner, then mode, then size, then times (so times given explicitly win over
    /// the truncation's). Works on the inode the fid holds, a link itself for a link.
    pub(crate) fn setattr(&self, fid: u32, attr: &SetAttr) -> OpResult {
        let fid = self.fids.get(fid)?;
        writable(&fid)?;
        if fid.is_file_share_root() {
            return Err(EPERM);
        }
        let fd = fid.fd();
        if attr.valid & (ATTR_UID | ATTR_GID) != 0 {
            let uid = (attr.valid & ATTR_UID != 0).then_some(attr.uid);
            let gid = (attr.valid & ATTR_GID != 0).then_some(attr.gid);
            sys::chown_fd(fd, uid, gid)?;
        }
        if attr.valid & ATTR_MODE != 0 {
            sys::chmod_fd(fd, attr.mode & 0o7777)?;
        }
        if attr.valid & ATTR_SIZE != 0 {
            match fid.node.kind {
                Kind::File => sys::truncate_fd(fd, attr.size)?,
                Kind::Dir => return Err(Errno(libc::EISDIR)),
                Kind::Symlink | Kind::Special => return Err(EINVAL),
            }
        }
        if attr.valid & (ATTR_ATIME | ATTR_MTIME) != 0 {
            let atime = time(
                attr.valid & ATTR_ATIME != 0,
                attr.valid & ATTR_ATIME_SET != 0,
                attr.atime_sec,
                attr.atime_nsec,
            )?;
            let mtime = time(
                attr.valid & ATTR_MTIME != 0,
                attr.valid & ATTR_MTIME_SET != 0,
                attr.mtime_sec,
                attr.mtime_nsec,
            )?;
            sys::utimens_fd(fd, &[atime, mtime])?;
        }
        Ok(())
    }

    /// Tstatfs: the host file system's numbers.
    pub(crate) fn statfs(&self, fid: u32, out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        let st = sys::fstatfs(fid.fd())?;
        let fsid: [i32; 2] = fsid_words(&st);
        out.put_u32(st.f_type as u32);
        out.put_u32(st.f_bsize as u32);
        out.put_u64(st.f_blocks);
        out.put_u64(st.f_bfree);
        out.put_u64(st.f_bavail);
        out.put_u64(st.f_files);
        out.put_u64(st.f_ffree);
        out.put_u64(u64::from(fsid[0] as u32) | (u64::from(fsid[1] as u32) << 32));
        out.put_u32(st.f_namelen as u32);
        Ok(())
    }
}

/// The two words of a statfs's f_fsid (libc keeps the field private; its Debug output is not an
/// interface, so read them through the struct's layout: two i32s).
fn fsid_words(st: &libc::statfs) -> [i32; 2] {
    let fsid = &st.f_fsid;
    let size = std::mem::size_of_val(fsid);
    if size != 8 {
        return [0, 0];
    }
    let mut words = [0i32; 2];
    // SAFETY: f_fsid is a plain-old-data struct of exactly two i32s (size checked above);
    // copying its 8 bytes into an array of two i32s reads only initialized memory.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (fsid as *const libc::fsid_t).cast::<u8>(),
            words.as_mut_ptr().cast::<u8>(),
            8,
        );
    }
    words
}

/// One of utimensat's two times: the given one, now, or left alone.
fn time(change: bool, given: bool, sec: u64, nsec: u64) -> OpResult<libc::timespec> {
    let (tv_sec, tv_nsec) = match (change, given) {
        (false, _) => (0, libc::UTIME_OMIT),
        (true, false) => (0, libc::UTIME_NOW),
        (true, true) => {
            if nsec >= 1_000_000_000 {
                return Err(EINVAL);
            }
            (sec as i64, nsec as i64)
        }
    };
    Ok(libc::timespec { tv_sec, tv_nsec })
}
