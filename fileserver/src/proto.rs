//! 9P2000.L requests as the Linux client sends them (include/net/9p/9p.h, net/9p/client.c),
//! decoded from a frame's body without copying.

use crate::wire::{Decoder, Truncated};

/// Message types (T-messages; the reply is type + 1).
pub(crate) mod ty {
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const RVERSION: u8 = 101;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const RFLUSH: u8 = 109;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// The "no fid" value (Tattach's afid when there is no authentication).
pub(crate) const NOFID: u32 = u32::MAX;
/// Tattach's n_uname when the client gives none.
pub(crate) const NONUNAME: u32 = u32::MAX;
/// Most names in one Twalk (P9_MAXWELEM).
pub(crate) const MAXWELEM: usize = 16;

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Shorter than its fields, or more than 16 walk names: EINVAL.
    Malformed,
    /// Not a 9P2000.L request the server serves: EOPNOTSUPP.
    Unknown,
}

impl From<Truncated> for DecodeError {
    fn from(_: Truncated) -> Self {
        DecodeError::Malformed
    }
}

/// Up to 16 names of one Twalk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkNames<'a> {
    names: [&'a [u8]; MAXWELEM],
    len: usize,
}

impl<'a> WalkNames<'a> {
    pub(crate) fn as_slice(&self) -> &[&'a [u8]] {
        &self.names[..self.len]
    }
}

/// Tsetattr's fields (struct p9_iattr_dotl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetAttr {
    pub valid: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime_sec: u64,
    pub atime_nsec: u64,
    pub mtime_sec: u64,
    pub mtime_nsec: u64,
}

/// Tlock's and Tgetlock's fields (Tgetlock has no flags).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flock<'a> {
    pub ty: u8,
    pub flags: u32,
    pub start: u64,
    pub length: u64,
    pub proc_id: u32,
    pub client_id: &'a [u8],
}

