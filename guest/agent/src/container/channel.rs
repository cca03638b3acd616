//! The channel between the agent and the processes it creates: an AF_UNIX SOCK_SEQPACKET pair,
//! one message per packet. The child's end is close-on-exec, so a successful exec ends the stream
//! (the agent reads end of stream), like runc's exec fifo and sync pipe in one.
//!
//! Child to agent: the helper sends `Pid` of the process it created; that process sends its
//! terminal's master (`Pty`, with the descriptor), `Ready` when it waits for the start (the init
//! only), or `Error` and exits. Agent to child: `Start`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use guest_protocol::ErrorKind;

use crate::error::Error;
use crate::sys::fd;

/// The longest message (errors are cut to fit).
const MAX_MSG: usize = 4096;

/// A message from a child to the agent.
#[derive(Debug)]
pub enum Msg {
    Pid(i32),
    Pty(OwnedFd),
    Ready,
    Error { kind: ErrorKind, message: String },
}

impl Msg {
    /// The message reporting `e` (its kind and text).
    pub fn error(e: &Error) -> Msg {
        Msg::Error {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

const KINDS: [ErrorKind; 5] = [
    ErrorKind::Invalid,
    ErrorKind::NotFound,
    ErrorKind::NotExecutable,
    ErrorKind::State,
    ErrorKind::System,
];

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

impl Channel {
    /// (the agent's end, the child's end), both close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = fd::seqpacket_pair()?;
        Ok((Channel(a), Channel(b)))
    }

    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel(fd)
    }

    pub fn into_fd(self) -> OwnedFd {
        self.0
    }

    /// Sends `msg` (child side).
    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        let sock = self.0.as_fd();
        match msg {
            Msg::Pid(pid) => {
                let mut b = vec![b'P'];
                b.extend_from_slice(&pid.to_le_bytes());
                fd::send_msg(sock, &b, None)
            }
            Msg::Pty(master) => fd::send_msg(sock, b"T", Some(master.as_fd())),
            Msg::Ready => fd::send_msg(sock, b"R", None),
            Msg::Error { kind, message } => {
                let k = KINDS.iter().position(|x| x == kind).unwrap_or(4) as u8;
                let mut b = vec![b'E', k];
                let mut text = message.as_bytes();
                if text.len() > MAX_MSG - 2 {
                    text = &text[..MAX_MSG - 2];
                }
                b.extend_from_slice(text);
                fd::send_msg(sock, &b, None)
            }
        }
    }

    /// Receives the next message (agent side); `None` at the end of the stream (every child end
    /// closed: the children exited or exec'd).
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        let (n, passed) = fd::recv_msg(self.0.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed message from a child");
        let msg = match buf[0] {
            b'P' if n == 5 => Msg::Pid(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])),
            b'T' => Msg::Pty(passed.ok_or_else(bad)?),
            b'R' => Msg::Ready,
            b'E' if n >= 2 => Msg::Error {
                kind: *KINDS.get(buf[1] as usize).unwrap_or(&ErrorKind::System),
                message: String::from_utf8_lossy(&buf[2..n]).into_owned(),
            },
            _ => return Err(bad()),
        };
        Ok(Some(msg))
    }

    /// Tells the waiting init to exec (agent side).
    pub fn send_start(&self) -> io::Result<()> {
        fd::send_msg(self.0.as_fd(), b"S", None)
    }

    /// Waits for [`Channel::send_start`] (child side): `false` when the agent's end closed first.
    pub fn wait_start(&self) -> io::Result<bool> {
        let mut buf = [0u8; 16];
        let (n, _) = fd::recv_msg(self.0.as_fd(), &mut buf)?;
        Ok(n == 1 && buf[0] == b'S')
    }

    /// Makes [`Channel::recv`] fail with EAGAIN after `timeout` without a message.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        fd::set_recv_timeout(self.0.as_fd(), timeout)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_the_end_is_seen() {
        let (agent, child) = Channel::pair().unwrap();
        let (r, _w) = fd::pipe().unwrap();

        child.send(&Msg::Pid(42)).unwrap();
        child.send(&Msg::Pty(r)).unwrap();
        child.send(&Msg::Ready).unwrap();
        let e = Error::NotFound {
            program: "x".into(),
            reason: "gone".into(),
        };
        child.send(&Msg::error(&e)).unwrap();
        drop(child);

        assert!(matches!(agent.recv().unwrap(), Some(Msg::Pid(42))));
        assert!(matches!(agent.recv().unwrap(), Some(Msg::Pty(_))));
        assert!(matches!(agent.recv().unwrap(), Some(Msg::Ready)));
        match agent.recv().unwrap() {
            Some(Msg::Error { kind, message }) => {
                assert_eq!(kind, ErrorKind::NotFound);
                assert_eq!(message, "exec: \"x\": gone");
            }
            other => panic!("{other:?}"),
        }
        assert!(agent.recv().unwrap().is_none());
    }

    #[test]
    fn start_reaches_the_child_and_a_closed_agent_is_no_start() {
        let (agent, child) = Channel::pair().unwrap();
        agent.send_start().unwrap();
        assert!(child.wait_start().unwrap());
        drop(agent);
        assert!(!child.wait_start().unwrap());
    }

    #[test]
    fn long_errors_are_cut_to_one_message() {
        let (agent, child) = Channel::pair().unwrap();
        let e = Error::Invalid("x".repeat(10_000));
        child.send(&Msg::error(&e)).unwrap();
        match agent.recv().unwrap() {
            Some(Msg::Error { message, .. }) => assert_eq!(message.len(), MAX_MSG - 2),
            other => panic!("{other:?}"),
        }
    }
}
