//! Finding the project's default kernel and initramfs (see README: "Where vmctl finds its kernel").

use std::path::PathBuf;

use crate::Error;

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|p| p.to_owned()))
    {
        dirs.push(bin_dir.join("../share/vmctl"));
    }
    dirs.push(PathBuf::from("/usr/local/share/vmctl"));
    dirs.push(PathBuf::from("/usr/share/vmctl"));
    dirs
}

fn find(env: &str, file: &str, what: &'static str, flag: &'static str) -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let dirs = search_dirs();
    for dir in &dirs {
        let candidate = dir.join(file);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let looked: Vec<String> = std::iter::once(format!("${env}"))
        .chain(dirs.iter().map(|d| d.join(file).display().to_string()))
        .collect();
    Err(Error::MissingAsset {
        what,
        flag,
        looked: looked.join(", "),
    })
}

pub fn default_kernel() -> Result<PathBuf, Error> {
    find("VMCTL_KERNEL", "vmlinux", "kernel", "--kernel")
}

pub fn default_initrd() -> Result<PathBuf, Error> {
    find("VMCTL_INITRD", "initramfs.img", "initramfs", "--initrd")
}

/// The read-only guest system of container VMs (the agent and busybox, an erofs image mapped by
/// every VM as virtio-pmem).
pub fn default_guest_image() -> Result<PathBuf, Error> {
    find(
        "VMCTL_GUEST_IMAGE",
        "guest.erofs",
        "guest system image",
        "VMCTL_GUEST_IMAGE",
    )
}
