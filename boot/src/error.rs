use std::path::PathBuf;

/// Everything that can go wrong while preparing a guest to boot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open kernel {path}: {source}")]
    KernelOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a kernel vmlinux (ELF) or bzImage: {reason}")]
    NotAKernel { path: PathBuf, reason: String },
    #[error("kernel {path} does not fit in guest memory ({reason}); give the VM more memory")]
    KernelLoad { path: PathBuf, reason: String },
    #[error("kernel {path} cannot be booted by vmctl: {reason}")]
    BadKernelLayout { path: PathBuf, reason: String },
    #[error("cannot open initrd {path}: {source}")]
    InitrdOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "initrd {path} ({size} bytes) does not fit in guest memory below {limit:#x} above the kernel; \
         give the VM more memory (--memory)"
    )]
    InitrdTooBig {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("cannot read initrd {path} into guest memory: {reason}")]
    InitrdLoad { path: PathBuf, reason: String },
    #[error("kernel command line is {len} bytes; the limit is {max} (including the final NUL)")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("guest memory of {mib} MiB is too small: at least {min} MiB are needed")]
    MemoryTooSmall { mib: u64, min: u64 },
    #[error("cannot allocate {mib} MiB of guest memory: {reason}")]
    MemoryAlloc { mib: u64, reason: String },
    #[error("cannot write boot data into guest memory at {addr:#x}: {reason}")]
    GuestWrite { addr: u64, reason: String },
    #[error("too many vCPUs for the MP table: {0} (at most 254)")]
    TooManyCpus(u8),
    #[error("KVM refused the vCPU {what}: {source}")]
    Vcpu {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM refused to set MSR {0:#x} on the vCPU")]
    MsrRejected(u32),
    #[error("KVM cannot report its supported CPUID: {0}")]
    SupportedCpuid(kvm_ioctls::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn guest_write(addr: u64, err: impl std::fmt::Display) -> Self {
        Error::GuestWrite {
            addr,
            reason: err.to_string(),
        }
    }
}
