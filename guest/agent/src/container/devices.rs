//! The container's /dev as runc makes it: the default nodes, the spec's nodes, and the links.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

use super::plan::DevicePlan;
use super::resolve::{self, Create};
use crate::error::{Context, Error};
use crate::sys::{self, fs};

/// runc's default devices: (name, major, minor), character devices of mode 0666.
const DEFAULTS: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The default nodes the spec does not list itself.
pub fn defaults(spec_devices: &[DevicePlan]) -> Vec<DevicePlan> {
    DEFAULTS
        .iter()
        .map(|&(name, major, minor)| DevicePlan {
            path: format!("/dev/{name}"),
            mode: libc::S_IFCHR | 0o666,
            dev: libc::makedev(major, minor),
            uid: 0,
            gid: 0,
        })
        .filter(|d| !spec_devices.iter().any(|s| s.path == d.path))
        .collect()
}

/// Creates the node `d` inside `root` (before pivot_root). An existing node is left alone. Where
/// mknod is refused (a /dev that is not a tmpfs, on a share), the agent's own node of the same path
/// is bind-mounted onto an empty file instead, as runc does in user namespaces.
pub fn create(root: BorrowedFd, d: &DevicePlan) -> Result<(), Error> {
    let what = || format!("create device {}", d.path);
    let Some((dir, name)) = resolve::parent(root, &d.path).ctx(what)? else {
        return Err(Error::Invalid(format!(
            "device path {} is the root",
            d.path
        )));
    };
    match fs::mknodat(dir.as_fd(), &name, d.mode, d.dev) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EOPNOTSUPP | libc::EACCES)
            ) =>
        {
            return bind_host_node(root, d).map_err(|_| Error::sys(what(), e));
        }
        Err(e) => return Err(Error::sys(what(), e)),
    }
    // mknod's mode went through the umask (0 here, but be exact) and the owner is ours
    fs::chmod_at(dir.as_fd(), &name, d.mode & 0o7777).ctx(what)?;
    fs::chown_at(dir.as_fd(), &name, d.uid, d.gid).ctx(what)?;
    Ok(())
}

fn bind_host_node(root: BorrowedFd, d: &DevicePlan) -> Result<(), Error> {
    let what = || format!("bind-mount device {}", d.path);
    let source = sys::cstr(d.path.as_bytes()).ctx(what)?;
    let target = resolve::open(root, &d.path, Create::File).ctx(what)?;
    fs::mount(
        Some(&source),
        &resolve::proc_path(target.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .ctx(what)
}

/// runc's links in /dev: fd, stdin, stdout, stderr (and core where /proc/kcore exists), ptmx to
/// the container's devpts; and the shm directory.
pub fn links(root: BorrowedFd) -> Result<(), Error> {
    let dev = resolve::open(root, "/dev", Create::Dir).ctx(|| "open the container's /dev")?;
    let mut links: Vec<(&CStr, &CStr)> = vec![
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ];
    if std::path::Path::new("/proc/kcore").exists() {
        links.push((c"/proc/kcore", c"core"));
    }
    for (target, name) in links {
        match fs::symlinkat(target, dev.as_fd(), name) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(Error::sys(
                    format!("create /dev/{}", name.to_string_lossy()),
                    e,
                ))
            }
            _ => {}
        }
    }
    match fs::unlinkat(dev.as_fd(), c"ptmx") {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
            return Err(Error::sys("remove /dev/ptmx", e))
        }
        _ => {}
    }
    fs::symlinkat(c"pts/ptmx", dev.as_fd(), c"ptmx").ctx(|| "link /dev/ptmx to pts/ptmx")?;
    match fs::mkdirat(dev.as_fd(), c"shm", 0o1777) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(Error::sys("create /dev/shm", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_runcs_minus_what_the_spec_lists() {
        let spec = vec![DevicePlan {
            path: "/dev/tty".into(),
            mode: libc::S_IFCHR | 0o620,
            dev: libc::makedev(5, 0),
            uid: 0,
            gid: 5,
        }];
        let d = defaults(&spec);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom"
            ]
        );
        assert_eq!(d[0].dev, libc::makedev(1, 3));
        assert_eq!(d[0].mode, libc::S_IFCHR | 0o666);
    }
}
