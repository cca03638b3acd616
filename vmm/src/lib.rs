//! The vmctl VMM as a library: build a pc-lite machine from a [`VmConfig`] ([`Vm::build`]), start
//! it ([`Vm::start`]), control it from any thread through a [`VmHandle`] (pause, resume, stop,
//! state, stats), and learn why it stopped ([`RunningVm::wait`]). [`run`] does all of it in one
//! call. The `vmctl` binary is a thin CLI over this.

mod config;
mod console;
mod control;
mod error;
mod event_loop;
mod handle;
mod host_budget;
mod irq;
mod kick;
pub mod kvm;
mod machine;
mod seccomp;
mod stats;
mod vcpu;
mod virtio;
mod vm;

pub use config::{validate, ConsoleConfig, DeviceConfig, VmConfig, MAX_VCPUS};
pub use devices::virtio::{
    block::BlockConfig, net::NetConfig, pmem::PmemConfig, vsock::VsockConfig,
};
pub use devices::{StopReason, StopSignal, Timeline};
pub use error::{Error, Result};
pub use event_loop::describe;
pub use handle::{VmHandle, VmState, PAUSE_TIMEOUT};
pub use stats::{VcpuStats, VmStats};
pub use virtio::AttachedDevice;
pub use vm::{run, RunningVm, Vm};
