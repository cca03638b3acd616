//! Treaddir: directory entries from getdents64, re-encoded as 9P dirents
//! (qid[13] offset[8] type[1] name[s]) up to the count the client asked for.

use std::os::fd::AsFd;

use crate::errno::{Errno, OpResult, EBADF};
use crate::fid::{FidState, Kind};
use crate::name::Name;
use crate::ops::io::IO_HEADER;
use crate::session::Session;
use crate::sys;
use crate::walk;
use crate::wire::{OutBuf, Qid};

/// linux_dirent64's fixed part: d_ino[8] d_off[8] d_reclen[2] d_type[1].
const DIRENT64_HEADER: usize = 19;
/// A 9P dirent without its name: qid[13] offset[8] type[1] name length[2].
const ENTRY_FIXED: usize = 13 + 8 + 1 + 2;
/// Most getdents64 bytes read at once (a worker's buffer).
const DENTS_MAX: usize = 64 * 1024;
/// Fewest getdents64 bytes asked for (room for the longest name).
const DENTS_MIN: usize = 1024;

/// One getdents64 record.
struct Dirent<'a> {
    ino: u64,
    off: u64,
    d_type: u8,
    name: &'a [u8],
    reclen: usize,
}

/// The record at the start of `buf`, if it is whole.
fn parse(buf: &[u8]) -> Option<Dirent<'_>> {
    if buf.len() < DIRENT64_HEADER {
        return None;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let reclen = usize::from(u16::from_ne_bytes([buf[16], buf[17]]));
    if reclen < DIRENT64_HEADER || reclen > buf.len() {
        return None;
    }
    let field = &buf[DIRENT64_HEADER..reclen];
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    Some(Dirent {
        ino: word(0),
        off: word(8),
        d_type: buf[18],
        name: &field[..len],
        reclen,
    })
}

/// Whether a File share's root shows `name` (its one entry, `.` and `..`); other directories
/// show everything.
fn visible(name: &[u8], only: Option<&Name>) -> bool {
    match only {
        None => true,
        Some(only) => name == only.as_bytes() || name == b"." || name == b"..",
    }
}

impl Session {
    /// Treaddir: entries from `offset` (0, or the offset of the last entry the client got).
    pub(crate) fn readdir(
        &self,
        fid: u32,
        offset: u64,
        count: u32,
        out: &mut OutBuf,
        dents: &mut Vec<u8>,
    ) -> OpResult {
        let fid = self.fids.get(fid)?;
        let count = count.min(self.msize().saturating_sub(IO_HEADER)) as usize;
        let only = if fid.is_file_share_root() {
            fid.share.only.as_ref()
        } else {
            None
        };
        let mut state = fid.state();
        let FidState::Dir(dir) = &mut *state else {
            return Err(if fid.node.kind == Kind::Dir {
                EBADF
            } else {
                Errno(libc::ENOTDIR)
            });
        };
        if dir.pos != Some(offset) {
            sys::seek_to(dir.file.as_fd(), offset)?;
            dir.pos = Some(offset);
        }
        if dents.len() < DENTS_MAX {
            dents.resize(DENTS_MAX, 0);
        }
        let count_at = out.len();
        out.put_u32(0);
        let start = out.len();
        'fill: loop {
            let room = count - (out.len() - start);
            if room <= ENTRY_FIXED {
                break;
            }
            let want = room.clamp(DENTS_MIN, DENTS_MAX);
            let n = sys::getdents64(dir.file.as_fd(), &mut dents[..want])?;
            if n == 0 {
                break;
            }
            let mut at = 0;
            let mut last = dir.pos;
            while let Some(entry) = parse(&dents[at..n]) {
                if visible(entry.name, only) {
                    if out.len() - start + ENTRY_FIXED + entry.name.len() > count {
                        // The descriptor is past entries the client has not got.
                        dir.pos = None;
                        break 'fill;
                    }
                    out.put_qid(Qid {
                        ty: walk::qid_type_of_dtype(entry.d_type),
                        version: 0,
                        path: walk::qid_path(entry.ino, fid.node.dev, fid.share.dev),
                    });
                    out.put_u64(entry.off);
                    out.put_u8(entry.d_type);
                    out.put_str(entry.name);
                }
                last = Some(entry.off);
                at += entry.reclen;
            }
            dir.pos = last;
        }
        let bytes = out.len() - start;
        out.patch_u32(count_at, bytes as u32);
        Ok(())
    }
}
