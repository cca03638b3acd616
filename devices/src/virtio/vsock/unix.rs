//! The host side: Unix sockets in Firecracker's "hybrid vsock" layout.
//!
//! - vmctl listens on `uds_path`; a host program connects and writes `CONNECT <port>\n`, and gets
//!   `OK <host port>\n` once the guest accepted (or the connection closed if it did not).
//! - A guest connecting to host port P reaches the Unix listener at `<uds_path>_<P>`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The longest handshake line accepted, newline included (`CONNECT 4294967295\n` is 19 bytes).
pub const MAX_CONNECT_LINE: usize = 32;

/// The listening socket and the identity of the file it created, so that only that file is
/// removed when the device goes away.
pub struct HostListener {
    pub listener: UnixListener,
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl HostListener {
    /// Listens on `path`. A socket file left behind by a VMM that is gone is replaced; a socket
    /// somebody still listens on, or a file that is not a socket, is an error.
    pub fn bind(path: &Path) -> Result<HostListener> {
        let fail =
            |what: String| move |e: io::Error| Error::Invalid(format!("{what}: {}", describe(&e)));
        let what = || format!("cannot listen on {}", path.display());
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(Error::Invalid(format!(
                        "{}: another process is listening there",
                        what()
                    )));
                }
                std::fs::remove_file(path).map_err(fail(format!(
                    "cannot remove the stale socket {}",
                    path.display()
                )))?;
            }
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "cannot listen on {}: the file exists and is not a socket",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(what())(e)),
        }
        let listener = UnixListener::bind(path).map_err(fail(what()))?;
        listener.set_nonblocking(true).map_err(fail(what()))?;
        let meta = std::fs::symlink_metadata(path).map_err(fail(what()))?;
        Ok(HostListener {
            listener,
            path: path.to_path_buf(),
            dev_ino: (meta.dev(), meta.ino()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one pending connection, non-blocking; `Ok(None)` when there is none.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        // Remove the socket only if it is still the one we created.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Lets the host socket hold a whole credit's worth of guest data: the kernel's default send
/// buffer (net.core.wmem_default, ~208 KiB) is smaller than the 256 KiB we let the guest send
/// ahead, so writes would stop short and the rest take a detour through our own buffer. The
/// kernel caps the request at net.core.wmem_max (and doubles it for its bookkeeping).
pub fn tune(stream: &UnixStream, sndbuf: usize) {
    let v = libc::c_int::try_from(sndbuf).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt with a pointer to a c_int and its size; failure only keeps the default.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// An I/O error as a user reads it: the system's message without Rust's " (os error N)".
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Where a guest connection to host port `port` goes: `<uds_path>_<port>`.
pub fn port_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut s = uds_path.as_os_str().to_owned();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Connects to a Unix listener without blocking the event loop: a listener whose backlog is full
/// refuses (EAGAIN) instead of making us wait.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

/// What the first bytes of a host connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// `CONNECT <port>\n`, whose line is `consumed` bytes long.
    Connect { port: u32, consumed: usize },
    /// No complete line yet: wait for more.
    Incomplete,
    /// Not a valid handshake (or the peer closed): drop the connection.
    Invalid,
}

/// Parses the handshake from the first bytes a host connection sent.
pub fn parse_handshake(bytes: &[u8]) -> Handshake {
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return if bytes.len() >= MAX_CONNECT_LINE {
            Handshake::Invalid
        } else {
            Handshake::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&bytes[..nl]) else {
        return Handshake::Invalid;
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(cmd), Some(port), None) if cmd.eq_ignore_ascii_case("connect") => {
            match port.parse::<u32>() {
                Ok(port) => Handshake::Connect {
                    port,
                    consumed: nl + 1,
                },
                Err(_) => Handshake::Invalid,
            }
        }
        _ => Handshake::Invalid,
    }
}

/// Looks at the handshake of `fd` without consuming any byte past it: peeks, then reads exactly
/// the line.
pub fn read_handshake(fd: RawFd) -> io::Result<Handshake> {
    let mut buf = [0u8; MAX_CONNECT_LINE];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n == 0 {
        return Ok(Handshake::Invalid);
    }
    let parsed = parse_handshake(&buf[..n]);
    if let Handshake::Connect { consumed, .. } = parsed {
        // SAFETY: as above; `consumed <= n <= buf.len()`, and those bytes are already queued.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), consumed, libc::MSG_DONTWAIT) };
        if r < 0 || r as usize != consumed {
            return Ok(Handshake::Invalid);
        }
    }
    Ok(parsed)
}

/// Whether the peer of `fd` has closed the connection entirely (not just shut its write side).
pub fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn tmp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vmctl-vsock-unix-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn handshake_lines() {
        assert_eq!(
            parse_handshake(b"CONNECT 52\nrest"),
            Handshake::Connect {
                port: 52,
                consumed: 11
            }
        );
        assert_eq!(
            parse_handshake(b"connect 4294967295\r\n"),
            Handshake::Connect {
                port: u32::MAX,
                consumed: 20
            }
        );
        assert_eq!(parse_handshake(b"CONNECT 5"), Handshake::Incomplete);
        for bad in [
            &b"CONNECT 4294967296\n"[..],
            b"CONNECT -1\n",
            b"CONNECT\n",
            b"CONNECT 1 2\n",
            b"LISTEN 1\n",
            b"\xff\xfe\n",
            b"CONNECT 00000000000000000000000000000001",
        ] {
            assert_eq!(parse_handshake(bad), Handshake::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn reads_exactly_the_line_and_leaves_the_data() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"CONNECT 7\nDATA").unwrap();
        assert_eq!(
            read_handshake(a.as_raw_fd()).unwrap(),
            Handshake::Connect {
                port: 7,
                consumed: 10
            }
        );
        let mut rest = [0u8; 4];
        (&a).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"DATA");
        drop(b);
        assert_eq!(read_handshake(a.as_raw_fd()).unwrap(), Handshake::Invalid);
    }

    #[test]
    fn stale_sockets_are_replaced_live_ones_and_files_are_not() {
        let dir = tmp("bind");
        let path = dir.join("v.sock");
        // Stale: bound, then the listener is gone (the file stays).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let l = HostListener::bind(&path).unwrap();
        // Live: ours, still listening.
        let err = HostListener::bind(&path).err().expect("in use");
        assert!(err.to_string().contains("cannot listen on"), "{err}");
        drop(l);
        assert!(!path.exists(), "the socket is removed on drop");
        std::fs::write(&path, b"precious").unwrap();
        let err = HostListener::bind(&path).err().expect("not a socket");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connect_to_port_listener_or_refused() {
        let dir = tmp("connect");
        let uds = dir.join("v.sock");
        let p = port_path(&uds, 1234);
        assert!(p.to_string_lossy().ends_with("v.sock_1234"));
        assert!(connect_nonblocking(&p).is_err());
        let l = UnixListener::bind(&p).unwrap();
        let s = connect_nonblocking(&p).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        peer.write_all(b"x").unwrap();
        drop(peer);
        let mut b = [0u8; 2];
        // Non-blocking, but the byte is already there.
        assert_eq!((&s).read(&mut b).unwrap(), 1);
        assert!(peer_hung_up(s.as_raw_fd()));
        let long = dir.join("x".repeat(200));
        assert!(connect_nonblocking(&long).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
