//! Attaching a host side to one process in the guest (an exec'd process, or the init of
//! `vmctl run` on a terminal): its stdio streams, its terminal's size, its end.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use guest_protocol::{self as proto, Request, Response};

use super::agent::AgentConn;
use super::{pty, relay};
use crate::Error;

/// Where the process's stdio is on the host.
pub enum HostStdio {
    /// fds 0, 1 and 2.
    Inherited,
    /// A pty whose master goes to this socket (`--console-socket`).
    ConsoleSocket(PathBuf),
    /// fds 0 and 1 are the user's terminal (put in raw mode by the caller).
    Terminal,
}

pub struct Attached {
    outputs: Vec<JoinHandle<()>>,
    /// The host terminal whose size the guest's follows.
    size_fd: Option<RawFd>,
    /// Keeps the console pty's slave open while relaying.
    _console: Option<File>,
}

impl Attached {
    /// The host terminal the guest's follows (valid while `self` lives).
    pub fn size_fd(&self) -> Option<RawFd> {
        self.size_fd
    }

    /// The host terminal's size, when there is one.
    pub fn window_size(&self) -> Option<(u16, u16)> {
        self.size_fd.and_then(pty::window_size)
    }

    /// Waits (bounded) until the process's output has reached the host.
    pub fn drain(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for t in self.outputs {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Attaches process `id`'s stdio (`terminal`: one tty stream, else stdin/stdout/stderr).
pub fn attach(
    vsock: &Path,
    id: &str,
    terminal: bool,
    stdio: &HostStdio,
) -> Result<Attached, Error> {
    let io = |e| Error::io("cannot relay the process's stdio", e);
    let stream = |s| AgentConn::connect(vsock)?.attach(id, s);
    if !terminal {
        let (stdin, stdout, stderr) = relay::std_files().map_err(io)?;
        let s_in = stream(proto::Stream::Stdin)?;
        let s_out = stream(proto::Stream::Stdout)?;
        let s_err = stream(proto::Stream::Stderr)?;
        relay::input(stdin, s_in).map_err(io)?;
        let outputs = vec![
            relay::output(s_out, stdout).map_err(io)?,
            relay::output(s_err, stderr).map_err(io)?,
        ];
        return Ok(Attached {
            outputs,
            size_fd: None,
            _console: None,
        });
    }
    let tty = stream(proto::Stream::Tty)?;
    let (input, output, size_fd, console) = match stdio {
        HostStdio::ConsoleSocket(path) => {
            let p = pty::open()?;
            pty::send_fd(path, p.master.as_raw_fd())?;
            pty::make_controlling(p.slave.as_raw_fd());
            let fd = p.slave.as_raw_fd();
            (
                p.slave.try_clone().map_err(io)?,
                p.slave.try_clone().map_err(io)?,
                fd,
                Some(p.slave),
            )
        }
        HostStdio::Inherited | HostStdio::Terminal => {
            let (i, o, _) = relay::std_files().map_err(io)?;
            (i, o, 0, None)
        }
    };
    let out = relay::terminal(tty, input, output).map_err(io)?;
    let attached = Attached {
        outputs: vec![out],
        size_fd: Some(size_fd),
        _console: console,
    };
    if let Some((rows, cols)) = attached.window_size() {
        resize(vsock, id, rows, cols);
    }
    Ok(attached)
}

/// Sets process `id`'s terminal size; best effort (the process may be gone).
pub fn resize(vsock: &Path, id: &str, rows: u16, cols: u16) {
    if let Ok(mut a) = AgentConn::connect(vsock) {
        let _ = a.call(&Request::Resize {
            id: id.into(),
            size: proto::WindowSize { rows, cols },
        });
    }
}

/// Waits until process `id` ends.
pub fn wait(vsock: &Path, id: &str) -> Result<proto::ExitStatus, Error> {
    match AgentConn::connect(vsock)?.call_blocking(&Request::Wait { id: id.into() })? {
        Response::Exited { status } => Ok(status),
        other => Err(Error::Agent(format!(
            "unexpected answer to wait: {other:?}"
        ))),
    }
}
