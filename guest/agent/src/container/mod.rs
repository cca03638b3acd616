//! Building a container inside the VM as runc would: the spec checked and prepared (`plan`,
//! `process_plan` and the pure parts below), then created by forked children (`launch`, `child`)
//! that set up namespaces, mounts (`rootfs`, `resolve`, `devices`, `paths`) and the process itself
//! (`setup`). Nothing here depends on the VM: a test drives it with a directory as the root.

pub mod caps;
pub mod channel;
pub mod check;
pub mod child;
pub mod devices;
pub mod launch;
pub mod lookpath;
pub mod mount_opts;
pub mod paths;
pub mod plan;
pub mod process_plan;
pub mod resolve;
pub mod rlimits;
pub mod rootfs;
pub mod setup;

pub use child::{ChildStdio, ExecTarget};
pub use launch::Launched;
pub use plan::ContainerPlan;
pub use process_plan::ProcessPlan;
