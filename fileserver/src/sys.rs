//! Thin wrappers over the system calls the server makes on descriptors. Every path the server
//! hands to the kernel is either one checked component relative to a directory descriptor, or
//! `/proc/self/fd/N` (which names exactly the inode descriptor N holds: it is resolved by the
//! kernel as a jump to that inode, never through the file's current path, and when N is a
//! symbolic link the call acts on the link itself, not on its target).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Turns a -1 return into the thread's errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for calls returning `ssize_t`.
fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `/proc/self/fd/N` with its NUL, built on the stack.
pub(crate) struct ProcPath {
    buf: [u8; 32],
}

impl ProcPath {
    pub(crate) fn new(fd: BorrowedFd<'_>) -> ProcPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 12];
        let mut n = fd.as_raw_fd().unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
        ProcPath { buf }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; the kernel keeps
    // no pointer to it.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `open(path, flags | O_CLOEXEC)` for a path of the host's own choosing (a share's root).
pub(crate) fn open_host_path(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the inode an (`O_PATH`) descriptor holds, anew, with `flags`, through
/// `/proc/self/fd/N`. A symbolic link cannot be opened this way (ELOOP).
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<File> {
    let path = ProcPath::new(fd);
    let owned = open_host_path(path.as_cstr(), flags | libc::O_NOCTTY)?;
    Ok(File::from(owned))
}

/// The status of the inode `fd` holds (a link itself for a link).
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    fstatat(fd, c"", libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
}

/// `fstatat(dir, name, flags)`.
pub(crate) fn fstatat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable memory of the size fstatat fills; `name` is NUL-terminated.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so it filled the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `fstatfs(fd)`.
pub(crate) fn fstatfs(fd: BorrowedFd<'_>) -> io::Result<libc::statfs> {
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is writable memory of the size fstatfs fills.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded, so it filled the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `mknodat(dir, name, mode, 0)`: only regular files, fifos and sockets reach it.
pub(crate) fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `linkat(fd, "", dir, name, AT_EMPTY_PATH)`: a new name in `dir` for the inode `fd` holds.
pub(crate) fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `renameat(olddir, oldname, newdir, newname)`.
pub(crate) fn renameat(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated and outlive the call.
    cvt(unsafe {
        libc::renameat(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
        )
    })
    .map(drop)
}

/// `unlinkat(dir, name, flags)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// The target of the symbolic link `fd` holds (`readlinkat(fd, "")`), into `buf`.
pub(crate) fn readlink_fd<'b>(fd: BorrowedFd<'_>, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let n = cvt_size(unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    Ok(&buf[..n.min(buf.len())])
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`: works on `O_PATH` descriptors and on links
/// themselves. `None` leaves that id as it is.
pub(crate) fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: the empty path is a valid NUL-terminated string.
    cvt(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// `chmod("/proc/self/fd/N", mode)`: the mode of the inode `fd` holds (EOPNOTSUPP on a link).
pub(crate) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let path = ProcPath::new(fd);
    // SAFETY: the path is NUL-terminated and outlives the call.
    cvt(unsafe { libc::chmod(path.as_cstr().as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `truncate("/proc/self/fd/N", size)`.
pub(crate) fn truncate_fd(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let size = i64::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let path = ProcPath::new(fd);
    // SAFETY: the path is NUL-terminated and outlives the call.
    cvt(unsafe { libc::truncate(path.as_cstr().as_ptr(), size) }).map(drop)
}

/// `utimensat(AT_FDCWD, "/proc/self/fd/N", times, 0)`: on a link, the link's own times.
pub(crate) fn utimens_fd(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> io::Result<()> {
    let path = ProcPath::new(fd);
    // SAFETY: the path is NUL-terminated, `times` points to two timespecs; both outlive the call.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_cstr().as_ptr(), times.as_ptr(), 0) })
        .map(drop)
}

/// `lseek(fd, offset, SEEK_SET)` (a directory's position, for readdir).
pub(crate) fn seek_to(fd: BorrowedFd<'_>, offset: u64) -> io::Result<()> {
    let offset = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek takes no pointers.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset, libc::SEEK_SET) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getdents64(fd, buf)`: raw `linux_dirent64` records into `buf`, 0 at the end.
pub(crate) fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `getxattr("/proc/self/fd/N", name, buf)`; an empty `buf` asks for the size.
pub(crate) fn getxattr_fd(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    let path = ProcPath::new(fd);
    // SAFETY: strings are NUL-terminated; `buf` is writable for the length we pass.
    cvt_size(unsafe {
        libc::getxattr(
            path.as_cstr().as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// `listxattr("/proc/self/fd/N", buf)`; an empty `buf` asks for the size.
pub(crate) fn listxattr_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let path = ProcPath::new(fd);
    // SAFETY: the path is NUL-terminated; `buf` is writable for the length we pass.
    cvt_size(unsafe {
        libc::listxattr(path.as_cstr().as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    })
}

/// `setxattr("/proc/self/fd/N", name, value, flags)`.
pub(crate) fn setxattr_fd(
    fd: BorrowedFd<'_>,
    name: &CStr,
    value: &[u8],
    flags: libc::c_int,
) -> io::Result<()> {
    let path = ProcPath::new(fd);
    // SAFETY: strings are NUL-terminated; `value` is readable for the length we pass.
    cvt(unsafe {
        libc::setxattr(
            path.as_cstr().as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// `removexattr("/proc/self/fd/N", name)`.
pub(crate) fn removexattr_fd(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let path = ProcPath::new(fd);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt(unsafe { libc::removexattr(path.as_cstr().as_ptr(), name.as_ptr()) }).map(drop)
}

/// Raises this process's soft limit of open descriptors to its hard limit; returns the new
/// soft limit.
pub(crate) fn raise_nofile() -> io::Result<u64> {
    let mut lim = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `lim` is writable memory of the size getrlimit fills.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) })?;
    // SAFETY: getrlimit succeeded and filled it.
    let mut lim = unsafe { lim.assume_init() };
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn proc_path_names_the_descriptor() {
        let file = File::open("/proc/self/status").unwrap();

        let path = ProcPath::new(file.as_fd());

        let expected = format!("/proc/self/fd/{}", file.as_raw_fd());
        assert_eq!(path.as_cstr().to_str().unwrap(), expected);
    }
}
