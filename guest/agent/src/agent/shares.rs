//! Where the container's shares come from. In the VM, each is a 9P2000.L mount over its own vsock
//! connection to the host's file server; a test supplies directories instead.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use guest_protocol::{FILES_PORT, HOST_CID};

use crate::error::{Context, Error};
use crate::sys::{self, fs, vsock};

pub trait Shares: Send + Sync {
    /// Where the root share is (to be) mounted.
    fn root(&self) -> PathBuf;
    /// Where share `tag` is (to be) mounted.
    fn staging(&self, tag: &str) -> PathBuf;
    /// Mounts the root share.
    fn mount_root(&self, tag: &str, readonly: bool) -> Result<(), Error>;
    /// Mounts share `tag` at its staging directory.
    fn mount_share(&self, tag: &str) -> Result<(), Error>;
    /// Undoes the mounts (after a failed create).
    fn unmount_all(&self);
}

/// The VM's shares: /run/vmctl/rootfs and /run/vmctl/shares/<tag>, 9P over vsock.
#[derive(Default)]
pub struct VsockShares {
    mounted: Mutex<Vec<PathBuf>>,
}

pub const ROOTFS: &str = "/run/vmctl/rootfs";
pub const SHARES: &str = "/run/vmctl/shares";

/// The mount options for share `tag` read and written through descriptor `fd`.
pub fn nine_p_options(fd: i32, tag: &str) -> String {
    format!(
        "trans=fd,rfdno={fd},wfdno={fd},version=9p2000.L,msize=524288,aname={tag},cache=mmap,access=client"
    )
}

impl VsockShares {
    fn mount(&self, tag: &str, target: &Path, flags: libc::c_ulong) -> Result<(), Error> {
        std::fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))?;
        let conn = vsock::connect(HOST_CID, FILES_PORT).ctx(|| {
            format!("connect to the host's file server (vsock port {FILES_PORT}) for share {tag}")
        })?;
        let data = CString::new(nine_p_options(conn.as_raw_fd(), tag))
            .map_err(|_| Error::Invalid(format!("share tag {tag:?} holds a NUL byte")))?;
        let source = sys::cstr(tag.as_bytes()).ctx(|| "share tag")?;
        let target_c = sys::cpath(target).ctx(|| "share mount point")?;
        fs::mount(Some(&source), &target_c, Some(c"9p"), flags, Some(&data))
            .ctx(|| format!("mount share {tag} (9P) on {}", target.display()))?;
        // the kernel holds the connection now
        drop(conn);
        self.mounted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.to_owned());
        Ok(())
    }
}

impl Shares for VsockShares {
    fn root(&self) -> PathBuf {
        PathBuf::from(ROOTFS)
    }

    fn staging(&self, tag: &str) -> PathBuf {
        Path::new(SHARES).join(tag)
    }

    fn mount_root(&self, tag: &str, readonly: bool) -> Result<(), Error> {
        let flags = if readonly { libc::MS_RDONLY } else { 0 };
        self.mount(tag, &self.root(), flags)
    }

    fn mount_share(&self, tag: &str) -> Result<(), Error> {
        self.mount(tag, &self.staging(tag), 0)
    }

    fn unmount_all(&self) {
        let mut list = self.mounted.lock().unwrap_or_else(|e| e.into_inner());
        for target in list.drain(..).rev() {
            if let Ok(c) = sys::cpath(&target) {
                let _ = fs::umount_detach(&c);
            }
        }
    }
}

/// Shares that are plain directories already in place (tests, or a root prepared otherwise).
pub struct DirShares {
    pub root: PathBuf,
    pub shares: PathBuf,
}

impl Shares for DirShares {
    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn staging(&self, tag: &str) -> PathBuf {
        self.shares.join(tag)
    }

    fn mount_root(&self, _tag: &str, _readonly: bool) -> Result<(), Error> {
        Ok(())
    }

    fn mount_share(&self, _tag: &str) -> Result<(), Error> {
        Ok(())
    }

    fn unmount_all(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_p_options_are_the_agreed_ones() {
        assert_eq!(
            nine_p_options(7, "rootfs"),
            "trans=fd,rfdno=7,wfdno=7,version=9p2000.L,msize=524288,aname=rootfs,cache=mmap,access=client"
        );
        assert_eq!(
            VsockShares::default().staging("m1"),
            Path::new("/run/vmctl/shares/m1")
        );
    }
}
