//! Paths inside the container's root, resolved from a descriptor of that root one component at a
//! time: symlinks are followed as if the root were `/` (an absolute target restarts at the root,
//! `..` never climbs above it), so nothing in the container's file system can redirect a mount or
//! a node outside it. Missing components are created on the way, as runc does for mount points.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::sys::{self, fs};

/// Symlinks followed in one resolution before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// What to do when the last component does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Nothing: ENOENT.
    Nothing,
    /// A directory (0755).
    Dir,
    /// An empty file (0644).
    File,
}

/// The path's components, without empty ones and `.`.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn name(c: &[u8]) -> io::Result<CString> {
    sys::cstr(c)
}

fn open_dir(dir: BorrowedFd, c: &CStr) -> io::Result<OwnedFd> {
    fs::openat(
        dir,
        c,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens `path` (absolute or not, always taken from the root) inside `root` as an O_PATH
/// descriptor, creating missing directories on the way and the last component as `create` says.
pub fn open(root: BorrowedFd, path: &str, create: Create) -> io::Result<OwnedFd> {
    let mut dirs: Vec<OwnedFd> = vec![open_dir(root, c".")?];
    let mut todo = components(path.as_bytes());
    todo.reverse(); // a stack: the next component is last
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == b".." {
            if dirs.len() > 1 {
                dirs.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let cname = name(&c)?;
        let cur = dirs.last().expect("the root is always there").as_fd();
        match fs::lstat_at(cur, &cname) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::readlink_at(cur, &cname)?;
                if target.as_bytes().first() == Some(&b'/') {
                    dirs.truncate(1);
                }
                let mut more = components(target.as_bytes());
                more.reverse();
                todo.extend(more);
            }
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                let fd = open_dir(cur, &cname)?;
                dirs.push(fd);
            }
            Ok(_) if last => return fs::openat(cur, &cname, libc::O_PATH | libc::O_NOFOLLOW, 0),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if last && create == Create::Nothing {
                    return Err(e);
                }
                if last && create == Create::File {
                    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
                    match fs::openat(cur, &cname, flags, 0o644) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                        _ => {}
                    }
                    return fs::openat(cur, &cname, libc::O_PATH | libc::O_NOFOLLOW, 0);
                }
                match fs::mkdirat(cur, &cname, 0o755) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                    _ => {}
                }
                let fd = open_dir(cur, &cname)?;
                dirs.push(fd);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dirs.pop().expect("the root is always there"))
}

/// The parent directory of `path` inside `root` (created as needed) and the last component's
/// name. `None` for the root itself.
pub fn parent(root: BorrowedFd, path: &str) -> io::Result<Option<(OwnedFd, CString)>> {
    let mut comps = components(path.as_bytes());
    let Some(last) = comps.pop() else {
        return Ok(None);
    };
    if last == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path ending in ..",
        ));
    }
    let dir_path = comps
        .iter()
        .map(|c| OsStr::from_bytes(c).to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let dir = open(root, &dir_path, Create::Dir)?;
    Ok(Some((dir, name(&last)?)))
}

/// The path through which a system call reaches what `fd` refers to: /proc/self/fd/N.
pub fn proc_path(fd: BorrowedFd) -> CString {
    use std::os::fd::AsRawFd;
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("digits hold no NUL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `root/` and a sibling `outside/` that symlinks in root try to reach.
    fn scratch(name: &str) -> (Scratch, PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("vmctl-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        (Scratch(base), root, outside)
    }

    fn root_fd(root: &Path) -> OwnedFd {
        std::fs::File::open(root).unwrap().into()
    }

    fn real_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(proc_path(fd.as_fd()).to_str().unwrap()).unwrap()
    }

    #[test]
    fn missing_directories_are_created_inside_the_root() {
        let (_s, root, _) = scratch("mkdir");
        let fd = open(root_fd(&root).as_fd(), "/a/b/../c", Create::Dir).unwrap();
        assert_eq!(real_path(&fd), root.join("a/c"));
        assert!(root.join("a/b").is_dir());
    }

    #[test]
    fn an_absolute_symlink_stays_inside_the_root() {
        let (_s, root, outside) = scratch("abs");
        symlink(&outside, root.join("evil")).unwrap();
        let fd = open(root_fd(&root).as_fd(), "/evil/x", Create::Dir).unwrap();
        let expected = root.join(outside.strip_prefix("/").unwrap()).join("x");
        assert_eq!(real_path(&fd), expected);
        assert!(
            !outside.join("x").exists(),
            "nothing was created outside the root"
        );
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        let (_s, root, _) = scratch("dotdot");
        symlink("../../../../outside", root.join("up")).unwrap();
        let fd = open(root_fd(&root).as_fd(), "/up", Create::Dir).unwrap();
        assert_eq!(real_path(&fd), root.join("outside"));
        let fd = open(root_fd(&root).as_fd(), "/../../etc", Create::Nothing).unwrap();
        assert_eq!(real_path(&fd), root.join("etc"));
    }

    #[test]
    fn a_dangling_file_symlink_is_created_where_it_points_in_the_root() {
        // like /etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf in some images
        let (_s, root, _) = scratch("dangling");
        symlink("../run/resolve/stub.conf", root.join("etc/resolv.conf")).unwrap();
        let fd = open(root_fd(&root).as_fd(), "/etc/resolv.conf", Create::File).unwrap();
        assert_eq!(real_path(&fd), root.join("run/resolve/stub.conf"));
        assert!(root.join("run/resolve/stub.conf").is_file());
    }

    #[test]
    fn loops_and_files_in_the_middle_fail() {
        let (_s, root, _) = scratch("loops");
        symlink("/loop", root.join("loop")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        let r = root_fd(&root);
        let err = open(r.as_fd(), "/loop/x", Create::Dir).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        let err = open(r.as_fd(), "/file/x", Create::Dir).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
        let err = open(r.as_fd(), "/missing", Create::Nothing).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn parent_gives_the_directory_and_the_name() {
        let (_s, root, _) = scratch("parent");
        let (dir, name) = parent(root_fd(&root).as_fd(), "/dev/net/tun")
            .unwrap()
            .unwrap();
        assert_eq!(real_path(&dir), root.join("dev/net"));
        assert_eq!(name.to_str().unwrap(), "tun");
        assert!(parent(root_fd(&root).as_fd(), "/").unwrap().is_none());
    }
}
