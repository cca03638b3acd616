//! Fids: what a guest's handle refers to (an inode held by an `O_PATH` descriptor) and the
//! session's bounded table of them.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::budget::Charge;
use crate::errno::{Errno, OpResult, EBADF};
use crate::name::Name;
use crate::share::ShareRoot;
use crate::wire::Qid;

/// What kind of inode a fid holds (an inode's type never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// Devices, fifos, sockets: the guest kernel serves them itself; the server never opens them.
    Special,
}

/// An inode reached by a walk.
#[derive(Clone)]
pub(crate) struct Node {
    /// `O_PATH | O_NOFOLLOW`: holds the inode without opening it.
    pub(crate) fd: Arc<OwnedFd>,
    pub(crate) kind: Kind,
    pub(crate) qid: Qid,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// The share's root (for a File share: the directory that shows one entry).
    pub(crate) is_root: bool,
}

/// Where a fid's inode was found: the directory and the name, for Tremove and Trename (the
/// two requests that name no directory). Checked against the inode before use.
#[derive(Clone)]
pub(crate) struct Parent {
    pub(crate) dir: Arc<OwnedFd>,
    pub(crate) name: Name,
    /// The directory is a File share's root, whose one entry cannot be removed or renamed.
    pub(crate) in_file_share_root: bool,
}

/// A directory opened by Tlopen, read by Treaddir.
pub(crate) struct DirState {
    pub(crate) file: File,
    /// Where the descriptor's position is known to be (a getdents64 cookie); None after a
    /// Treaddir that stopped in the middle of what the kernel returned.
    pub(crate) pos: Option<u64>,
}

/// An extended attribute being written (Txattrcreate, then Twrites, set at Tclunk).
pub(crate) struct XattrWrite {
    pub(crate) name: CString,
    pub(crate) flags: u32,
    pub(crate) value: Vec<u8>,
    pub(crate) written: usize,
    pub(crate) _charge: Charge,
}

/// Txattrwalk's result: a value, or a NUL-separated list of names.
pub(crate) struct XattrRead {
    pub(crate) value: Vec<u8>,
    pub(crate) _charge: Charge,
}

/// What a fid is used for after the walk that made it.
pub(crate) enum FidState {
    Walked,
    File(Arc<File>),
    Dir(DirState),
    XattrRead(Arc<XattrRead>),
    XattrWrite(Box<XattrWrite>),
}

/// One fid.
pub(crate) struct Fid {
    pub(crate) share: Arc<ShareRoot>,
    /// The attaching user: owner of what is created through this fid.
    pub(crate) uid: u32,
    pub(crate) node: Node,
    pub(crate) parent: Mutex<Option<Parent>>,
    pub(crate) state: Mutex<FidState>,
}

impl Fid {
    pub(crate) fn new(
        share: Arc<ShareRoot>,
        uid: u32,
        node: Node,
        parent: Option<Parent>,
        state: FidState,
    ) -> Arc<Fid> {
        Arc::new(Fid {
            share,
            uid,
            node,
            parent: Mutex::new(parent),
            state: Mutex::new(state),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.node.fd.as_fd()
    }

    /// The root of a File share: nothing may be created, removed or renamed in it.
    pub(crate) fn is_file_share_root(&self) -> bool {
        self.node.is_root && self.share.only.is_some()
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, FidState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn parent(&self) -> MutexGuard<'_, Option<Parent>> {
        self.parent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A session's fids, at most `max` of them.
pub(crate) struct FidTable {
    map: Mutex<HashMap<u32, Arc<Fid>>>,
    max: usize,
}

impl FidTable {
    pub(crate) fn new(max: usize) -> FidTable {
        FidTable {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<u32, Arc<Fid>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, fid: u32) -> OpResult<Arc<Fid>> {
        self.map().get(&fid).cloned().ok_or(EBADF)
    }

    /// Fails with EBADF if `fid` is taken, EMFILE if the table is full.
    pub(crate) fn check_free(&self, fid: u32) -> OpResult {
        let map = self.map();
        if fid == crate::proto::NOFID || map.contains_key(&fid) {
            return Err(EBADF);
        }
        if map.len() >= self.max {
            return Err(Errno(libc::EMFILE));
        }
        Ok(())
    }

    /// Adds a new fid (see [`FidTable::check_free`] for the errors).
    pub(crate) fn insert(&self, fid: u32, value: Arc<Fid>) -> OpResult {
        let mut map = self.map();
        if fid == crate::proto::NOFID || map.contains_key(&fid) {
            return Err(EBADF);
        }
        if map.len() >= self.max {
            return Err(Errno(libc::EMFILE));
        }
        map.insert(fid, value);
        Ok(())
    }

    /// Points an existing fid at something new (a walk onto itself, Tlcreate).
    pub(crate) fn replace(&self, fid: u32, value: Arc<Fid>) -> OpResult {
        match self.map().get_mut(&fid) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(EBADF),
        }
    }

    pub(crate) fn remove(&self, fid: u32) -> OpResult<Arc<Fid>> {
        self.map().remove(&fid).ok_or(EBADF)
    }

    pub(crate) fn clear(&self) {
        let old = std::mem::take(&mut *self.map());
        drop(old);
    }
}
