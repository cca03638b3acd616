//! A container spec, checked and turned into what the container's init applies. Built in the
//! agent before any share is mounted or any process forked: a bad spec costs nothing.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use guest_protocol::{ContainerSpec, DeviceNode, MountSource, MountSpec, Namespace};

use super::check;
use super::mount_opts::{self, MountOptions};
use super::process_plan::ProcessPlan;
use crate::error::Error;

const MAX_MOUNTS: usize = 1024;
const MAX_PATHS: usize = 1024;
const MAX_SYSCTLS: usize = 1024;
const MAX_DEVICES: usize = 1024;

/// What one mount of the spec mounts.
#[derive(Clone, Debug)]
pub enum MountKind {
    /// A file system the kernel makes: (source, type).
    Fs { source: CString, fstype: CString },
    /// A bind mount of `source`, a path in the agent's view (a share's staging directory or a
    /// file in it).
    Bind { source: PathBuf },
}

#[derive(Clone, Debug)]
pub struct MountPlan {
    /// Absolute, inside the container's root.
    pub destination: String,
    pub kind: MountKind,
    pub options: MountOptions,
    /// The mount point is a file (a share of one file), not a directory.
    pub is_file: bool,
}

#[derive(Clone, Debug)]
pub struct DevicePlan {
    pub path: String,
    /// File type bits (S_IFCHR, S_IFBLK, S_IFIFO) and permissions.
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug)]
pub struct ContainerPlan {
    /// The container's root in the agent's view (the root share's mount point).
    pub rootfs: PathBuf,
    pub readonly: bool,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountPlan>,
    /// The namespaces to create beside the mount namespace, which is always created.
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// (path under /proc/sys, value)
    pub sysctl: Vec<(String, String)>,
    pub devices: Vec<DevicePlan>,
    pub process: ProcessPlan,
    /// The tags of the shares the mounts use, each once, in order of first use.
    pub shares: Vec<String>,
}

impl ContainerPlan {
    /// Checks `spec` and prepares it, with the root at `rootfs` and share `tag` mounted at
    /// `staging(tag)` (both in the agent's view).
    pub fn new(
        spec: &ContainerSpec,
        rootfs: PathBuf,
        staging: &dyn Fn(&str) -> PathBuf,
    ) -> Result<ContainerPlan, Error> {
        check::tag(&spec.root.share)?;
        check::at_most("mounts", &spec.mounts, MAX_MOUNTS)?;
        check::at_most("masked paths", &spec.masked_paths, MAX_PATHS)?;
        check::at_most("read-only paths", &spec.readonly_paths, MAX_PATHS)?;
        check::at_most("devices", &spec.devices, MAX_DEVICES)?;
        if spec.sysctl.len() > MAX_SYSCTLS {
            return Err(Error::Invalid(format!(
                "{} sysctls (at most {MAX_SYSCTLS})",
                spec.sysctl.len()
            )));
        }
        if let Some(h) = &spec.hostname {
            check::uts_name("hostname", h)?;
        }
        if let Some(d) = &spec.domainname {
            check::uts_name("domainname", d)?;
        }
        let mut shares: Vec<String> = Vec::new();
        let mut mounts = Vec::with_capacity(spec.mounts.len());
        for m in &spec.mounts {
            let plan = mount_plan(m, staging)?;
            if let MountSource::Share { tag, .. } = &m.source {
                if !shares.contains(tag) {
                    shares.push(tag.clone());
                }
            }
            mounts.push(plan);
        }
        for p in spec.masked_paths.iter().chain(&spec.readonly_paths) {
            check::absolute("masked or read-only path", p)?;
        }
        let sysctl = spec
            .sysctl
            .iter()
            .map(|(k, v)| {
                check::c_safe("sysctl value", v)?;
                Ok((check::sysctl_path(k)?, v.clone()))
            })
            .collect::<Result<_, Error>>()?;
        let mut namespaces = spec.namespaces.clone();
        namespaces.dedup();
        Ok(ContainerPlan {
            rootfs,
            readonly: spec.root.readonly,
            hostname: spec.hostname.clone(),
            domainname: spec.domainname.clone(),
            mounts,
            namespaces,
            masked_paths: spec.masked_paths.clone(),
            readonly_paths: spec.readonly_paths.clone(),
            sysctl,
            devices: spec
                .devices
                .iter()
                .map(device_plan)
                .collect::<Result<_, _>>()?,
            process: ProcessPlan::new(&spec.process)?,
            shares,
        })
    }

