//! The vmctl VMM as a library: build a pc-lite machine from a [`VmConfig`], run it, and learn
//! why it stopped. The `vmctl` binary is a thin CLI over this.

mod config;
mod console;
mod error;
mod irq;
pub mod kvm;
mod seccomp;
mod vcpu;
mod virtio;
mod vm;

pub use config::{ConsoleConfig, DeviceConfig, VmConfig};
pub use devices::virtio::{
    block::BlockConfig, net::NetConfig, pmem::PmemConfig, vsock::VsockConfig,
};
pub use devices::{StopReason, StopSignal, Timeline};
pub use error::{Error, Result};
pub use vm::{describe, run, validate, MAX_VCPUS};
