//! A process's stdio on the agent's side: pipes made at create/exec time, and the relays that
//! carry them over an attached connection (blocking I/O, one thread per direction). Output the
//! host has not attached yet waits in the pipe (the process blocks when it is full: nothing is
//! lost, nothing grows).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_protocol::Stream;

use super::table::{Slot, Table};
use crate::container::ChildStdio;
use crate::error::{Context, Error};
use crate::sys::fd::{self, poll_readable, shutdown, Shutdown};

/// How long the agent waits, after ending an output stream, for the host to close it.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);
const BUF: usize = 64 * 1024;

/// The agent's ends of a process's stdio.
pub struct HostStdio {
    pub stdin: Slot,
    pub stdout: Slot,
    pub stderr: Slot,
}

/// Pipes for a process without a terminal; nothing yet for one with a terminal (it makes its own).
pub fn make(terminal: bool) -> Result<(ChildStdio, HostStdio), Error> {
    if terminal {
        let host = HostStdio {
            stdin: Slot::Absent,
            stdout: Slot::Absent,
            stderr: Slot::Absent,
        };
        return Ok((ChildStdio::Terminal, host));
    }
    let (in_r, in_w) = fd::pipe().ctx(|| "create the stdin pipe")?;
    let (out_r, out_w) = fd::pipe().ctx(|| "create the stdout pipe")?;
    let (err_r, err_w) = fd::pipe().ctx(|| "create the stderr pipe")?;
    let child = ChildStdio::Pipes {
        stdin: in_r,
        stdout: out_w,
        stderr: err_w,
    };
    let host = HostStdio {
        stdin: Slot::Ready(in_w, Vec::new()),
        stdout: Slot::Ready(out_r, Vec::new()),
        stderr: Slot::Ready(err_r, Vec::new()),
    };
    Ok((child, host))
}

/// Relays stream `stream` of process `id` over `conn` until it ends (or the connection breaks).
pub fn relay(
    table: Arc<Table>,
    id: String,
    stream: Stream,
    src: OwnedFd,
    pending: Vec<u8>,
    conn: OwnedFd,
) {
    match stream {
        Stream::Stdin => input(&table, &id, src, conn),
        Stream::Stdout | Stream::Stderr => output(&table, &id, stream, src, pending, conn),
        Stream::Tty => tty(&table, &id, src, pending, conn),
    }
}

/// Host -> process: until the host closes (EOF for the process) or the process closes its end.
fn input(table: &Table, id: &str, dst: OwnedFd, conn: OwnedFd) {
    let conn = Arc::new(conn);
    table.set_stdin_conn(id, conn.clone());
    let _ = copy(conn.as_fd(), dst.as_fd());
    drop(dst);
    let _ = shutdown(conn.as_fd(), Shutdown::Both);
    table.finish(id, Stream::Stdin);
}

/// Copies `from` to `to` until the end of `from` (a read error counts as the end: nothing more
/// will come; with a terminal, EIO is how the end shows once its last user left). Err: writing
/// failed, with the bytes read but not written.
fn copy(from: BorrowedFd, to: BorrowedFd) -> Result<(), Vec<u8>> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match fd::read(from, &mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => n,
        };
        if fd::write_all(to, &buf[..n]).is_err() {
            return Err(buf[..n].to_vec());
        }
    }
}

/// Process -> host: at the end of the pipe, shut the connection's write side and wait (bounded)
/// for the host to close it, so the host has read everything.
fn output(table: &Table, id: &str, stream: Stream, src: OwnedFd, pending: Vec<u8>, conn: OwnedFd) {
    if !pending.is_empty() && fd::write_all(conn.as_fd(), &pending).is_err() {
        table.release(id, stream, src, pending);
        return;
    }
    match copy(src.as_fd(), conn.as_fd()) {
        Ok(()) => {
            let _ = shutdown(conn.as_fd(), Shutdown::Write);
            wait_for_close(conn.as_fd());
            table.finish(id, stream);
        }
        Err(unsent) => table.release(id, stream, src, unsent),
    }
}

/// Reads (and drops) until the peer closes or [`CLOSE_WAIT`] passes.
fn wait_for_close(conn: BorrowedFd) {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match poll_readable(conn, left) {
            Ok(true) => match fd::read(conn, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ => return,
        }
    }
}

/// Both ways on the pty master: input in a second thread; the output's end (EIO once the last
/// process using the terminal is gone) ends the stream as for a pipe.
fn tty(table: &Table, id: &str, master: OwnedFd, pending: Vec<u8>, conn: OwnedFd) {
    let input = match (master.try_clone(), conn.try_clone()) {
        (Ok(m), Ok(c)) => std::thread::Builder::new()
            .name("tty-input".into())
            .spawn(move || {
                // keep reading the host after a write error, so that its close is seen
                let mut buf = vec![0u8; BUF];
                let mut ok = true;
                loop {
                    match fd::read(c.as_fd(), &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) if ok => ok = fd::write_all(m.as_fd(), &buf[..n]).is_ok(),
                        Ok(_) => {}
                    }
                }
            })
            .ok(),
        _ => None,
    };
    if input.is_none() {
        crate::log!("tty of {id}: no input thread; output only");
    }
    let mut result = Ok(());
    if !pending.is_empty() && fd::write_all(conn.as_fd(), &pending).is_err() {
        result = Err(pending);
    }
    if result.is_ok() {
        result = copy(master.as_fd(), conn.as_fd());
    }
    match result {
        Ok(()) => {
            let _ = shutdown(conn.as_fd(), Shutdown::Write);
            if let Some(h) = input {
                let deadline = Instant::now() + CLOSE_WAIT;
                while !h.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = shutdown(conn.as_fd(), Shutdown::Both);
                let _ = h.join();
            }
            table.finish(id, Stream::Tty);
        }
        Err(unsent) => {
            let _ = shutdown(conn.as_fd(), Shutdown::Both);
            if let Some(h) = input {
                let _ = h.join();
            }
            table.release(id, Stream::Tty, master, unsent);
        }
    }
}
