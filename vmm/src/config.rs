//! What a VM is made of, and the checks a description passes before any KVM work.

use std::io::Write;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use boot::RamLayout;
use devices::{StopSignal, Timeline};

use crate::{Error, Result};

/// The guest's serial console.
pub struct ConsoleConfig {
    /// Where the guest's output goes.
    pub output: Box<dyn Write + Send>,
    /// A readable fd whose bytes are fed to the guest (stdin), if any.
    pub input: Option<RawFd>,
    /// A byte in the input that ends the VM instead of reaching the guest.
    pub escape: Option<u8>,
}

/// A virtio device to attach.
#[derive(Clone, Debug)]
pub enum DeviceConfig {
    Block(devices::virtio::block::BlockConfig),
    Pmem(devices::virtio::pmem::PmemConfig),
    Net(devices::virtio::net::NetConfig),
    Vsock(devices::virtio::vsock::VsockConfig),
}

pub struct VmConfig {
    pub kernel: PathBuf,
    /// Map the ELF kernel's pages from its file, copy-on-write, so VMs booted from one file
    /// share them in the host's page cache (boot::kernel_share). Only for a kernel file that is
    /// never changed in place while VMs run (the runtime's installed one).
    pub share_kernel_pages: bool,
    pub initrd: Option<PathBuf>,
    /// The kernel command line; the VMM appends one `virtio_mmio.device=` entry per device.
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub console: ConsoleConfig,
    pub devices: Vec<DeviceConfig>,
    pub timeline: Arc<Timeline>,
    /// How the VM is asked to stop; the caller may signal it too (e.g. from a signal handler).
    pub stop: Arc<StopSignal>,
}

/// Highest vCPU count the machine supports (the MP table's limit).
pub const MAX_VCPUS: u32 = boot::mptable::MAX_CPUS as u32;

/// Checks the parts of a configuration that need no KVM, so bad input fails first and fast.
pub fn validate(config: &VmConfig) -> Result<()> {
    if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
        return Err(Error::VcpuCount {
            requested: config.vcpus,
            max: MAX_VCPUS,
        });
    }
    RamLayout::new(config.memory_mib)?;
    let host = crate::host_budget::host_memory_mib();
    if host > 0 && config.memory_mib > host {
        return Err(Error::MemoryTooLarge {
            requested: config.memory_mib,
            host,
        });
    }
    Ok(())
}
