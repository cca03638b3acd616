//! Splitting a received datagram into netlink messages, without trusting a single length field.

use netlink_packet_core::{
    parse_string, NetlinkBuffer, NlasIterator, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NLM_F_ACK_TLVS, NLM_F_CAPPED,
};

use crate::error::Failure;

/// Size of a `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's human readable explanation.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// One netlink message of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) seq: u32,
    pub(crate) flags: u16,
    pub(crate) body: Body<'a>,
}

/// What a netlink message says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// NLMSG_ERROR with error 0.
    Ack,
    /// NLMSG_ERROR with an errno, or NLMSG_DONE ending a dump that failed.
    Error { errno: i32, message: Option<String> },
    /// NLMSG_DONE ending a dump.
    Done,
    /// NLMSG_NOOP.
    Noop,
    /// Any other message: the whole message, header included.
    Message(&'a [u8]),
}

/// The messages of `datagram`; after the first malformed one, nothing more.
pub(crate) fn frames(datagram: &[u8]) -> Frames<'_> {
    Frames { rest: datagram }
}

pub(crate) struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match split(self.rest) {
            Ok((frame, len)) => {
                self.rest = self.rest.get(align(len)..).unwrap_or_default();
                Some(Ok(frame))
            }
            Err(failure) => {
                self.rest = &[];
                Some(Err(failure))
            }
        }
    }
}

/// The first message of `bytes` and its length.
fn split(bytes: &[u8]) -> Result<(Frame<'_>, usize), Failure> {
    let buffer = NetlinkBuffer::new_checked(bytes).map_err(|e| Failure::Decode(e.to_string()))?;
    let len = buffer.length() as usize;
    let (flags, payload) = (buffer.flags(), buffer.payload());
    let body = match buffer.message_type() {
        NLMSG_ERROR => match code(payload, "NLMSG_ERROR")? {
            0 => Body::Ack,
            code => Body::Error {
                errno: errno(code),
                message: error_extack(flags, payload),
            },
        },
        // The kernel may send an NLMSG_DONE without its code.
        NLMSG_DONE if payload.is_empty() => Body::Done,
        NLMSG_DONE => match code(payload, "NLMSG_DONE")? {
            0 => Body::Done,
            code => Body::Error {
                errno: errno(code),
                message: extack(flags, payload.get(4..).unwrap_or_default()),
            },
        },
        NLMSG_NOOP => Body::Noop,
        NLMSG_OVERRUN => return Err(Failure::Decode("NLMSG_OVERRUN: data was lost".into())),
        _ => Body::Message(&bytes[..len]),
    };
    let seq = buffer.sequence_number();
    Ok((Frame { seq, flags, body }, len))
}

/// The leading `int` of an NLMSG_ERROR or NLMSG_DONE payload.
fn code(payload: &[u8], what: &str) -> Result<i32, Failure> {
    match payload.first_chunk::<4>() {
        Some(bytes) => Ok(i32::from_ne_bytes(*bytes)),
        None => Err(Failure::Decode(format!(
            "{what} of {} bytes",
            payload.len()
        ))),
    }
}

/// The errno of a (negative) error code.
fn errno(code: i32) -> i32 {
    code.checked_abs().unwrap_or(i32::MAX)
}

/// The extended ACK message of an NLMSG_ERROR payload: the code, the request echoed (only its
/// header when capped), then the attributes.
fn error_extack(flags: u16, payload: &[u8]) -> Option<String> {
    let echoed = payload.get(4..)?;
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        HEADER_LEN
    } else {
        u32::from_ne_bytes(*echoed.first_chunk::<4>()?) as usize
    };
    extack(flags, echoed.get(align(echoed_len)..)?)
}

/// The NLMSGERR_ATTR_MSG among extended ACK attributes, when the kernel flagged some.
fn extack(flags: u16, attributes: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    NlasIterator::new(attributes)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .and_then(|nla| parse_string(nla.value()).ok())
        .filter(|message| !message.is_empty())
}

fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}
