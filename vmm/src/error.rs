/// Everything that can stop a VM from being built or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Boot(#[from] boot::Error),
    #[error("cannot open /dev/kvm: it does not exist (is the kvm module loaded, or is this a VM without nested virtualization?)")]
    KvmMissing,
    #[error("cannot open /dev/kvm: permission denied (run as root or join the group that owns /dev/kvm)")]
    KvmPermission,
    #[error("cannot open /dev/kvm: {0}")]
    KvmOpen(kvm_ioctls::Error),
    #[error("/dev/kvm speaks KVM API version {0}; version 12 is needed")]
    KvmApiVersion(i32),
    #[error("this host's KVM lacks {0}, which vmctl needs")]
    KvmCapability(&'static str),
    #[error("KVM failed to {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("--cpus must be between 1 and {max}, not {requested}")]
    VcpuCount { requested: u32, max: u32 },
    #[error("--memory {requested} MiB is more than this host's {host} MiB of RAM")]
    MemoryTooLarge { requested: u64, host: u64 },
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the pmem files total {total_gib} GiB: KVM would take ~{cost_mib} MiB of host kernel memory to map them, more than 1/8 of the host's available {available_mib} MiB; use smaller files, or a virtio-blk disk (--disk) for a large image")]
    PmemTooCostly {
        total_gib: u64,
        cost_mib: u64,
        available_mib: u64,
    },
    #[error("{0}")]
    Device(#[from] devices::Error),
    #[error("too many virtio devices: {0} (at most {max})", max = boot::layout::IOAPIC_PINS - boot::layout::VIRTIO_IRQ_BASE)]
    TooManyDevices(usize),
    #[error("cannot start {what} thread: {source} (the host is short of memory or of threads; try fewer --cpus)")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the VM is stopping or has stopped: it cannot be {action}")]
    VmStopped { action: &'static str },
    #[error("vCPU(s) {vcpus:?} did not pause within {waited_ms} ms (busy serving a device?); the VM runs on: retry the pause, or stop the VM")]
    PauseTimeout { vcpus: Vec<usize>, waited_ms: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }

    pub(crate) fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Setup { what, source }
    }
}