/// One decoded request; byte strings borrow from the request buffer. (It lives on a worker's
/// stack for one request; the walk's inline names are cheaper than a heap allocation.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Request<'a> {
    Auth,
    Attach {
        fid: u32,
        afid: u32,
        aname: &'a [u8],
        n_uname: u32,
    },
    Walk {
        fid: u32,
        newfid: u32,
        names: WalkNames<'a>,
    },
    Getattr {
        fid: u32,
    },
    Setattr {
        fid: u32,
        attr: SetAttr,
    },
    Statfs {
        fid: u32,
    },
    Lopen {
        fid: u32,
        flags: u32,
    },
    Lcreate {
        fid: u32,
        name: &'a [u8],
        flags: u32,
        mode: u32,
        gid: u32,
    },
    Read {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Write {
        fid: u32,
        offset: u64,
        data: &'a [u8],
    },
    Clunk {
        fid: u32,
    },
    Remove {
        fid: u32,
    },
    Readdir {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Fsync {
        fid: u32,
        datasync: u32,
    },
    Mkdir {
        dfid: u32,
        name: &'a [u8],
        mode: u32,
        gid: u32,
    },
    Symlink {
        fid: u32,
        name: &'a [u8],
        target: &'a [u8],
        gid: u32,
    },
    Mknod {
        dfid: u32,
        name: &'a [u8],
        mode: u32,
        gid: u32,
    },
    Readlink {
        fid: u32,
    },
    Link {
        dfid: u32,
        fid: u32,
        name: &'a [u8],
    },
    Rename {
        fid: u32,
        dfid: u32,
        name: &'a [u8],
    },
    Renameat {
        olddirfid: u32,
        oldname: &'a [u8],
        newdirfid: u32,
        newname: &'a [u8],
    },
    Unlinkat {
        dfid: u32,
        name: &'a [u8],
        flags: u32,
    },
    Xattrwalk {
        fid: u32,
        newfid: u32,
        name: &'a [u8],
    },
    Xattrcreate {
        fid: u32,
        name: &'a [u8],
        size: u64,
        flags: u32,
    },
    Lock {
        fid: u32,
        lock: Flock<'a>,
    },
    Getlock {
        fid: u32,
        lock: Flock<'a>,
    },
}

/// Tversion's fields (served by the session itself, not a handler).
pub(crate) fn decode_version(body: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let mut d = Decoder::new(body);
    Ok((d.u32()?, d.string()?))
}

/// Tflush's oldtag.
pub(crate) fn decode_flush(body: &[u8]) -> Result<u16, DecodeError> {
    Ok(Decoder::new(body).u16()?)
}

/// Decodes the body of a request of type `ty`. Trailing bytes are ignored.
pub(crate) fn decode(ty: u8, body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let mut d = Decoder::new(body);
    let d = &mut d;
    let req = match ty {
        ty::TAUTH => Request::Auth,
        ty::TATTACH => {
            let (fid, afid) = (d.u32()?, d.u32()?);
            let _uname = d.string()?;
            let aname = d.string()?;
            let n_uname = d.u32()?;
            Request::Attach {
                fid,
                afid,
                aname,
                n_uname,
            }
        }
        ty::TWALK => {
            let (fid, newfid) = (d.u32()?, d.u32()?);
            let len = d.u16()? as usize;
            if len > MAXWELEM {
                return Err(DecodeError::Malformed);
            }
            let mut names = [&[][..]; MAXWELEM];
            for name in names.iter_mut().take(len) {
                *name = d.string()?;
            }
            Request::Walk {
                fid,
                newfid,
                names: WalkNames { names, len },
            }
        }
        ty::TGETATTR => {
            let fid = d.u32()?;
            let _request_mask = d.u64()?;
            Request::Getattr { fid }
        }
        ty::TSETATTR => Request::Setattr {
            fid: d.u32()?,
            attr: SetAttr {
                valid: d.u32()?,
                mode: d.u32()?,
                uid: d.u32()?,
                gid: d.u32()?,
                size: d.u64()?,
                atime_sec: d.u64()?,
                atime_nsec: d.u64()?,
                mtime_sec: d.u64()?,
                mtime_nsec: d.u64()?,
            },
        },
        ty::TSTATFS => Request::Statfs { fid: d.u32()? },
        ty::TLOPEN => Request::Lopen {
            fid: d.u32()?,
            flags: d.u32()?,
        },
        ty::TLCREATE => Request::Lcreate {
            fid: d.u32()?,
            name: d.string()?,
            flags: d.u32()?,
            mode: d.u32()?,
            gid: d.u32()?,
        },
        ty::TREAD => Request::Read {
            fid: d.u32()?,
            offset: d.u64()?,
            count: d.u32()?,
        },
        ty::TWRITE => Request::Write {
            fid: d.u32()?,
            offset: d.u64()?,
            data: d.data()?,
        },
        ty::TCLUNK => Request::Clunk { fid: d.u32()? },
        ty::TREMOVE => Request::Remove { fid: d.u32()? },
        ty::TREADDIR => Request::Readdir {
            fid: d.u32()?,
            offset: d.u64()?,
            count: d.u32()?,
        },
        ty::TFSYNC => Request::Fsync {
            fid: d.u32()?,
            datasync: d.u32()?,
        },
        ty::TMKDIR => Request::Mkdir {
            dfid: d.u32()?,
            name: d.string()?,
            mode: d.u32()?,
            gid: d.u32()?,
        },
        ty::TSYMLINK => Request::Symlink {
            fid: d.u32()?,
            name: d.string()?,
            target: d.string()?,
            gid: d.u32()?,
        },
        ty::TMKNOD => {
            let (dfid, name, mode) = (d.u32()?, d.string()?, d.u32()?);
            let (_major, _minor) = (d.u32()?, d.u32()?);
            Request::Mknod {
                dfid,
                name,
                mode,
                gid: d.u32()?,
            }
        }
        ty::TREADLINK => Request::Readlink { fid: d.u32()? },
        ty::TLINK => Request::Link {
            dfid: d.u32()?,
            fid: d.u32()?,
            name: d.string()?,
        },
        ty::TRENAME => Request::Rename {
            fid: d.u32()?,
            dfid: d.u32()?,
            name: d.string()?,
        },
        ty::TRENAMEAT => Request::Renameat {
            olddirfid: d.u32()?,
            oldname: d.string()?,
            newdirfid: d.u32()?,
            newname: d.string()?,
        },
        ty::TUNLINKAT => Request::Unlinkat {
            dfid: d.u32()?,
            name: d.string()?,
            flags: d.u32()?,
        },
        ty::TXATTRWALK => Request::Xattrwalk {
            fid: d.u32()?,
            newfid: d.u32()?,
            name: d.string()?,
        },
        ty::TXATTRCREATE => Request::Xattrcreate {
            fid: d.u32()?,
            name: d.string()?,
            size: d.u64()?,
            flags: d.u32()?,
        },
        ty::TLOCK => Request::Lock {
            fid: d.u32()?,
            lock: Flock {
                ty: d.u8()?,
                flags: d.u32()?,
                start: d.u64()?,
                length: d.u64()?,
                proc_id: d.u32()?,
                client_id: d.string()?,
            },
        },
        ty::TGETLOCK => Request::Getlock {
            fid: d.u32()?,
            lock: Flock {
                ty: d.u8()?,
                flags: 0,
                start: d.u64()?,
                length: d.u64()?,
                proc_id: d.u32()?,
                client_id: d.string()?,
            },
        },
        _ => return Err(DecodeError::Unknown),
    };
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_body(names: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&(names.len() as u16).to_le_bytes());
        for n in names {
            b.extend_from_slice(&(n.len() as u16).to_le_bytes());
            b.extend_from_slice(n);
        }
        b
    }

    #[test]
    fn decodes_a_walk() {
        let body = walk_body(&[b"usr", b"bin"]);

        let req = decode(ty::TWALK, &body).unwrap();

        let Request::Walk { fid, newfid, names } = req else {
            panic!("{req:?}")
        };
        assert_eq!((fid, newfid), (1, 2));
        assert_eq!(names.as_slice(), &[&b"usr"[..], &b"bin"[..]]);
    }

    #[test]
    fn refuses_a_walk_of_more_than_16_names() {
        let names: Vec<&[u8]> = vec![b"a"; 17];
        let body = walk_body(&names);

        assert_eq!(decode(ty::TWALK, &body).err(), Some(DecodeError::Malformed));
    }

    #[test]
    fn refuses_a_write_whose_count_exceeds_the_frame() {
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&1000u32.to_le_bytes());
        body.extend_from_slice(&[0; 10]);

        assert_eq!(
            decode(ty::TWRITE, &body).err(),
            Some(DecodeError::Malformed)
        );
    }

    #[test]
    fn unknown_and_reply_types_are_unknown() {
        for t in [0u8, 7, 13, 101, 112, 124, 126, 255] {
            assert_eq!(
                decode(t, &[0; 64]).err(),
                Some(DecodeError::Unknown),
                "type {t}"
            );
        }
    }

    #[test]
    fn every_prefix_of_every_request_decodes_or_fails_cleanly() {
        let body: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for t in 0..=255u8 {
            for len in 0..body.len() {
                let _ = decode(t, &body[..len]);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut buf = vec![0u8; 512];
        for _ in 0..20_000 {
            let len = (next() % 512) as usize;
            for b in buf.iter_mut().take(len) {
                *b = next() as u8;
            }
            let t = next() as u8;

            let _ = decode(t, &buf[..len]);
            let _ = decode_version(&buf[..len]);
            let _ = decode_flush(&buf[..len]);
        }
    }
}
