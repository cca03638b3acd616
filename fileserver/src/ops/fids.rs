//! Tattach, Twalk, Tclunk: making and dropping fids.

use crate::errno::{OpResult, EINVAL, ENOENT};
use crate::fid::{Fid, FidState};
use crate::proto::{NOFID, NONUNAME};
use crate::session::Session;
use crate::walk;
use crate::wire::OutBuf;

/// The uid of an attach that names no numeric user.
const NOBODY: u32 = 65534;

impl Session {
    /// Tattach: a fid on the root of the share `aname`, as user `n_uname`. No authentication:
    /// afid must be NOFID (Tauth itself fails).
    pub(crate) fn attach(
        &self,
        fid: u32,
        afid: u32,
        aname: &[u8],
        n_uname: u32,
        out: &mut OutBuf,
    ) -> OpResult {
        if afid != NOFID {
            return Err(EINVAL);
        }
        let share = self.shares.get(aname).ok_or(ENOENT)?;
        self.fids.check_free(fid)?;
        let node = walk::root_node(&share)?;
        let uid = if n_uname == NONUNAME { NOBODY } else { n_uname };
        let qid = node.qid;
        self.fids
            .insert(fid, Fid::new(share, uid, node, None, FidState::Walked))?;
        out.put_qid(qid);
        Ok(())
    }

    /// Twalk: `newfid` on what `names` lead to from `fid`. Rwalk carries a qid per name walked;
    /// if a later name fails, the reply holds the qids so far and `newfid` is not made (the
    /// first name failing is an Rlerror).
    pub(crate) fn walk(
        &self,
        fid: u32,
        newfid: u32,
        names: &[&[u8]],
        out: &mut OutBuf,
    ) -> OpResult {
        let from = self.fids.get(fid)?;
        if newfid != fid {
            self.fids.check_free(newfid)?;
        } else if names.is_empty() {
            out.put_u16(0); // a walk of nothing onto itself changes nothing
            return Ok(());
        }
        let mut node = from.node.clone();
        let mut parent = from.parent().clone();
        let count_at = out.len();
        out.put_u16(0);
        let mut walked = 0u16;
        for raw in names {
            match walk::step(&from, &node, raw) {
                Ok((child, found_in)) => {
                    out.put_qid(child.qid);
                    node = child;
                    parent = Some(found_in);
                    walked += 1;
                }
                Err(e) if walked == 0 => return Err(e),
                Err(_) => break,
            }
        }
        out.patch_u16(count_at, walked);
        if usize::from(walked) < names.len() {
            return Ok(());
        }
        let new = Fid::new(from.share.clone(), from.uid, node, parent, FidState::Walked);
        if newfid == fid {
            self.fids.replace(fid, new)
        } else {
            self.fids.insert(newfid, new)
        }
    }

    /// Tclunk: drops the fid; an extended attribute written through it is set now (and its
    /// failure is the clunk's, though the fid is gone either way).
    pub(crate) fn clunk(&self, fid: u32) -> OpResult {
        let fid = self.fids.remove(fid)?;
        let state = std::mem::replace(&mut *fid.state(), FidState::Walked);
        match state {
            FidState::XattrWrite(w) => crate::ops::xattr::commit(&fid, &w),
            _ => Ok(()),
        }
    }
}
