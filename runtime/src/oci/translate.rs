//! From the OCI spec to what the VM is made of: the agent's container spec (host paths replaced
//! by share tags), the shares the file server exports, and the VM's size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use guest_protocol as proto;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::oci::spec;
use crate::Error;

/// vCPUs when neither the spec's CPU quota nor `vmctl.cpus` says.
pub const DEFAULT_VCPUS: u32 = 1;
/// Guest RAM when neither the spec's memory limit nor `vmctl.memory_mib` says.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// The least guest RAM vmctl gives a container VM: the guest kernel and agent need ~40 MiB.
pub const MIN_MEMORY_MIB: u64 = 64;
pub const CPUS_ANNOTATION: &str = "vmctl.cpus";
pub const MEMORY_ANNOTATION: &str = "vmctl.memory_mib";
/// "true" or "false": map the guest kernel's pages from the host's page cache, shared by every
/// VM (see [`share_kernel_pages`]).
pub const SHARE_KERNEL_ANNOTATION: &str = "vmctl.share_kernel_pages";
/// The tag of the root file system's share.
pub const ROOT_TAG: &str = "rootfs";

/// A host directory or file exported to the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareDef {
    pub tag: String,
    pub source: ShareSource,
    pub readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareSource {
    Dir(PathBuf),
    /// One file: the share shows `dir` holding only `name`.
    File {
        dir: PathBuf,
        name: String,
    },
}

/// Everything the monitor needs to build the container's VM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Translated {
    pub container: proto::ContainerSpec,
    pub shares: Vec<ShareDef>,
    pub vcpus: u32,
    pub memory_mib: u64,
    #[serde(default)]
    pub share_kernel_pages: bool,
}

/// Mount types the guest kernel provides; anything else is refused by name.
const KERNEL_FS: [&str; 8] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "ramfs",
];

pub fn translate(id: &str, spec: &Spec, bundle: &Path) -> Result<Translated, Error> {
    let rootfs = spec::rootfs_path(spec, bundle)?;
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let mut shares = vec![ShareDef {
        tag: ROOT_TAG.into(),
        source: ShareSource::Dir(rootfs),
        readonly,
    }];
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let options: Vec<String> = m.options().clone().unwrap_or_default();
        let typ = m.typ().clone().unwrap_or_default();
        let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let destination = m.destination().to_string_lossy().into_owned();
        let source = if is_bind {
            let src = m.source().clone().ok_or_else(|| {
                Error::Spec(format!(
                    "mounts[{i}] ({destination}): a bind mount needs a source"
                ))
            })?;
            let src = if src.is_absolute() {
                src
            } else {
                bundle.join(src)
            };
            let tag = format!("m{i}");
            let ro = options.iter().any(|o| o == "ro");
            let (share, file) = share_for(&tag, &src, ro, &destination)?;
            shares.push(share);
            proto::MountSource::Share { tag, file }
        } else if KERNEL_FS.contains(&typ.as_str()) {
            proto::MountSource::Fs {
                fstype: typ.clone(),
                source: m
                    .source()
                    .as_ref()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| typ.clone()),
            }
        } else {
            return Err(Error::Unsupported(format!(
                "mounts[{i}] ({destination}): mount type {typ:?} (supported: bind, {})",
                KERNEL_FS.join(", ")
            )));
        };
        mounts.push(proto::MountSpec {
            destination,
            source,
            options,
        });
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("config.json has no process".into()))?;
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ns| match ns.typ() {
            LinuxNamespaceType::Pid => Some(proto::Namespace::Pid),
            LinuxNamespaceType::Mount => Some(proto::Namespace::Mount),
            LinuxNamespaceType::Uts => Some(proto::Namespace::Uts),
            LinuxNamespaceType::Ipc => Some(proto::Namespace::Ipc),
            LinuxNamespaceType::Cgroup => Some(proto::Namespace::Cgroup),
            _ => None,
        })
        .collect();
    let devices = linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .map(|d| proto::DeviceNode {
            path: d.path().to_string_lossy().into_owned(),
            kind: device_kind(&serde_json::to_value(d.typ()).unwrap_or_default()),
            major: d.major(),
            minor: d.minor(),
            file_mode: d.file_mode(),
            uid: d.uid(),
            gid: d.gid(),
        })
        .collect();
    let container = proto::ContainerSpec {
        id: id.to_string(),
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        root: proto::RootSpec {
            share: ROOT_TAG.into(),
            readonly,
        },
        mounts,
        process: process_spec(process)?,
        namespaces,
        masked_paths: linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
        readonly_paths: linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
        sysctl: linux
            .and_then(|l| l.sysctl().clone())
            .map(|m| m.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
        devices,
        // Filled in by the monitor from the namespace, once the hooks have set it up.
        interfaces: Vec::new(),
        routes: Vec::new(),
        dns_relay: None,
        spares: Vec::new(),
    };
    let (vcpus, memory_mib) = vm_size(spec)?;
    let share_kernel_pages = share_kernel_pages(spec, host_is_a_vm())?;
    Ok(Translated {
        container,
        shares,
        vcpus,
        memory_mib,
        share_kernel_pages,
    })
}

