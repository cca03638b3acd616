//! A host-side connection to the guest agent, through the VM's hybrid vsock socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use guest_protocol::{self as proto, ErrorKind, Request, Response};

use crate::Error;

/// How long one request may take before the agent is considered gone (Wait has none).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct AgentConn {
    stream: UnixStream,
}

impl AgentConn {
    /// Connects to the agent's port through `vsock_socket` (Firecracker's hybrid layout:
    /// `CONNECT <port>\n`, answered `OK <port>\n`).
    pub fn connect(vsock_socket: &Path) -> Result<AgentConn, Error> {
        let unreachable =
            |what: String| Error::Agent(format!("cannot reach the guest agent: {what}"));
        let mut stream = UnixStream::connect(vsock_socket)
            .map_err(|e| unreachable(crate::error::describe_io(&e)))?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .write_all(format!("CONNECT {}\n", proto::AGENT_PORT).as_bytes())
            .map_err(|e| unreachable(crate::error::describe_io(&e)))?;
        // Byte by byte: what follows the line belongs to the protocol.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 32 {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                Ok(_) => return Err(unreachable("the VM refused the connection".into())),
                Err(e) => return Err(unreachable(crate::error::describe_io(&e))),
            }
        }
        if !line.starts_with(b"OK ") {
            return Err(unreachable(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        Ok(AgentConn { stream })
    }

    /// Sends `req` and returns the agent's answer; an agent error becomes an [`Error`].
    pub fn call(&mut self, req: &Request) -> Result<Response, Error> {
        proto::write_frame(&mut self.stream, req)
            .map_err(|e| Error::Agent(format!("cannot talk to the guest agent: {e}")))?;
        let resp: Response = proto::read_frame(&mut self.stream)
            .map_err(|e| Error::Agent(format!("no answer from the guest agent: {e}")))?;
        match resp {
            Response::Error { kind, message } => Err(agent_error(kind, message)),
            other => Ok(other),
        }
    }

    /// [`AgentConn::call`] without a deadline, for requests that wait (Wait).
    pub fn call_blocking(&mut self, req: &Request) -> Result<Response, Error> {
        let _ = self.stream.set_read_timeout(None);
        let r = self.call(req);
        let _ = self.stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        r
    }

    /// Turns the connection into process `id`'s `stream`: raw bytes from now on.
    pub fn attach(mut self, id: &str, stream: proto::Stream) -> Result<UnixStream, Error> {
        self.call(&Request::Attach {
            id: id.to_string(),
            stream,
        })?;
        let _ = self.stream.set_read_timeout(None);
        Ok(self.stream)
    }
}

/// The host's error for an agent's refusal: a program that cannot run keeps its shell status.
pub fn agent_error(kind: ErrorKind, message: String) -> Error {
    match kind {
        ErrorKind::NotFound => Error::NotExecutable { message, code: 127 },
        ErrorKind::NotExecutable => Error::NotExecutable { message, code: 126 },
        _ => Error::Agent(message),
    }
}
