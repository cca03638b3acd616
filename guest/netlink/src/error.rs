//! The one error type of the crate: every message says what was being done.

use std::io;

/// What went wrong, and what was being done when it did.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The NETLINK_ROUTE socket could not be opened or bound.
    #[error("cannot open a NETLINK_ROUTE socket: {0}")]
    Socket(#[source] io::Error),
    /// Sending a request or receiving its reply failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. "cannot list links".
        what: String,
        /// The error of send(2) or recv(2).
        source: io::Error,
    },
    /// The kernel refused the request.
    #[error("{what}: {source}{}", detail(.message))]
    Kernel {
        /// What was being done, e.g. "cannot add 10.0.0.2/24 to link 3".
        what: String,
        /// The errno the kernel answered in its NLMSG_ERROR (or NLMSG_DONE).
        source: io::Error,
        /// The kernel's own explanation (extended ACK), when it gave one.
        message: Option<String>,
    },
    /// The kernel's reply could not be decoded.
    #[error("{what}: malformed reply from the kernel: {reason}")]
    Decode {
        /// What was being done.
        what: String,
        /// What was wrong with the reply.
        reason: String,
    },
    /// An argument was rejected before anything was sent to the kernel.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being done.
        what: String,
        /// What is wrong with the argument.
        reason: String,
    },
}

fn detail(message: &Option<String>) -> String {
    match message {
        Some(message) => format!(" ({message})"),
        None => String::new(),
    }
}

/// A failure of one exchange with the kernel, before it is told what was being done.
#[derive(Debug)]
pub(crate) enum Failure {
    Io(io::Error),
    Kernel { errno: i32, message: Option<String> },
    Decode(String),
}

impl Failure {
    /// The errno of a kernel refusal.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Failure::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Turns the failure into an [`Error`] that says `what` was being done.
    pub(crate) fn context(self, what: String) -> Error {
        match self {
            Failure::Io(source) => Error::Io { what, source },
            Failure::Kernel { errno, message } => Error::Kernel {
                what,
                source: io::Error::from_raw_os_error(errno),
                message,
            },
            Failure::Decode(reason) => Error::Decode { what, reason },
        }
    }
}
