//! The one error type of vmctl-init. Each is fatal: PID 1 prints it as one line and resets the VM.

use std::io;

use thiserror::Error;

use super::cmdline::CmdError;

#[derive(Debug, Error)]
pub enum Error {
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
}
