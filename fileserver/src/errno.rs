//! The errno a failed request reports to the guest in its `Rlerror`.

use std::io;

/// A Linux errno value, sent back as `Rlerror { ecode }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub i32);

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// What a request handler returns: its reply is already encoded, or the errno to send instead.
pub(crate) type OpResult<T = ()> = std::result::Result<T, Errno>;

pub(crate) const EBADF: Errno = Errno(libc::EBADF);
pub(crate) const EINVAL: Errno = Errno(libc::EINVAL);
pub(crate) const EROFS: Errno = Errno(libc::EROFS);
pub(crate) const EPERM: Errno = Errno(libc::EPERM);
pub(crate) const ENOENT: Errno = Errno(libc::ENOENT);
pub(crate) const EXDEV: Errno = Errno(libc::EXDEV);
pub(crate) const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
