//! One checked path component from the guest, kept on the stack with its NUL.

use std::ffi::CStr;

use crate::errno::{Errno, OpResult, EINVAL};

/// Linux's longest file name.
pub(crate) const NAME_MAX: usize = 255;

/// A single path component the server may pass to an `*at()` call: not empty, not `.` or `..`,
/// without `/` or NUL, at most 255 bytes. A walk made only of these can go down from a
/// directory, never up or sideways.
#[derive(Clone)]
pub(crate) struct Name {
    buf: [u8; NAME_MAX + 1],
    len: usize,
}

impl Name {
    /// Checks a component from the guest.
    pub(crate) fn new(raw: &[u8]) -> OpResult<Name> {
        if raw.is_empty() || raw == b"." || raw == b".." || raw.iter().any(|&b| b == b'/' || b == 0)
        {
            return Err(EINVAL);
        }
        if raw.len() > NAME_MAX {
            return Err(Errno(libc::ENAMETOOLONG));
        }
        let mut buf = [0u8; NAME_MAX + 1];
        buf[..raw.len()].copy_from_slice(raw);
        Ok(Name {
            buf,
            len: raw.len(),
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The name with its NUL, for system calls. (It cannot hold a NUL of its own, so the empty
    /// fallback is never taken; an empty name would only make the call fail with ENOENT.)
    pub(crate) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf[..=self.len]).unwrap_or(c"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_plain_component() {
        let name = Name::new(b"etc").unwrap();

        assert_eq!(name.as_bytes(), b"etc");
        assert_eq!(name.as_cstr().to_bytes(), b"etc");
    }

    #[test]
    fn refuses_dots_slashes_nul_and_empty() {
        let bad: [&[u8]; 7] = [b"", b".", b"..", b"a/b", b"/", b"a\0b", b"../x"];

        for raw in bad {
            assert_eq!(Name::new(raw).err(), Some(EINVAL), "{raw:?}");
        }
    }

    #[test]
    fn refuses_names_over_255_bytes() {
        let long = vec![b'x'; 256];

        let result = Name::new(&long);

        assert_eq!(result.err(), Some(Errno(libc::ENAMETOOLONG)));
        assert!(Name::new(&long[..255]).is_ok());
    }
}
