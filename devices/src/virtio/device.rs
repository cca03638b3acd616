//! What a virtio device implements; the MMIO transport drives it.

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use super::{GuestMemoryMmap, Interrupt};

/// Why a device refused to start with what the driver set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    #[error("queue {0} is not set up")]
    QueueNotReady(usize),
    #[error("{0}")]
    Backend(String),
}

/// Everything a device needs to run once the driver says DRIVER_OK.
pub struct QueueContext {
    pub mem: GuestMemoryMmap,
    /// One per queue the device declared, in order; each already checked against guest memory
    /// when the driver marked it ready.
    pub queues: Vec<Queue>,
    pub interrupt: Arc<Interrupt>,
    /// The features the driver accepted.
    pub acked_features: u64,
}

pub trait VirtioDevice: Send {
    /// Device ID (see `device_type`).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// One eventfd per queue, signalled when the driver notifies that queue (KVM ioeventfds).
    fn queue_events(&self) -> &[EventFd];
    /// Features offered to the driver (must include VIRTIO_F_VERSION_1).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space; ignore what is read-only.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device with the queues the driver set up.
    fn activate(&mut self, ctx: QueueContext) -> Result<(), ActivateError>;
    /// Returns to the state before activation: queues dropped, requests in flight abandoned.
    fn reset(&mut self);
}
