//! Tlock and Tgetlock.
//!
//! The guest kernel keeps its processes' POSIX locks itself and asks the server only after its
//! own table allows a lock, so locks between the guest's processes work as on a local file
//! system. The server grants every lock and reports no conflicting one: locks are not shared
//! with host processes (as with QEMU's 9p server).

use crate::errno::{OpResult, EINVAL};
use crate::proto::Flock;
use crate::session::Session;
use crate::wire::OutBuf;

const LOCK_SUCCESS: u8 = 0;
/// P9_LOCK_TYPE_UNLCK; RDLCK is 0, WRLCK 1.
const LOCK_TYPE_UNLCK: u8 = 2;

impl Session {
    /// Tlock: Rlock with status success.
    pub(crate) fn lock(&self, fid: u32, lock: &Flock<'_>, out: &mut OutBuf) -> OpResult {
        self.fids.get(fid)?;
        if lock.ty > LOCK_TYPE_UNLCK {
            return Err(EINVAL);
        }
        let _ = (lock.flags, lock.start, lock.length, lock.proc_id);
        out.put_u8(LOCK_SUCCESS);
        Ok(())
    }

    /// Tgetlock: no conflicting lock (the request's range, type unlocked).
    pub(crate) fn getlock(&self, fid: u32, lock: &Flock<'_>, out: &mut OutBuf) -> OpResult {
        self.fids.get(fid)?;
        if lock.ty > LOCK_TYPE_UNLCK {
            return Err(EINVAL);
        }
        out.put_u8(LOCK_TYPE_UNLCK);
        out.put_u64(lock.start);
        out.put_u64(lock.length);
        out.put_u32(lock.proc_id);
        out.put_str(lock.client_id);
        Ok(())
    }
}
