//! After pivot_root, in the container's view: sysctls, read-only paths and masked paths, in
//! runc's order (sysctls first: /proc/sys is usually among the read-only paths).

use std::ffi::CString;

use super::plan::ContainerPlan;
use super::rootfs::remount_readonly;
use crate::error::{Context, Error};
use crate::sys::{self, fs};

fn exists_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

pub fn apply(plan: &ContainerPlan) -> Result<(), Error> {
    for (path, value) in &plan.sysctl {
        std::fs::write(path, value.as_bytes()).ctx(|| format!("set sysctl {path} to {value:?}"))?;
    }
    for p in &plan.readonly_paths {
        readonly(p)?;
    }
    for p in &plan.masked_paths {
        mask(p)?;
    }
    Ok(())
}

fn cpath(p: &str) -> Result<CString, Error> {
    sys::cstr(p.as_bytes()).ctx(|| format!("path {p:?}"))
}

/// runc's readonlyPath: bind the path onto itself and remount it read-only; a missing path is
/// skipped.
fn readonly(p: &str) -> Result<(), Error> {
    let path = cpath(p)?;
    match fs::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None) {
        Err(e) if exists_error(&e) => return Ok(()),
        r => r.ctx(|| format!("bind-mount read-only path {p}"))?,
    }
    remount_readonly(&path, libc::MS_REC).ctx(|| format!("remount {p} read-only"))
}

/// runc's maskPath: /dev/null over a file, an empty read-only tmpfs over a directory; a missing
/// path is skipped.
fn mask(p: &str) -> Result<(), Error> {
    let path = cpath(p)?;
    match fs::mount(Some(c"/dev/null"), &path, None, libc::MS_BIND, None) {
        Ok(()) => Ok(()),
        Err(e) if exists_error(&e) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            fs::mount(Some(c"tmpfs"), &path, Some(c"tmpfs"), libc::MS_RDONLY, None)
                .ctx(|| format!("mask directory {p} with a read-only tmpfs"))
        }
        Err(e) => Err(Error::sys(format!("mask {p} with /dev/null"), e)),
    }
}
