//! Tlopen, Tlcreate, Tread, Twrite, Tfsync, Treadlink: opening files and moving their bytes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::errno::{Errno, OpResult, EBADF, EINVAL, EROFS};
use crate::fid::{DirState, Fid, FidState, Kind, Parent};
use crate::name::Name;
use crate::ops::create::own;
use crate::ops::{changeable_dir, writable, xattr};
use crate::session::Session;
use crate::sys;
use crate::walk;
use crate::wire::OutBuf;

/// 9P2000.L open flags (include/net/9p/9p.h); the access mode is the low two bits.
const P9_ACCMODE: u32 = 0o3;
const P9_CREATE: u32 = 0o100;
const P9_EXCL: u32 = 0o200;
const P9_TRUNC: u32 = 0o1000;
const P9_APPEND: u32 = 0o2000;
const P9_DSYNC: u32 = 0o10000;
const P9_DIRECTORY: u32 = 0o200000;
const P9_NOATIME: u32 = 0o1000000;
const P9_SYNC: u32 = 0o4000000;

/// Rread/Rreaddir header: size[4] type[1] tag[2] count[4]; the Linux client also wants the
/// whole reply strictly under msize.
pub(crate) const IO_HEADER: u32 = 11 + 1;

/// The host open flags for a guest's flags. Only what matters on the host is kept: the
/// access mode, truncate, append, sync and noatime (never O_CREAT, O_NONBLOCK, O_DIRECT...).
fn host_flags(flags: u32) -> OpResult<libc::c_int> {
    let mut host = match flags & P9_ACCMODE {
        0 => libc::O_RDONLY,
        1 => libc::O_WRONLY,
        2 => libc::O_RDWR,
        _ => return Err(EINVAL),
    };
    for (p9, flag) in [
        (P9_TRUNC, libc::O_TRUNC),
        (P9_APPEND, libc::O_APPEND),
        (P9_DSYNC, libc::O_DSYNC),
        (P9_SYNC, libc::O_SYNC),
        (P9_NOATIME, libc::O_NOATIME),
    ] {
        if flags & p9 != 0 {
            host |= flag;
        }
    }
    Ok(host)
}

