//! Tunlinkat, Tremove, Trenameat, Trename: taking names away and moving them, all inside one
//! share.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::errno::{Errno, OpResult, EINVAL, ENOENT, EPERM};
use crate::fid::{Fid, Kind, Parent};
use crate::name::Name;
use crate::ops::{changeable_dir, same_share, writable};
use crate::session::Session;
use crate::sys;

impl Session {
    /// Tunlinkat: removes `name` from `dfid` (AT_REMOVEDIR, 0x200, for a directory).
    pub(crate) fn unlinkat(&self, dfid: u32, name: &[u8], flags: u32) -> OpResult {
        let dir = self.fids.get(dfid)?;
        changeable_dir(&dir)?;
        let name = Name::new(name)?;
        if flags & !(libc::AT_REMOVEDIR as u32) != 0 {
            return Err(EINVAL);
        }
        sys::unlinkat(dir.fd(), name.as_cstr(), flags as libc::c_int)?;
        Ok(())
    }

    /// Trenameat: moves `oldname` of `olddirfid` to `newname` of `newdirfid`.
    pub(crate) fn renameat(
        &self,
        olddirfid: u32,
        oldname: &[u8],
        newdirfid: u32,
        newname: &[u8],
    ) -> OpResult {
        let old = self.fids.get(olddirfid)?;
        let new = self.fids.get(newdirfid)?;
        same_share(&old, &new)?;
        changeable_dir(&old)?;
        changeable_dir(&new)?;
        let oldname = Name::new(oldname)?;
        let newname = Name::new(newname)?;
        sys::renameat(old.fd(), oldname.as_cstr(), new.fd(), newname.as_cstr())?;
        Ok(())
    }

    /// Tremove: removes the name the fid was walked to, and clunks the fid (also on failure).
    pub(crate) fn remove(&self, fid: u32) -> OpResult {
        let fid = self.fids.remove(fid)?;
        writable(&fid)?;
        let parent = checked_parent(&fid)?;
        let flags = if fid.node.kind == Kind::Dir {
            libc::AT_REMOVEDIR
        } else {
            0
        };
        sys::unlinkat(parent.dir.as_fd(), parent.name.as_cstr(), flags)?;
        Ok(())
    }

    /// Trename: moves the name the fid was walked to into `dfid` as `name`.
    pub(crate) fn rename(&self, fid: u32, dfid: u32, name: &[u8]) -> OpResult {
        let fid = self.fids.get(fid)?;
        let dir = self.fids.get(dfid)?;
        same_share(&fid, &dir)?;
        writable(&fid)?;
        changeable_dir(&dir)?;
        let name = Name::new(name)?;
        let parent = checked_parent(&fid)?;
        sys::renameat(
            parent.dir.as_fd(),
            parent.name.as_cstr(),
            dir.fd(),
            name.as_cstr(),
        )?;
        *fid.parent() = Some(Parent {
            dir: Arc::clone(&dir.node.fd),
            name,
            in_file_share_root: false,
        });
        Ok(())
    }
}

/// Where the fid's inode was found, if it is still there: the share's root has no parent
/// (EBUSY), a File share's one entry may not move (EPERM), and a name that now holds another
/// inode is not the fid's any more (ENOENT).
fn checked_parent(fid: &Fid) -> OpResult<Parent> {
    let parent = fid.parent().clone().ok_or(Errno(libc::EBUSY))?;
    if parent.in_file_share_root {
        return Err(EPERM);
    }
    let st = sys::fstatat(
        parent.dir.as_fd(),
        parent.name.as_cstr(),
        libc::AT_SYMLINK_NOFOLLOW,
    )?;
    if (st.st_dev, st.st_ino) != (fid.node.dev, fid.node.ino) {
        return Err(ENOENT);
    }
    Ok(parent)
}
