//! Shared by the root-only tests: a scratch root file system made of busybox-static, and specs
//! like Docker's.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use guest_protocol::{ContainerSpec, MountSource, MountSpec, Namespace, ProcessSpec, RootSpec};

/// Whether the tests that need root (namespaces, mounts) can run; prints why not when not.
pub fn can_run() -> bool {
    // SAFETY-free check: geteuid through std is not available, /proc/self/status is.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        test_skip::report("it needs root (namespaces, mounts, pivot_root)");
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        test_skip::report(&format!(
            "{BUSYBOX} is missing (apt-get install busybox-static)"
        ));
        return false;
    }
    true
}

pub const BUSYBOX: &str = "/bin/busybox";

const APPLETS: [&str; 30] = [
    "sh",
    "echo",
    "cat",
    "id",
    "hostname",
    "ls",
    "sleep",
    "grep",
    "pwd",
    "true",
    "false",
    "env",
    "readlink",
    "stat",
    "test",
    "mkdir",
    "touch",
    "kill",
    "ps",
    "tr",
    "head",
    "wc",
    "sysctl",
    "mount",
    "domainname",
    "tty",
    "stty",
    "printf",
    "umask",
    "rm",
];

/// A scratch directory removed on drop: `root/` (the container's root) and `shares/<tag>/`.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("vmctl-agent-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        for d in [
            "bin", "proc", "sys", "dev", "tmp", "etc", "root", "mnt", "usr/bin",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::create_dir_all(dir.join("shares")).unwrap();
        Scratch { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn shares(&self) -> PathBuf {
        self.dir.join("shares")
    }

    /// Makes share `tag` (a directory under shares/) and returns it.
    pub fn share(&self, tag: &str) -> PathBuf {
        let d = self.shares().join(tag);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn fs_mount(dest: &str, fstype: &str, options: &[&str]) -> MountSpec {
    MountSpec {
        destination: dest.into(),
        source: MountSource::Fs {
            fstype: fstype.into(),
            source: fstype.into(),
        },
        options: options.iter().map(|s| s.to_string()).collect(),
    }
}

/// Docker's default mounts (config.json of `docker run`), minus the host file binds.
pub fn docker_mounts() -> Vec<MountSpec> {
    vec![
        fs_mount("/proc", "proc", &["nosuid", "noexec", "nodev"]),
        fs_mount(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        fs_mount(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        fs_mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        fs_mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        fs_mount(
            "/dev/shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ]
}

/// A Docker-like spec running `sh -c script`.
pub fn spec(script: &str) -> ContainerSpec {
    ContainerSpec {
        id: "test".into(),
        hostname: Some("testbox".into()),
        root: RootSpec {
            share: "rootfs".into(),
            readonly: false,
        },
        mounts: docker_mounts(),
        process: ProcessSpec {
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![
                "PATH=/usr/local/bin:/usr/bin:/bin".into(),
                "HOME=/root".into(),
            ],
            cwd: "/".into(),
            ..Default::default()
        },
        namespaces: vec![
            Namespace::Pid,
            Namespace::Mount,
            Namespace::Uts,
            Namespace::Ipc,
        ],
        masked_paths: vec![
            "/proc/kcore".into(),
            "/proc/keys".into(),
            "/proc/scsi".into(),
        ],
        readonly_paths: vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()],
        ..Default::default()
    }
}
