//! Reading one 9P frame: size[4] type[1] tag[2] body, the size checked before the body is read.

use std::io::{self, Read};

use crate::error::{Error, Result};

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) ty: u8,
    pub(crate) tag: u16,
    /// Length of the body (size - 7).
    pub(crate) body_len: usize,
}

/// Reads the next frame's header and its body into `buf[..body_len]` (`buf` only grows, to the
/// largest body so far). `None` at a clean end of the stream (between frames). A size field
/// over `max` ends the session before anything is allocated for it.
pub(crate) fn read<R: Read>(r: &mut R, buf: &mut Vec<u8>, max: u32) -> Result<Option<Header>> {
    let mut head = [0u8; 7];
    if !read_full_or_eof(r, &mut head)? {
        return Ok(None);
    }
    let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if size < 7 {
        return Err(Error::FrameTooSmall(size));
    }
    if size > max {
        return Err(Error::FrameTooLarge { size, msize: max });
    }
    let body_len = size as usize - 7;
    if buf.len() < body_len {
        buf.resize(body_len, 0);
    }
    r.read_exact(&mut buf[..body_len])
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::TruncatedFrame,
            _ => Error::Read(e),
        })?;
    Ok(Some(Header {
        ty: head[4],
        tag: u16::from_le_bytes([head[5], head[6]]),
        body_len,
    }))
}

/// Fills `buf`; false if the stream ended before its first byte.
fn read_full_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(Error::TruncatedFrame),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Read(e)),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_frame() {
        let bytes = [9u8, 0, 0, 0, 120, 5, 0, 0xAA, 0xBB];
        let mut buf = Vec::new();

        let header = read(&mut &bytes[..], &mut buf, 100).unwrap().unwrap();

        assert_eq!(
            header,
            Header {
                ty: 120,
                tag: 5,
                body_len: 2
            }
        );
        assert_eq!(&buf[..2], &[0xAA, 0xBB]);
    }

    #[test]
    fn a_clean_end_is_none_and_a_cut_frame_is_an_error() {
        let mut buf = Vec::new();

        assert!(read(&mut &[][..], &mut buf, 100).unwrap().is_none());
        let cut = read(&mut &[9u8, 0, 0][..], &mut buf, 100);
        assert!(matches!(cut, Err(Error::TruncatedFrame)));
        let cut_body = read(&mut &[9u8, 0, 0, 0, 120, 5, 0, 1][..], &mut buf, 100);
        assert!(matches!(cut_body, Err(Error::TruncatedFrame)));
    }

    #[test]
    fn an_oversized_frame_fails_without_allocating() {
        let bytes = [0xFFu8, 0xFF, 0xFF, 0x7F, 120, 0, 0];
        let mut buf = Vec::new();

        let result = read(&mut &bytes[..], &mut buf, 8192);

        assert!(matches!(result, Err(Error::FrameTooLarge { .. })));
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn a_frame_shorter_than_its_header_fails() {
        let bytes = [3u8, 0, 0, 0, 120, 0, 0];

        let result = read(&mut &bytes[..], &mut Vec::new(), 8192);

        assert!(matches!(result, Err(Error::FrameTooSmall(3))));
    }
}
