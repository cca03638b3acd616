//! What a VM is made of.

use std::io::Write;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use devices::{StopSignal, Timeline};

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
