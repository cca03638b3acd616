//! Length-prefixed, versioned frames carrying one JSON message each.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The protocol version both sides must speak.
pub const VERSION: u16 = 1;
/// The largest payload a frame may carry (1 MiB): a container's whole process spec fits many
/// times over, and a peer cannot make the other side allocate more.
pub const MAX_FRAME: u32 = 1 << 20;
/// Header: payload length (u32 LE) and version (u16 LE).
pub const HEADER_LEN: usize = 6;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary: a normal end.
    #[error("the connection was closed")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("the connection was closed in the middle of a frame")]
    Truncated,
    /// The header announced more than [`MAX_FRAME`] bytes. The stream cannot be resynchronised:
    /// answer with an error and close it.
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(u32),
    /// The peer speaks another protocol version (the payload was consumed).
    #[error("protocol version {0} is not supported (this side speaks {VERSION})")]
    Version(u16),
    /// The payload is not a message this side knows (the payload was consumed, the stream is
    /// still in step).
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the stream is still usable after this error: the frame was consumed whole, so the
    /// next one can be read.
    pub fn recoverable(&self) -> bool {
        matches!(self, FrameError::Version(_) | FrameError::Malformed(_))
    }
}

/// Writes `msg` as one frame. Fails without writing anything if it would exceed [`MAX_FRAME`].
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let payload = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame and decodes its message.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(r, &mut header)? {
        0 => return Err(FrameError::Closed),
        n if n < HEADER_LEN => return Err(FrameError::Truncated),
        _ => {}
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let version = u16::from_le_bytes([header[4], header[5]]);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? < payload.len() {
        return Err(FrameError::Truncated);
    }
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    serde_json::from_slice(&payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response};

    fn frame(len: u32, version: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = len.to_le_bytes().to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_message_round_trips() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Ps).unwrap();
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert!(matches!(back, Request::Ps));
    }

    #[test]
    fn frames_follow_each_other() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Response::Ok).unwrap();
        write_frame(&mut buf, &Response::Started { pid: 7 }).unwrap();
        let mut r = buf.as_slice();
        assert!(matches!(read_frame(&mut r).unwrap(), Response::Ok));
        assert!(matches!(
            read_frame(&mut r).unwrap(),
            Response::Started { pid: 7 }
        ));
        assert!(matches!(
            read_frame::<_, Response>(&mut r),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn an_oversized_header_is_refused_without_allocating() {
        let bytes = frame(u32::MAX, VERSION, b"");
        let err = read_frame::<_, Request>(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(u32::MAX)));
        assert!(!err.recoverable());
    }

    #[test]
    fn another_version_is_consumed_and_reported() {
        let mut bytes = frame(4, 99, b"null");
        write_frame(&mut bytes, &Request::Ps).unwrap();
        let mut r = bytes.as_slice();
        let err = read_frame::<_, Request>(&mut r).unwrap_err();
        assert!(matches!(err, FrameError::Version(99)));
        assert!(err.recoverable());
        assert!(matches!(read_frame(&mut r).unwrap(), Request::Ps));
    }

    #[test]
    fn garbage_is_malformed_and_the_stream_stays_in_step() {
        let mut bytes = frame(5, VERSION, b"{nope");
        let unknown = br#"{"op":"no_such"}"#;
        bytes.extend(frame(unknown.len() as u32, VERSION, unknown));
        write_frame(&mut bytes, &Request::Ps).unwrap();
        let mut r = bytes.as_slice();
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(read_frame(&mut r).unwrap(), Request::Ps));
    }

    #[test]
    fn a_cut_frame_is_truncated() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Request::Ps).unwrap();
        bytes.pop();
        assert!(matches!(
            read_frame::<_, Request>(&mut bytes.as_slice()),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame::<_, Request>(&mut &bytes[..3]),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn a_message_over_the_limit_is_not_written() {
        let huge = Request::Exec {
            id: "x".repeat(MAX_FRAME as usize),
            process: Box::default(),
        };
        let mut buf = Vec::new();
        assert!(matches!(
            write_frame(&mut buf, &huge),
            Err(FrameError::TooLarge(_))
        ));
        assert!(buf.is_empty());
    }
}