    pub fn has(&self, ns: Namespace) -> bool {
        self.namespaces.contains(&ns)
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    check::c_safe(what, s)?;
    CString::new(s).map_err(|_| Error::Invalid(format!("{what} {s:?} holds a NUL byte")))
}

fn mount_plan(m: &MountSpec, staging: &dyn Fn(&str) -> PathBuf) -> Result<MountPlan, Error> {
    check::absolute("mount destination", &m.destination)?;
    let mut options = mount_opts::parse(&m.options)
        .map_err(|e| Error::Invalid(format!("mount on {}: {e}", m.destination)))?;
    let (kind, is_file) = match &m.source {
        MountSource::Fs { fstype, source } => {
            if options.is_bind() {
                return Err(Error::Invalid(format!(
                    "mount on {}: a bind mount must come from a share, not from {source:?}",
                    m.destination
                )));
            }
            let ok = !fstype.is_empty()
                && fstype.len() <= 64
                && fstype
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(Error::Invalid(format!(
                    "mount on {}: file system type {fstype:?} is not a type name",
                    m.destination
                )));
            }
            // The VM has only cgroup v2: a v1 "cgroup" mount becomes cgroup2.
            let fstype = if fstype == "cgroup" {
                "cgroup2"
            } else {
                fstype
            };
            let kind = MountKind::Fs {
                source: cstring("mount source", source)?,
                fstype: cstring("file system type", fstype)?,
            };
            (kind, false)
        }
        MountSource::Share { tag, file } => {
            check::tag(tag)?;
            options.flags |= libc::MS_BIND;
            let dir = staging(tag);
            match file {
                Some(name) => {
                    check::file_name("shared file name", name)?;
                    (
                        MountKind::Bind {
                            source: dir.join(name),
                        },
                        true,
                    )
                }
                None => (MountKind::Bind { source: dir }, false),
            }
        }
    };
    Ok(MountPlan {
        destination: m.destination.clone(),
        kind,
        options,
        is_file,
    })
}

fn device_plan(d: &DeviceNode) -> Result<DevicePlan, Error> {
    check::absolute("device path", &d.path)?;
    let kind = match d.kind.as_str() {
        "c" | "u" => libc::S_IFCHR,
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        other => {
            return Err(Error::Invalid(format!(
                "device {}: type {other:?} is not c, b, u or p",
                d.path
            )))
        }
    };
    let num = |what: &str, v: i64| {
        u32::try_from(v).map_err(|_| {
            Error::Invalid(format!(
                "device {}: {what} number {v} is out of range",
                d.path
            ))
        })
    };
    let (major, minor) = (num("major", d.major)?, num("minor", d.minor)?);
    let perms = d.file_mode.unwrap_or(0o666);
    if perms > 0o7777 {
        return Err(Error::Invalid(format!(
            "device {}: file mode {perms:#o} holds more than permission bits",
            d.path
        )));
    }
    Ok(DevicePlan {
        path: d.path.clone(),
        mode: kind | perms,
        dev: libc::makedev(major, minor),
        uid: d.uid.unwrap_or(0),
        gid: d.gid.unwrap_or(0),
    })
}

