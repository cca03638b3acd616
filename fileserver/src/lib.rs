//! vmctl's 9P2000.L file server: a container's root file system and bind mounts (host
//! directories, and single host files) shared live with its guest over a vsock connection.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fileserver::{Limits, Share, ShareSource, Shares};
//! # fn conn() -> std::os::unix::net::UnixStream { unimplemented!() }
//! let shares = Arc::new(Shares::new());
//! shares.add(Share {
//!     tag: "rootfs".into(),
//!     source: ShareSource::Dir("/var/lib/vmctl/c1/rootfs".into()),
//!     readonly: false,
//! })?;
//! // For each connection the guest opens (its aname picks the share):
//! let shares2 = Arc::clone(&shares);
//! std::thread::spawn(move || fileserver::serve(conn(), shares2, Limits::default()));
//! # Ok::<(), fileserver::Error>(())
//! ```
//!
//! docs/design.md ("9P file server") explains the confinement, the limits and why the project
//! has its own server.

mod budget;
mod errno;
mod error;
mod fid;
mod frame;
mod limits;
mod name;
mod ops;
mod proto;
mod session;
mod share;
mod sys;
mod walk;
mod wire;

pub use error::{Error, Result};
pub use limits::{Limits, DEFAULT_MAX_MSIZE};
pub use session::{serve, serve_io};
pub use share::{Share, ShareSource, Shares};

/// Raises the process's soft limit of open descriptors to its hard limit (each fid of each
/// session holds a descriptor or two; the usual soft limit of 1024 is too low for a few busy
/// sessions). Returns the new soft limit. Call once at VMM start-up.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    sys::raise_nofile()
}
