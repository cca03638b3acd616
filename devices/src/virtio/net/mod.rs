//! virtio-net backed by a TAP device.

/// How the VMM asks for a network interface.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// An existing TAP interface to attach to, or one to create (and remove at the end).
    pub tap: String,
    pub mac: Option<[u8; 6]>,
}
crate::placeholder_device!(Net, NetConfig, "virtio-net");
