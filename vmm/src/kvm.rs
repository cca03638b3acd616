//! Opening /dev/kvm and checking it can run our machine.

use kvm_ioctls::{Cap, Kvm};

use crate::{Error, Result};

const KVM_API_VERSION: i32 = 12;

/// Opens /dev/kvm with errors a user can act on.
pub fn open() -> Result<Kvm> {
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => Error::KvmMissing,
        libc::EACCES | libc::EPERM => Error::KvmPermission,
        _ => Error::KvmOpen(e),
    })?;
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(Error::KvmApiVersion(version));
    }
    for (cap, name) in [
        (
            Cap::SplitIrqchip,
            "the split irqchip (KVM_CAP_SPLIT_IRQCHIP)",
        ),
        (Cap::IrqRouting, "interrupt routing (KVM_CAP_IRQ_ROUTING)"),
        (Cap::UserMemory, "user memory regions (KVM_CAP_USER_MEMORY)"),
        (Cap::Irqfd, "irqfds (KVM_CAP_IRQFD)"),
        (Cap::Ioeventfd, "ioeventfds (KVM_CAP_IOEVENTFD)"),
        (Cap::ExtCpuid, "CPUID setting (KVM_CAP_EXT_CPUID)"),
        (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(Error::KvmCapability(name));
        }
    }
    Ok(kvm)
}

/// Whether this host's /dev/kvm is kvm-pvm (software nested virtualization), which runs tiny
/// bare-metal guests but no Linux guest.
pub fn is_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// The hint added to unservable-exit messages on such hosts.
pub const KVM_PVM_HINT: &str = "hint: this host's /dev/kvm is kvm-pvm (software nested \
virtualization), which cannot run Linux guests; run them inside the test host \
(resources/testhost/run) or on hardware KVM";
