//! The container init's file system, built in its new mount namespace before it runs anything:
//! the root bind-mounted onto itself, the spec's mounts inside it (resolved safely), /dev's nodes
//! and links, then pivot_root into it; after the rest of the set-up, the read-only remounts.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::devices;
use super::plan::{ContainerPlan, MountKind, MountPlan};
use super::resolve::{self, Create};
use crate::error::{Context, Error};
use crate::sys::{self, fs};

/// What [`prepare`] leaves for [`finalize`].
#[derive(Default)]
pub struct Pending {
    /// /dev was asked read-only: remounted so once its nodes exist.
    dev_readonly: Option<libc::c_ulong>,
}

/// Everything up to and including pivot_root. Runs in the init, in its own mount namespace.
pub fn prepare(plan: &ContainerPlan) -> Result<Pending, Error> {
    fs::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .ctx(|| "make the mount tree private (mount --make-rprivate /)")?;
    let rootfs = sys::cpath(&plan.rootfs).ctx(|| "root path")?;
    fs::mount(
        Some(&rootfs),
        &rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind-mount the root {} onto itself", plan.rootfs.display()))?;
    let root: OwnedFd = fs::open(&rootfs, libc::O_PATH | libc::O_DIRECTORY)
        .ctx(|| format!("open the root {}", plan.rootfs.display()))?;
    let mut pending = Pending::default();
    for m in &plan.mounts {
        mount_one(root.as_fd(), m, &mut pending)?;
    }
    let dev_is_bind = plan
        .mounts
        .iter()
        .any(|m| is_dev(&m.destination) && matches!(m.kind, MountKind::Bind { .. }));
    if !dev_is_bind {
        for d in devices::defaults(&plan.devices) {
            devices::create(root.as_fd(), &d)?;
        }
        devices::links(root.as_fd())?;
    }
    for d in &plan.devices {
        devices::create(root.as_fd(), d)?;
    }
    drop(root);
    pivot(&rootfs)?;
    Ok(pending)
}

fn is_dev(destination: &str) -> bool {
    destination.trim_end_matches('/') == "/dev"
}

fn data_of(m: &MountPlan) -> Result<Option<CString>, Error> {
    if m.options.data.is_empty() {
        return Ok(None);
    }
    sys::cstr(m.options.data.as_bytes())
        .map(Some)
        .ctx(|| format!("mount options of {}", m.destination))
}

/// Mounts `m` inside the root, creating its mount point as needed.
fn mount_one(root: BorrowedFd, m: &MountPlan, pending: &mut Pending) -> Result<(), Error> {
    let dest = &m.destination;
    let create = if m.is_file { Create::File } else { Create::Dir };
    let target =
        resolve::open(root, dest, create).ctx(|| format!("create the mount point {dest}"))?;
    let path = resolve::proc_path(target.as_fd());
    match &m.kind {
        MountKind::Fs { source, fstype } => {
            let mut flags = m.options.flags;
            if is_dev(dest) && flags & libc::MS_RDONLY != 0 {
                flags &= !libc::MS_RDONLY;
                pending.dev_readonly = Some(flags);
            }
            let data = data_of(m)?;
            fs::mount(Some(source), &path, Some(fstype), flags, data.as_deref())
                .ctx(|| format!("mount {} on {dest}", fstype.to_string_lossy()))?;
        }
        MountKind::Bind { source } => {
            let src = sys::cpath(source).ctx(|| format!("bind source of {dest}"))?;
            let flags = libc::MS_BIND | (m.options.flags & libc::MS_REC);
            fs::mount(Some(&src), &path, None, flags, None)
                .ctx(|| format!("bind-mount {} on {dest}", source.display()))?;
            if let Some(flags) = m.options.bind_remount_flags() {
                let top = reopen(root, dest)?;
                fs::mount(None, &resolve::proc_path(top.as_fd()), None, flags, None)
                    .ctx(|| format!("remount {dest} with its options (ro, nosuid, ...)"))?;
            }
        }
    }
    for &p in &m.options.propagation {
        let top = reopen(root, dest)?;
        fs::mount(None, &resolve::proc_path(top.as_fd()), None, p, None)
            .ctx(|| format!("set the propagation of {dest}"))?;
    }
    Ok(())
}

/// The destination again, now that something is mounted on it: the new mount's root.
fn reopen(root: BorrowedFd, dest: &str) -> Result<OwnedFd, Error> {
    resolve::open(root, dest, Create::Nothing).ctx(|| format!("open the mount on {dest}"))
}

/// pivot_root into `rootfs` (runc's pivot_root(".", ".") and detach of the old root). Where the
/// old root is the initramfs, which pivot_root refuses (EINVAL), the root is moved over / and
/// chroot'ed into instead, as runc does with --no-pivot.
fn pivot(rootfs: &CString) -> Result<(), Error> {
    fs::chdir(rootfs).ctx(|| "enter the root")?;
    match fs::pivot_root(c".", c".") {
        Ok(()) => {
            fs::umount_detach(c".").ctx(|| "detach the old root after pivot_root")?;
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            fs::mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
                .ctx(|| "move the root over / (pivot_root is refused on an initramfs)")?;
            fs::chroot(c".").ctx(|| "chroot into the root")?;
        }
        Err(e) => return Err(Error::sys("pivot_root into the root", e)),
    }
    fs::chdir(c"/").ctx(|| "enter the new /")
}

/// After pivot_root and the rest of the set-up: /dev and the root read-only where asked.
pub fn finalize(plan: &ContainerPlan, pending: &Pending) -> Result<(), Error> {
    if let Some(flags) = pending.dev_readonly {
        fs::mount(
            None,
            c"/dev",
            None,
            flags | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .ctx(|| "remount /dev read-only")?;
    }
    if plan.readonly {
        remount_readonly(c"/", 0).ctx(|| "remount the root read-only")?;
    }
    Ok(())
}

/// Remounts the mount at `path` read-only, keeping its other flags (nosuid, nodev, ...).
pub fn remount_readonly(path: &CStr, extra: libc::c_ulong) -> std::io::Result<()> {
    let kept = kept_flags(path);
    fs::mount(
        None,
        path,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept | extra,
        None,
    )
}

/// The mount's flags a read-only remount must repeat (statvfs's ST_* are MS_*'s values).
fn kept_flags(path: &CStr) -> libc::c_ulong {
    let keep = libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC
        | libc::MS_NOATIME
        | libc::MS_NODIRATIME
        | libc::MS_RELATIME;
    fs::mount_flags(path).map_or(0, |f| f & keep)
}
