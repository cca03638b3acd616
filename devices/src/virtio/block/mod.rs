//! virtio-blk backed by a raw image file.

use std::path::PathBuf;

/// How the VMM asks for a disk.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// Returned by VIRTIO_BLK_T_GET_ID (at most 20 bytes).
    pub serial: String,
}
crate::placeholder_device!(Block, BlockConfig, "virtio-blk");
