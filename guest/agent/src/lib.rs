//! The guest side of vmctl, one static binary (`vmctl-init`) with two modes chosen by the kernel
//! command line:
//!
//! - `init`: PID 1 of `vmctl boot`'s initramfs (docs/design.md, "`vmctl boot` and the default init");
//! - `agent`: with `vmctl.agent=1`, PID 1 of a container VM: it serves the host's requests
//!   (guest-protocol) on vsock, builds the container (`container`) and reports its init's status.
//!
//! Every `unsafe` lives in `sys` (and `init::sys` for the boot mode), each with its `// SAFETY:`.

pub mod agent;
pub mod container;
pub mod error;
pub(crate) mod init;
pub mod sys;

pub use error::Error;

/// Entry point of `vmctl-init` (PID 1). Never returns.
pub fn run() -> ! {
    init::run()
}
