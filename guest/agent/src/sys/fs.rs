//! File-system calls: mount, in-root resolution (openat2), node creation, root changes.

use std::ffi::{c_int, CStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{check, check_long, retry};

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// mount(2). `None` passes a null pointer (no source, no type, no data).
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    check(unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data).cast()) })?;
    Ok(())
}

/// umount2(2) with MNT_DETACH.
pub fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is a NUL-terminated string alive for the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

/// openat(2) of `name` in the directory `dir`, O_CLOEXEC added; `mode` is used with O_CREAT.
pub fn openat(
    dir: BorrowedFd,
    name: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: `name` is a NUL-terminated string alive for the call.
        check(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode,
            )
        })
    })?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mkdirat(2).
pub fn mkdirat(dir: BorrowedFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    Ok(())
}

/// mknodat(2).
pub fn mknodat(
    dir: BorrowedFd,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) })?;
    Ok(())
}

/// fchownat(2) without following a final symlink.
pub fn chown_at(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// fchmodat(2) (follows a final symlink: call it on nodes just created).
pub fn chmod_at(dir: BorrowedFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) })?;
    Ok(())
}

/// symlinkat(2): `dir`/`name` -> `target`.
pub fn symlinkat(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and alive for the call.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// unlinkat(2) of a non-directory.
pub fn unlinkat(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

/// fstat(2).
pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of a stat struct.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

/// The mount flags (ST_RDONLY, ST_NOSUID, ...) of the file system holding `path` (statvfs(3)).
pub fn mount_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated; `st` is valid for writes of a statvfs struct.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() }.f_flag)
}

/// chdir(2).
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::chdir(path.as_ptr()) })?;
    Ok(())
}

/// fchdir(2).
pub fn fchdir(dir: BorrowedFd) -> io::Result<()> {
    // SAFETY: fchdir takes a descriptor only.
    check(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    Ok(())
}

/// chroot(2).
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::chroot(path.as_ptr()) })?;
    Ok(())
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and alive for the call.
    check_long(unsafe {
        libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr())
    })?;
    Ok(())
}

/// faccessat(2) with AT_EACCESS: whether the effective ids may access `path` in `mode` (X_OK, ...).
pub fn eaccess(path: &CStr, mode: c_int) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mode, libc::AT_EACCESS) })?;
    Ok(())
}

/// fstatat(2) of `name` in `dir`, not following a final symlink.
pub fn lstat_at(dir: BorrowedFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated; `st` is valid for writes of a stat struct.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

/// readlinkat(2): the target of the symlink `name` in `dir` (at most PATH_MAX bytes).
pub fn readlink_at(dir: BorrowedFd, name: &CStr) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `name` is NUL-terminated; `buf` is valid for writes of its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// open(2) with O_CLOEXEC added.
pub fn open(path: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    let fd = retry(|| check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) }))?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