/// The share carrying a bind mount's source: a directory, or one file.
fn share_for(
    tag: &str,
    src: &Path,
    readonly: bool,
    destination: &str,
) -> Result<(ShareDef, Option<String>), Error> {
    let meta = std::fs::metadata(src).map_err(|e| {
        Error::Spec(format!(
            "bind mount source {} (for {destination}): {}",
            src.display(),
            crate::error::describe_io(&e)
        ))
    })?;
    if meta.is_dir() {
        let def = ShareDef {
            tag: tag.into(),
            source: ShareSource::Dir(src.to_path_buf()),
            readonly,
        };
        return Ok((def, None));
    }
    if !meta.is_file() {
        return Err(Error::Unsupported(format!(
            "bind mount of {} (for {destination}): only directories and regular files can be shared with a VM",
            src.display()
        )));
    }
    let canonical = std::fs::canonicalize(src)
        .map_err(|e| Error::io(format!("cannot resolve {}", src.display()), e))?;
    let (Some(dir), Some(name)) = (canonical.parent(), canonical.file_name()) else {
        return Err(Error::Spec(format!(
            "bind mount source {} has no parent directory",
            src.display()
        )));
    };
    let name = name
        .to_str()
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "bind mount source {}: a file name that is not UTF-8",
                src.display()
            ))
        })?
        .to_string();
    let def = ShareDef {
        tag: tag.into(),
        source: ShareSource::File {
            dir: dir.to_path_buf(),
            name: name.clone(),
        },
        readonly,
    };
    Ok((def, Some(name)))
}

fn device_kind(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or("c").to_string()
}

