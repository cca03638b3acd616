//! Devices of the pc-lite machine.
//!
//! Legacy devices sit on a port-I/O or MMIO [`bus::Bus`] and are served from the vCPU threads;
//! virtio devices (later) are served from the VMM's event loop.

pub mod bus;
pub mod console_out;
mod error;
pub mod i8042;
pub mod ioapic;
pub mod markers;
pub mod serial;
pub mod status_port;
pub mod stop;
pub mod timeline;
pub mod virtio;

pub use bus::{Bus, BusDevice};
pub use error::{Error, Result};
pub use stop::{StopReason, StopSignal};
pub use timeline::Timeline;
