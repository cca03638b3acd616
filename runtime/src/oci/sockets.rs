//! Paths of the sockets in a state directory that always fit in `sun_path`.
//!
//! A socket's path must be shorter than 108 bytes. Docker's state root
//! (`/var/run/docker/runtime-<name>/moby`) and a 64-character container id leave too little of
//! that for `vsock.sock_<port>`, so a directory whose sockets would not fit is reached through
//! `/proc/self/fd/<fd>`, a descriptor of it held open while the paths are used: the kernel
//! resolves that prefix to the directory itself, so the socket is bound or reached where it
//! always is, and no second directory needs cleaning up.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::state::VSOCK_SOCKET;
use crate::Error;

/// The longest path `sun_path` holds (its 108 bytes less the terminating NUL).
const SUN_PATH_MAX: usize = 107;
/// The longest name bound in a state directory: `vsock.sock_` and a 32-bit port.
const LONGEST_NAME: usize = VSOCK_SOCKET.len() + 1 + 10;

/// A state directory as socket paths name it.
pub struct SocketDir {
    base: PathBuf,
    /// The directory's descriptor when `base` goes through `/proc/self/fd`.
    _fd: Option<OwnedFd>,
}

impl SocketDir {
    pub fn open(dir: &Path) -> Result<SocketDir, Error> {
        if dir.as_os_str().len() + 1 + LONGEST_NAME <= SUN_PATH_MAX {
            return Ok(SocketDir {
                base: dir.to_path_buf(),
                _fd: None,
            });
        }
        let fd =
            open_path(dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
        Ok(SocketDir {
            base: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            _fd: Some(fd),
        })
    }

    /// The path of socket `name` in the directory, valid while `self` lives.
    pub fn join(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

fn open_path(dir: &Path) -> std::io::Result<OwnedFd> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    Ok(dir.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn a_short_directory_is_named_as_it_is() {
        // Arrange
        let dir = Path::new("/run/vmctl/abc");
        // Act
        let sockets = SocketDir::open(dir).unwrap();
        // Assert
        assert_eq!(sockets.join("ctl.sock"), dir.join("ctl.sock"));
    }

    #[test]
    fn a_socket_in_a_long_directory_is_bound_and_reached_where_it_belongs() {
        // Arrange: Docker's layout, a 64-character id under its runtime root.
        let tmp = std::env::temp_dir().join(format!("vmctl-sockets-{}", std::process::id()));
        let dir = tmp.join("docker/runtime-vmctl/moby").join("a".repeat(64));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("{VSOCK_SOCKET}_4294967295");
        assert!(dir.join(&name).as_os_str().len() > SUN_PATH_MAX);
        // Act
        let sockets = SocketDir::open(&dir).unwrap();
        let listener = UnixListener::bind(sockets.join(&name)).unwrap();
        let reached = UnixStream::connect(SocketDir::open(&dir).unwrap().join(&name));
        // Assert
        assert!(reached.is_ok());
        assert!(dir.join(&name).exists());
        drop(listener);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
