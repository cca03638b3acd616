//! virtio-vsock with a Firecracker-compatible hybrid Unix-socket backend.

use std::path::PathBuf;

/// How the VMM asks for a vsock device.
#[derive(Clone, Debug)]
pub struct VsockConfig {
    pub guest_cid: u64,
    /// Host connects here and writes `CONNECT <port>\n`; guest connections to host port P
    /// reach `<uds_path>_<P>`.
    pub uds_path: PathBuf,
}
crate::placeholder_device!(Vsock, VsockConfig, "virtio-vsock");