/// Whether an open with these flags could change the file.
fn modifies(flags: u32) -> bool {
    flags & P9_ACCMODE != 0 || flags & (P9_TRUNC | P9_APPEND | P9_CREATE) != 0
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Session {
    /// Tlopen: opens the fid's file or directory for I/O. Links, devices, fifos and sockets are
    /// never opened (the guest kernel handles special files itself).
    pub(crate) fn lopen(&self, fid: u32, flags: u32, out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        let host = host_flags(flags)?;
        if fid.share.readonly && modifies(flags) {
            return Err(EROFS);
        }
        let mut state = fid.state();
        if !matches!(*state, FidState::Walked) {
            return Err(EBADF);
        }
        *state = match fid.node.kind {
            Kind::Dir => {
                if modifies(flags & !P9_CREATE) {
                    return Err(Errno(libc::EISDIR));
                }
                let file = sys::reopen(fid.fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
                FidState::Dir(DirState { file, pos: None })
            }
            Kind::File => {
                if flags & P9_DIRECTORY != 0 {
                    return Err(Errno(libc::ENOTDIR));
                }
                FidState::File(Arc::new(sys::reopen(fid.fd(), host)?))
            }
            Kind::Symlink => return Err(Errno(libc::ELOOP)),
            Kind::Special => return Err(Errno(libc::EACCES)),
        };
        out.put_qid(fid.node.qid);
        out.put_u32(0);
        Ok(())
    }

    /// Tlcreate: creates and opens `name` in the directory `fid`, which then stands for the
    /// new file. The file is owned by the attaching user and the group the client gives, with
    /// exactly the mode it asked for. Without P9_EXCL an existing regular file is opened instead
    /// (never a link, never a special file).
    pub(crate) fn lcreate(
        &self,
        fid_no: u32,
        name: &[u8],
        flags: u32,
        mode: u32,
        gid: u32,
        out: &mut OutBuf,
    ) -> OpResult {
        let dir = self.fids.get(fid_no)?;
        changeable_dir(&dir)?;
        if !matches!(*dir.state(), FidState::Walked) {
            return Err(EBADF);
        }
        let name = Name::new(name)?;
        let host = host_flags(flags)?;
        let create = host | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let file = match sys::openat(dir.fd(), name.as_cstr(), create, mode & 0o7777) {
            Ok(fd) => {
                let file = File::from(fd);
                own(file.as_fd(), dir.uid, gid, Some(mode))?;
                file
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & P9_EXCL == 0 => {
                open_existing(&dir, &name, host)?
            }
            Err(e) => return Err(e.into()),
        };
        let node_fd = OwnedFd::from(sys::reopen(file.as_fd(), libc::O_PATH)?);
        let node = walk::node_of(&dir.share, Arc::new(node_fd), false)?;
        let qid = node.qid;
        let parent = Parent {
            dir: Arc::clone(&dir.node.fd),
            name,
            in_file_share_root: false,
        };
        let state = FidState::File(Arc::new(file));
        let new = Fid::new(dir.share.clone(), dir.uid, node, Some(parent), state);
        self.fids.replace(fid_no, new)?;
        out.put_qid(qid);
        out.put_u32(0);
        Ok(())
    }

    /// Tread: at most `count` bytes (and never more than fits msize), read by one pread straight
    /// into the reply.
    pub(crate) fn read(&self, fid: u32, offset: u64, count: u32, out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        let count = count.min(self.msize().saturating_sub(IO_HEADER)) as usize;
        let file = match &*fid.state() {
            FidState::File(f) => Arc::clone(f),
            FidState::XattrRead(x) => {
                xattr::read(&x.value, offset, count, out);
                return Ok(());
            }
            FidState::Dir(_) => return Err(Errno(libc::EISDIR)),
            _ => return Err(EBADF),
        };
        let count_at = out.len();
        out.put_u32(0);
        let n = retry(|| file.read_at(out.tail(count), offset))?;
        out.commit(n);
        out.patch_u32(count_at, n as u32);
        Ok(())
    }

    /// Twrite: one pwrite from the request buffer (or into an extended attribute being made).
    pub(crate) fn write(&self, fid: u32, offset: u64, data: &[u8], out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        writable(&fid)?;
        let file = match &mut *fid.state() {
            FidState::File(f) => Arc::clone(f),
            FidState::XattrWrite(w) => {
                out.put_u32(xattr::write(w, offset, data)?);
                return Ok(());
            }
            FidState::Dir(_) => return Err(Errno(libc::EISDIR)),
            _ => return Err(EBADF),
        };
        let n = retry(|| file.write_at(data, offset))?;
        out.put_u32(n as u32);
        Ok(())
    }

    /// Tfsync: fdatasync or fsync of the open file or directory.
    pub(crate) fn fsync(&self, fid: u32, datasync: u32) -> OpResult {
        let fid = self.fids.get(fid)?;
        let file = match &*fid.state() {
            FidState::File(f) => Arc::clone(f),
            FidState::Dir(d) => return Ok(d.file.sync_all()?),
            _ => return Err(EBADF),
        };
        if datasync != 0 {
            file.sync_data()?;
        } else {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Treadlink: the link's target, as text; the server never follows it.
    pub(crate) fn readlink(&self, fid: u32, out: &mut OutBuf) -> OpResult {
        let fid = self.fids.get(fid)?;
        if fid.node.kind != Kind::Symlink {
            return Err(EINVAL);
        }
        const MAX: usize = libc::PATH_MAX as usize;
        let mut buf = [0u8; MAX];
        let target = sys::readlink_fd(fid.fd(), &mut buf)?;
        if target.len() >= MAX {
            return Err(Errno(libc::ENAMETOOLONG));
        }
        out.put_str(target);
        Ok(())
    }
}

/// Tlcreate without P9_EXCL on a name that exists: opens it if it is a regular file.
fn open_existing(dir: &Fid, name: &Name, host: libc::c_int) -> OpResult<File> {
    let node = walk::open_child(&dir.share, &dir.node.fd, name)?;
    match node.kind {
        Kind::File => Ok(sys::reopen(node.fd.as_fd(), host)?),
        Kind::Dir => Err(Errno(libc::EISDIR)),
        Kind::Symlink | Kind::Special => Err(Errno(libc::EEXIST)),
    }
}
