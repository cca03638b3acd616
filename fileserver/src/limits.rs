//! The per-session limits the server enforces against a guest that sends whatever it likes.

/// The largest msize the server negotiates by default: 1 MiB of payload plus the 24-byte
/// read/write header the Linux client reserves (`P9_IOHDRSZ`). Linux's fd transport caps its own
/// msize at 1 MiB, so with that client the negotiated size is at most 1 MiB.
pub const DEFAULT_MAX_MSIZE: u32 = (1 << 20) + 24;

/// Limits of one session (one guest mount). Every one of them bounds memory or descriptors the
/// guest can make the host hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message size the server agrees to in `Tversion` (the client's msize is taken
    /// if smaller). A frame whose size field exceeds the negotiated msize ends the session before
    /// anything is allocated for it. Clamped to 8 KiB..=16 MiB.
    pub max_msize: u32,
    /// Fids a session may hold at once. Each holds an `O_PATH` descriptor (plus one for an open
    /// file); past this `Twalk`/`Tattach`/`Txattrwalk` fail with `EMFILE`. At least 16.
    pub max_fids: usize,
    /// Most worker threads of a session, which is also the number of requests served at once
    /// (in flight). Workers start on demand. Each keeps a request and a reply buffer of up to
    /// msize bytes, so a session's buffers stay under `workers * (2 * msize + 64 KiB)`.
    /// Clamped to 1..=64.
    pub workers: usize,
    /// Largest extended-attribute value (and attribute list) the server reads or writes:
    /// bigger ones fail with `E2BIG`. Clamped to at most 64 KiB, Linux's own limit. The values
    /// a session's fids hold (between Txattrwalk/Txattrcreate and Tclunk) total at most 16
    /// times this; past that, ENOMEM.
    pub max_xattr_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msize: DEFAULT_MAX_MSIZE,
            max_fids: 4096,
            workers: 4,
            max_xattr_size: 64 * 1024,
        }
    }
}

impl Limits {
    /// The limits brought into their allowed ranges.
    pub(crate) fn sanitized(self) -> Limits {
        Limits {
            max_msize: self.max_msize.clamp(8 * 1024, 16 << 20),
            max_fids: self.max_fids.max(16),
            workers: self.workers.clamp(1, 64),
            max_xattr_size: self.max_xattr_size.min(64 * 1024),
        }
    }
}