/// The staging directory of share `tag` under `base` (the agent's is /run/vmctl/shares).
pub fn staging_under(base: &Path, tag: &str) -> PathBuf {
    base.join(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_protocol::{ErrorKind, ProcessSpec, RootSpec};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            root: RootSpec {
                share: "rootfs".into(),
                readonly: false,
            },
            process: ProcessSpec {
                args: vec!["sh".into()],
                cwd: "/".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn mount(dest: &str, source: MountSource, options: &[&str]) -> MountSpec {
        MountSpec {
            destination: dest.into(),
            source,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn plan(s: &ContainerSpec) -> Result<ContainerPlan, Error> {
        ContainerPlan::new(s, "/run/vmctl/rootfs".into(), &|t| {
            staging_under(Path::new("/run/vmctl/shares"), t)
        })
    }

    #[test]
    fn shares_are_bind_mounts_from_their_staging_dirs() {
        let mut s = spec();
        s.mounts = vec![
            mount(
                "/etc/hosts",
                MountSource::Share {
                    tag: "m1".into(),
                    file: Some("hosts".into()),
                },
                &["rbind", "ro"],
            ),
            mount(
                "/data",
                MountSource::Share {
                    tag: "m2".into(),
                    file: None,
                },
                &[],
            ),
            mount(
                "/data2",
                MountSource::Share {
                    tag: "m2".into(),
                    file: None,
                },
                &[],
            ),
        ];

        let p = plan(&s).unwrap();

        assert_eq!(p.shares, vec!["m1".to_string(), "m2".into()]);
        assert!(p.mounts[0].is_file);
        assert!(matches!(&p.mounts[0].kind,
            MountKind::Bind { source } if source == Path::new("/run/vmctl/shares/m1/hosts")));
        assert!(
            p.mounts[1].options.is_bind(),
            "a share is always a bind mount"
        );
        assert!(!p.mounts[1].is_file);
    }

    #[test]
    fn cgroup_becomes_cgroup2() {
        let mut s = spec();
        s.mounts = vec![mount(
            "/sys/fs/cgroup",
            MountSource::Fs {
                fstype: "cgroup".into(),
                source: "cgroup".into(),
            },
            &["ro", "nosuid"],
        )];
        let p = plan(&s).unwrap();
        assert!(matches!(&p.mounts[0].kind,
            MountKind::Fs { fstype, .. } if fstype.to_str() == Ok("cgroup2")));
        assert!(p.mounts[0].options.is_readonly());
    }

    #[test]
    fn devices_get_type_and_default_mode() {
        let mut s = spec();
        s.devices = vec![DeviceNode {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            file_mode: None,
            uid: None,
            gid: None,
        }];
        let d = &plan(&s).unwrap().devices[0];
        assert_eq!(d.mode, libc::S_IFCHR | 0o666);
        assert_eq!(d.dev, libc::makedev(10, 229));
    }

    #[test]
    fn bad_specs_are_invalid() {
        let share = |tag: &str, file: Option<&str>| MountSource::Share {
            tag: tag.into(),
            file: file.map(Into::into),
        };
        let fs = |t: &str, src: &str| MountSource::Fs {
            fstype: t.into(),
            source: src.into(),
        };
        type Change = Box<dyn Fn(&mut ContainerSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("root tag", Box::new(|s| s.root.share = "../x".into())),
            (
                "relative dest",
                Box::new(move |s| s.mounts = vec![mount("data", share("t", None), &[])]),
            ),
            (
                "bad tag",
                Box::new(move |s| s.mounts = vec![mount("/d", share("a,b", None), &[])]),
            ),
            (
                "file name",
                Box::new(move |s| {
                    s.mounts = vec![mount("/d", share("t", Some("../../etc/shadow")), &[])]
                }),
            ),
            (
                "bind from fs",
                Box::new(move |s| s.mounts = vec![mount("/d", fs("none", "/etc"), &["rbind"])]),
            ),
            (
                "fstype",
                Box::new(move |s| s.mounts = vec![mount("/d", fs("ext4,x", "a"), &[])]),
            ),
            (
                "option",
                Box::new(move |s| s.mounts = vec![mount("/d", fs("tmpfs", "tmpfs"), &["rro"])]),
            ),
            ("hostname", Box::new(|s| s.hostname = Some("h".repeat(100)))),
            (
                "sysctl",
                Box::new(|s| {
                    s.sysctl.insert("../../x".into(), "1".into());
                }),
            ),
            (
                "masked",
                Box::new(|s| s.masked_paths = vec!["proc/kcore".into()]),
            ),
            (
                "device",
                Box::new(|s| {
                    s.devices = vec![DeviceNode {
                        path: "/dev/x".into(),
                        kind: "z".into(),
                        major: 1,
                        minor: 1,
                        file_mode: None,
                        uid: None,
                        gid: None,
                    }]
                }),
            ),
            ("process", Box::new(|s| s.process.args.clear())),
        ];
        for (name, change) in cases {
            let mut s = spec();
            change(&mut s);
            let err = plan(&s).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{name}: {err}");
        }
    }
}
