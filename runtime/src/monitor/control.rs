//! The monitor's control socket (`<state dir>/ctl.sock`): how `start`, `kill`, `pause`,
//! `resume`, `ps` and `run` reach a container's monitor.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use guest_protocol::{self as proto, ProcessInfo};
use serde::{Deserialize, Serialize};

use crate::oci::sockets::SocketDir;
use crate::oci::state;
use crate::Error;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Attach the init's stdio and let it run.
    Start,
    Pause,
    Resume,
    Kill {
        signal: i32,
        all: bool,
    },
    /// The container's processes as the guest sees them.
    Ps,
    /// The terminal of `vmctl run`'s foreground container changed size.
    Resize {
        rows: u16,
        cols: u16,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlResponse {
    Ok,
    Processes { processes: Vec<ProcessInfo> },
    Error { message: String, code: u8 },
}

/// Sends one request to the monitor of the container whose state directory is `dir`.
pub fn call(dir: &Path, req: &ControlRequest) -> Result<ControlResponse, Error> {
    let sockets = SocketDir::open(dir)?;
    let mut s = UnixStream::connect(sockets.join(state::CONTROL_SOCKET)).map_err(|e| {
        Error::Internal(format!(
            "cannot reach the container's monitor at {}: {}",
            dir.join(state::CONTROL_SOCKET).display(),
            crate::error::describe_io(&e)
        ))
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    proto::write_frame(&mut s, req)
        .map_err(|e| Error::Internal(format!("cannot talk to the container's monitor: {e}")))?;
    let resp: ControlResponse = proto::read_frame(&mut s)
        .map_err(|e| Error::Internal(format!("no answer from the container's monitor: {e}")))?;
    match resp {
        ControlResponse::Error { message, code } => Err(if code == 1 {
            Error::Agent(message)
        } else {
            Error::NotExecutable { message, code }
        }),
        other => Ok(other),
    }
}
