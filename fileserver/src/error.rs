//! The crate's one error type: what went wrong setting up a share or running a session.

use std::io;
use std::path::PathBuf;

/// Errors of the file server. A request the guest gets wrong is never one of these: it fails that
/// request with an `Rlerror`. These are the share table's set-up errors and the reasons a whole
/// session ends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "share tag {0:?} is not usable: a tag is the guest's aname, 1 to 255 bytes without NUL"
    )]
    InvalidTag(String),
    #[error("share tag {0:?} is already in use: give each share of a VM its own tag")]
    DuplicateTag(String),
    #[error("share {tag:?}: cannot open {path} as its root directory: {source} (it must be an existing host directory)")]
    OpenRoot {
        tag: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("file share {tag:?}: {name:?} is not a single file name (no '/', not empty, not '.' or '..', at most 255 bytes)")]
    InvalidFileName { tag: String, name: String },
    #[error(
        "file share {tag:?}: {path}: {source} (the shared file must exist when the share is added)"
    )]
    FileEntry {
        tag: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("/proc/self/fd is not available ({0}): the server reopens files through it, mount /proc in the VMM's mount namespace")]
    NoProcFd(io::Error),
    #[error("9P session: cannot clone the connection socket: {0}")]
    CloneSocket(io::Error),
    #[error("9P session: cannot start a worker thread: {0}")]
    Spawn(io::Error),
    #[error("9P session: reading from the connection: {0}")]
    Read(io::Error),
    #[error("9P session: writing to the connection: {0}")]
    Write(io::Error),
    #[error("9P session: the client sent a {size}-byte frame, over the negotiated msize of {msize}; session closed")]
    FrameTooLarge { size: u32, msize: u32 },
    #[error("9P session: the client sent a {0}-byte frame, shorter than the 7-byte 9P header; session closed")]
    FrameTooSmall(u32),
    #[error("9P session: the connection ended in the middle of a frame")]
    TruncatedFrame,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
