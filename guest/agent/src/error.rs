//! The one error type of vmctl-init and the container agent.
//!
//! PID 1's own start-up errors are fatal: it prints them as one line and resets the VM. Errors of
//! a host request are answered as a `Response::Error` of the kind [`Error::kind`] says, with the
//! message as its text; the agent goes on.

use std::io;

use guest_protocol::{ErrorKind, Stream};
use thiserror::Error;

use crate::init::cmdline::CmdError;

#[derive(Debug, Error)]
pub enum Error {
    // --- PID 1's start-up (fatal) ---------------------------------------------------------------
    #[error("cannot create {path}: {source} (is the root file system read-only?)")]
    Mkdir {
        path: &'static str,
        source: io::Error,
    },
    #[error("cannot mount {fstype} on {target}: {source} (does the kernel have {fstype}?)")]
    Mount {
        fstype: &'static str,
        target: &'static str,
        source: io::Error,
    },
    #[error("cannot read /proc/cmdline: {0}")]
    Cmdline(io::Error),
    #[error("bad kernel command line: {0} (vmctl.cmd= must be base64url of the argv joined by NUL bytes)")]
    Command(#[from] CmdError),
    #[error("cannot block signals: {0}")]
    Signals(io::Error),
    #[error("cannot wait for signals: {0}")]
    SignalWait(io::Error),
    #[error("cannot reap child processes: {0}")]
    Reap(io::Error),
    #[error("cannot put the console in raw mode: {0}")]
    RawMode(io::Error),
    #[error(
        "cannot open the serial console {path}: {source} (does the kernel have the 8250 driver?)"
    )]
    OpenTty {
        path: &'static str,
        source: io::Error,
    },
    #[error("cannot start the shell {path}: {source} (is busybox in the initramfs?)")]
    Shell {
        path: &'static str,
        source: io::Error,
    },
    #[error("cannot listen on vsock port {port}: {source} (does the VM have a virtio-vsock device and the kernel CONFIG_VIRTIO_VSOCKETS?)")]
    Listen { port: u32, source: io::Error },
    #[error("cannot start a thread to {what}: {source} (out of memory?)")]
    Thread {
        what: &'static str,
        source: io::Error,
    },

    // --- a request's errors (answered, never fatal) ---------------------------------------------
    /// The request or the spec asks for something invalid; the text says what and why.
    #[error("{0}")]
    Invalid(String),
    /// As runc says it (`executable file not found in $PATH`), for the host to exit 127.
    #[error("exec: \"{program}\": {reason}")]
    NotFound { program: String, reason: String },
    /// As runc says it, for the host to exit 126.
    #[error("exec: \"{program}\": {reason}")]
    NotExecutable { program: String, reason: String },
    #[error(
        "no process \"{0}\" in this container (exec it first; the container's init is \"init\")"
    )]
    UnknownProcess(String),
    #[error("process \"{0}\" has already exited")]
    Exited(String),
    #[error("the process id \"{0}\" is already in use in this container: choose another")]
    IdInUse(String),
    #[error("the container {0}")]
    ContainerState(&'static str),
    #[error("the {stream:?} stream of process \"{id}\" {why}")]
    StreamUnavailable {
        id: String,
        stream: Stream,
        why: &'static str,
    },
    #[error("process \"{0}\" has no terminal (it was not started with terminal: true)")]
    NoTerminal(String),
    #[error("too many {what} (at most {limit}): {hint}")]
    TooMany {
        what: &'static str,
        limit: usize,
        hint: &'static str,
    },
    /// Setting up the VM's network interfaces, addresses or routes failed.
    #[error("network: {0}")]
    Network(String),
    /// A system call failed; `what` says which step, in words.
    #[error("{what}: {source}")]
    Sys { what: String, source: io::Error },
    /// An error a container process reported during its set-up (its kind and its text).
    #[error("{message}")]
    Reported { kind: ErrorKind, message: String },
}

impl Error {
    /// The protocol's kind of this error, for a `Response::Error`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::IdInUse(_) | Error::NoTerminal(_) => ErrorKind::Invalid,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::NotExecutable { .. } => ErrorKind::NotExecutable,
            Error::UnknownProcess(_)
            | Error::Exited(_)
            | Error::ContainerState(_)
            | Error::StreamUnavailable { .. }
            | Error::TooMany { .. } => ErrorKind::State,
            Error::Reported { kind, .. } => *kind,
            _ => ErrorKind::System,
        }
    }

    /// A failed system call during `what`.
    pub fn sys(what: impl Into<String>, source: io::Error) -> Error {
        Error::Sys {
            what: what.into(),
            source,
        }
    }
}

/// `Result::map_err` shorthand: `.ctx(|| format!("mount {x}"))`.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, Error> {
        self.map_err(|source| Error::sys(what(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_read_as_runc_writes_them() {
        let e = Error::NotFound {
            program: "nope".into(),
            reason: crate::container::lookpath::NOT_IN_PATH.into(),
        };
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(Error::UnknownProcess("x".into()).kind(), ErrorKind::State);
        assert_eq!(Error::IdInUse("x".into()).kind(), ErrorKind::Invalid);
        let io = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(Error::sys("mount", io).kind(), ErrorKind::System);
    }
}
