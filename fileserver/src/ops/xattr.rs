//! Txattrwalk and Txattrcreate: extended attributes, read whole into a fid and read back with
//! Tread, or written with Twrite and set when the fid is clunked.
//!
//! Only these names are served: `user.*`, `security.capability` (file capabilities of
//! container images), and the POSIX ACLs `system.posix_acl_access`/`_default`. Others
//! (`trusted.*`, which the host's overlayfs acts on, `security.selinux`, ...) are refused with
//! EOPNOTSUPP and left out of lists.

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use crate::errno::{Errno, OpResult, EBADF, EINVAL, EOPNOTSUPP, EPERM};
use crate::fid::{Fid, FidState, XattrRead, XattrWrite};
use crate::ops::writable;
use crate::session::Session;
use crate::sys;
use crate::wire::OutBuf;

const XATTR_CREATE: u32 = 1;
const XATTR_REPLACE: u32 = 2;
const XATTR_NAME_MAX: usize = 255;

/// Whether the guest may see and change the attribute `name`.
pub(crate) fn allowed(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || matches!(
            name,
            b"security.capability" | b"system.posix_acl_access" | b"system.posix_acl_default"
        )
}

fn checked_name(raw: &[u8]) -> OpResult<CString> {
    if raw.len() > XATTR_NAME_MAX {
        return Err(Errno(libc::ERANGE));
    }
    if !allowed(raw) {
        return Err(EOPNOTSUPP);
    }
    CString::new(raw).map_err(|_| EINVAL)
}

/// Reads a value or list whose size may change under us: asks for the size, reads, retries a
/// few times if it grew.
fn read_sized(
    limit: usize,
    mut call: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
) -> OpResult<Vec<u8>> {
    for _ in 0..4 {
        let size = call(&mut [])?;
        if size > limit {
            return Err(Errno(libc::E2BIG));
        }
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Ok(n) if n <= buf.len() => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno(libc::ERANGE))
}

fn get(fd: BorrowedFd<'_>, name: &CString, limit: usize) -> OpResult<Vec<u8>> {
    read_sized(limit, |buf| sys::getxattr_fd(fd, name, buf))
}

/// The names the guest may see, each NUL-terminated.
fn list(fd: BorrowedFd<'_>, limit: usize) -> OpResult<Vec<u8>> {
    let all = read_sized(limit, |buf| sys::listxattr_fd(fd, buf))?;
    let mut shown = Vec::with_capacity(all.len());
    for name in all.split(|&b| b == 0).filter(|n| allowed(n)) {
        shown.extend_from_slice(name);
        shown.push(0);
    }
    Ok(shown)
}

/// Tread on an xattrwalk fid: a piece of the value.
pub(crate) fn read(value: &[u8], offset: u64, count: usize, out: &mut OutBuf) {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(value.len());
    let end = start.saturating_add(count).min(value.len());
    out.put_u32((end - start) as u32);
    out.put(&value[start..end]);
}

/// Twrite on an xattrcreate fid: fills the value, within the size given at creation.
pub(crate) fn write(w: &mut XattrWrite, offset: u64, data: &[u8]) -> OpResult<u32> {
    let start = usize::try_from(offset).map_err(|_| EINVAL)?;
    let end = start.checked_add(data.len()).ok_or(EINVAL)?;
    if end > w.value.len() {
        return Err(Errno(libc::ENOSPC));
    }
    w.value[start..end].copy_from_slice(data);
    w.written += data.len();
    Ok(data.len() as u32)
}

/// Tclunk of an xattrcreate fid: sets the value (or, for an empty value with XATTR_REPLACE,
/// which is how the Linux client sends removexattr, removes the attribute).
pub(crate) fn commit(fid: &Fid, w: &XattrWrite) -> OpResult {
    if w.written != w.value.len() {
        return Err(EINVAL);
    }
    if w.value.is_empty() && w.flags & XATTR_REPLACE != 0 {
        sys::removexattr_fd(fid.fd(), &w.name)?;
    } else {
        sys::setxattr_fd(fid.fd(), &w.name, &w.value, w.flags as libc::c_int)?;
    }
    Ok(())
}

impl Session {
    /// Txattrwalk: `newfid` holds the value of `name` (or, for an empty name, the list of
    /// names) of what `fid` holds; Rxattrwalk gives its size.
    pub(crate) fn xattrwalk(
        &self,
        fid_no: u32,
        newfid: u32,
        name: &[u8],
        out: &mut OutBuf,
    ) -> OpResult {
        let fid = self.fids.get(fid_no)?;
        if newfid != fid_no {
            self.fids.check_free(newfid)?;
        }
        let limit = self.limits.max_xattr_size;
        let value = if name.is_empty() {
            list(fid.fd(), limit)?
        } else {
            get(fid.fd(), &checked_name(name)?, limit)?
        };
        let size = value.len() as u64;
        let _charge = self.xattr_budget.charge(value.len())?;
        let parent = fid.parent().clone();
        let state = FidState::XattrRead(Arc::new(XattrRead { value, _charge }));
        let new = Fid::new(fid.share.clone(), fid.uid, fid.node.clone(), parent, state);
        if newfid == fid_no {
            self.fids.replace(fid_no, new)?;
        } else {
            self.fids.insert(newfid, new)?;
        }
        out.put_u64(size);
        Ok(())
    }

    /// Txattrcreate: `fid` becomes the attribute `name`, `size` bytes to be written, set at
    /// Tclunk with `flags` (XATTR_CREATE, XATTR_REPLACE).
    pub(crate) fn xattrcreate(&self, fid: u32, name: &[u8], size: u64, flags: u32) -> OpResult {
        let fid = self.fids.get(fid)?;
        writable(&fid)?;
        if fid.is_file_share_root() {
            return Err(EPERM);
        }
        let name = checked_name(name)?;
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(EINVAL);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > self.limits.max_xattr_size {
            return Err(Errno(libc::E2BIG));
        }
        let mut state = fid.state();
        if !matches!(*state, FidState::Walked) {
            return Err(EBADF);
        }
        let _charge = self.xattr_budget.charge(size)?;
        *state = FidState::XattrWrite(Box::new(XattrWrite {
            name,
            flags,
            value: vec![0u8; size],
            written: 0,
            _charge,
        }));
        Ok(())
    }
}