/// The agent's view of an OCI process.
pub fn process_spec(p: &Process) -> Result<proto::ProcessSpec, Error> {
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .flatten()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let capabilities = p.capabilities().as_ref().map(|c| proto::Capabilities {
        bounding: names(c.bounding()),
        effective: names(c.effective()),
        inheritable: names(c.inheritable()),
        permitted: names(c.permitted()),
        ambient: names(c.ambient()),
    });
    let rlimits = p
        .rlimits()
        .iter()
        .flatten()
        .map(|r| proto::Rlimit {
            kind: serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            soft: r.soft(),
            hard: r.hard(),
        })
        .collect();
    let user = p.user();
    Ok(proto::ProcessSpec {
        args: p.args().clone().unwrap_or_default(),
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().to_string_lossy().into_owned(),
        terminal: p.terminal().unwrap_or(false),
        console_size: p.console_size().as_ref().map(|b| proto::WindowSize {
            rows: u16::try_from(b.height()).unwrap_or(u16::MAX),
            cols: u16::try_from(b.width()).unwrap_or(u16::MAX),
        }),
        user: proto::User {
            uid: user.uid(),
            gid: user.gid(),
            umask: user.umask(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
        },
        rlimits,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        capabilities,
        oom_score_adj: p.oom_score_adj(),
    })
}

/// vCPUs and MiB of guest RAM: the annotations first, then the spec's resources, then defaults.
pub fn vm_size(spec: &Spec) -> Result<(u32, u64), Error> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let vcpus = match annotations.get(CPUS_ANNOTATION) {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=vmm::MAX_VCPUS).contains(n))
            .ok_or_else(|| {
                Error::Spec(format!(
                    "annotation {CPUS_ANNOTATION}={v:?}: a number of vCPUs from 1 to {} is needed",
                    vmm::MAX_VCPUS
                ))
            })?,
        None => resources
            .and_then(|r| r.cpu().as_ref())
            .and_then(|c| match (c.quota(), c.period()) {
                (Some(q), Some(p)) if q > 0 && p > 0 => {
                    Some((q as u64).div_ceil(p).clamp(1, u64::from(vmm::MAX_VCPUS)) as u32)
                }
                _ => None,
            })
            .unwrap_or(DEFAULT_VCPUS),
    };
    let memory_mib = match annotations.get(MEMORY_ANNOTATION) {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&m| m >= MIN_MEMORY_MIB)
            .ok_or_else(|| {
                Error::Spec(format!(
                    "annotation {MEMORY_ANNOTATION}={v:?}: MiB of guest RAM, at least {MIN_MEMORY_MIB}, is needed"
                ))
            })?,
        None => resources
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|&l| l > 0)
            .map(|l| (l as u64).div_ceil(1 << 20).max(MIN_MEMORY_MIB))
            .unwrap_or(DEFAULT_MEMORY_MIB),
    };
    Ok((vcpus, memory_mib))
}

/// Whether the guest kernel's pages come from the host's page cache (one copy for every VM,
/// ~4 MiB less per container) or are copied into each VM's RAM. Shared pages are 4 KiB pages of a
/// file, so KVM maps them one nested-page fault at a time (~4,300 more faults per boot) where
/// copied RAM is backed by 2 MiB pages: ~5 ms on hardware, but ~0.9 s when the host is itself a
/// VM, where every such fault goes through the outer hypervisor. So the default is to share
/// except on a host that is a VM; the annotation decides either way.
pub fn share_kernel_pages(spec: &Spec, host_is_a_vm: bool) -> Result<bool, Error> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    match annotations.get(SHARE_KERNEL_ANNOTATION).map(String::as_str) {
        None => Ok(!host_is_a_vm),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(Error::Spec(format!(
            "annotation {SHARE_KERNEL_ANNOTATION}={v:?}: \"true\" or \"false\" is needed"
        ))),
    }
}

/// The CPU's "running under a hypervisor" flag, as the host's kernel reports it.
fn host_is_a_vm() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        spec
    }

    #[test]
    fn kernel_pages_are_shared_unless_the_host_is_a_vm() {
        let spec = spec_with(&[]);

        assert!(share_kernel_pages(&spec, false).unwrap());
        assert!(!share_kernel_pages(&spec, true).unwrap());
    }

    #[test]
    fn the_annotation_decides_kernel_sharing_either_way() {
        let on = spec_with(&[(SHARE_KERNEL_ANNOTATION, "true")]);
        let off = spec_with(&[(SHARE_KERNEL_ANNOTATION, "false")]);

        assert!(share_kernel_pages(&on, true).unwrap());
        assert!(!share_kernel_pages(&off, false).unwrap());
    }

    #[test]
    fn a_bad_kernel_sharing_annotation_is_named() {
        let spec = spec_with(&[(SHARE_KERNEL_ANNOTATION, "yes")]);

        let err = share_kernel_pages(&spec, false).unwrap_err().to_string();

        assert!(err.contains("vmctl.share_kernel_pages=\"yes\""), "{err}");
    }
}
