//! Reading and checking a bundle's config.json.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::Error;

/// Reads `<bundle>/config.json`; a malformed file is an error saying where.
pub fn load(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if !bundle.exists() => {
            Error::Spec(format!("bundle {} does not exist", bundle.display()))
        }
        std::io::ErrorKind::NotFound => Error::Spec(format!("{} does not exist", path.display())),
        _ => Error::io(format!("cannot read {}", path.display()), e),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Spec(format!("{} is not a valid OCI spec: {e}", path.display())))
}

/// The root file system's path, relative paths taken from the bundle.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, Error> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Spec("config.json has no root".into()))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        return Err(Error::Spec("config.json: root.path is empty".into()));
    }
    Ok(if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    })
}

/// Checks what vmctl needs of a spec and refuses, naming it, what a VM cannot do.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<(), Error> {
    if spec.version().is_empty() {
        return Err(Error::Spec("config.json: ociVersion is missing".into()));
    }
    if !spec.version().starts_with("1.") {
        return Err(Error::Spec(format!(
            "config.json: ociVersion {} is not supported (1.x is)",
            spec.version()
        )));
    }
    let rootfs = rootfs_path(spec, bundle)?;
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Spec(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )))
        }
        Err(_) => {
            return Err(Error::Spec(format!(
                "root.path {} does not exist",
                rootfs.display()
            )))
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("config.json has no process".into()))?;
    validate_process(process, "process")?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::Spec(format!(
                "mounts[{i}].destination {} is not an absolute path",
                m.destination().display()
            )));
        }
    }
    if let Some(linux) = spec.linux() {
        if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        {
            return Err(Error::Unsupported(
                "linux.uidMappings/gidMappings (user namespaces): a VM's processes already run in a kernel of their own".into(),
            ));
        }
        for ns in linux.namespaces().iter().flatten() {
            let kind = ns.typ();
            let joined = ns.path().is_some();
            match kind {
                LinuxNamespaceType::Network => {}
                LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                    return Err(Error::Unsupported(format!(
                        "linux.namespaces: a {} namespace",
                        namespace_name(kind)
                    )))
                }
                _ if joined => {
                    return Err(Error::Unsupported(format!(
                        "linux.namespaces: joining the {} namespace at {} (each container has its own VM and kernel)",
                        namespace_name(kind),
                        ns.path().as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks a process (the spec's, or an exec's).
pub fn validate_process(p: &oci_spec::runtime::Process, what: &str) -> Result<(), Error> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Spec(format!("{what}.args must not be empty")));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::Spec(format!(
            "{what}.cwd {} is not an absolute path",
            p.cwd().display()
        )));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(Error::Spec(format!(
                "{what}.env[{i}] {e:?} is not NAME=VALUE"
            )));
        }
    }
    Ok(())
}

pub fn namespace_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The network namespace the spec names: `Some(None)` a new one, `Some(Some(path))` an existing
/// one, `None` none listed (the host's: impossible for a VM's interfaces, see translate).
pub fn network_namespace(spec: &Spec) -> Option<Option<PathBuf>> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .iter()
        .flatten()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        .map(|ns| ns.path().clone())
}
