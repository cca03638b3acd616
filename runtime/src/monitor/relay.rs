//! Copying a process's stdio between host descriptors and its agent streams, with
//! back-pressure: each direction is one blocking thread with a fixed buffer, so a reader that
//! stops slows the writer down instead of growing memory.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

const BUF: usize = 64 << 10;

/// A host descriptor as a File of its own (a dup: closing it leaves the original open).
pub fn dup_file(fd: BorrowedFd) -> std::io::Result<File> {
    Ok(File::from(fd.try_clone_to_owned()?))
}

/// Copies `from` into `to` until `from` ends; returns bytes copied. A failed write ends it too.
fn copy(mut from: impl Read, mut to: impl Write) -> u64 {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = to.flush();
    total
}

/// Host input into the guest: at its end the stream's write side is shut (EOF for the process).
pub fn input(from: File, to: UnixStream) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            copy(&from, &to);
            let _ = to.shutdown(Shutdown::Write);
        })
}

/// Guest output to a host descriptor, until the agent ends the stream. When the host side can
/// no longer be written, the stream is closed, so the process sees its output pipe broken, as
/// it would under runc.
pub fn output(from: UnixStream, to: File) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            copy(&from, &to);
            let _ = from.shutdown(Shutdown::Both);
        })
}

/// Both directions of a terminal stream: `input` (keys) to the guest, guest output to `output`.
/// Returns the output thread, which ends when the guest ends the stream.
pub fn terminal(stream: UnixStream, input: File, output: File) -> std::io::Result<JoinHandle<()>> {
    let to_guest = stream.try_clone()?;
    std::thread::Builder::new()
        .name("tty-in".into())
        .spawn(move || {
            copy(&input, &to_guest);
        })?;
    std::thread::Builder::new()
        .name("tty-out".into())
        .spawn(move || {
            copy(&stream, &output);
            let _ = stream.shutdown(Shutdown::Both);
        })
}

/// fds 0, 1, 2 of this process as Files of their own.
pub fn std_files() -> std::io::Result<(File, File, File)> {
    Ok((
        dup_file(std::io::stdin().as_fd())?,
        dup_file(std::io::stdout().as_fd())?,
        dup_file(std::io::stderr().as_fd())?,
    ))
}
