//! Thin wrappers over the system calls of the container agent and the container's processes.
//! Every `unsafe` of the agent lives here (the boot mode's own are in `init::sys`), each with its
//! `// SAFETY:` comment. The wrappers return `io::Result` and own the descriptors they create.

pub mod creds;
pub mod fd;
pub mod fs;
pub mod process;
pub mod pty;
pub mod signal;
pub mod vsock;

use std::ffi::{c_int, c_long, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a -1 return into the thread's `errno`.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`check`] for `syscall(2)`'s `long`.
fn check_long(ret: c_long) -> io::Result<c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries `f` while it fails with EINTR.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A path as a C string; a path holding a NUL byte is an InvalidInput error.
pub fn cpath(path: &Path) -> io::Result<CString> {
    cstr(path.as_os_str().as_bytes())
}

/// Bytes as a C string; a NUL byte inside is an InvalidInput error.
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a string"))
}
