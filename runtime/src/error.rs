/// Failures of the vmctl command itself (not of the guest's workload).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Vmm(#[from] vmm::Error),
    #[error("{0}")]
    Guest(String),
    /// The guest crashed (a triple fault): the report names the vCPU and holds its registers.
    #[error("{0}")]
    GuestCrashed(String),
    #[error(
        "no {what} given and none found (looked in {looked}); build it with `make build` or pass {flag}"
    )]
    MissingAsset {
        what: &'static str,
        flag: &'static str,
        looked: String,
    },
    #[error("cannot set up the console: {0}")]
    Console(std::io::Error),
    /// A malformed command line or argument.
    #[error("{0}")]
    Usage(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    /// The container is not in a state that allows the command.
    #[error("cannot {action} container {id}: it is {status}")]
    State {
        id: String,
        status: String,
        action: &'static str,
    },
    /// A bundle or config.json problem.
    #[error("{0}")]
    Spec(String),
    /// Something in the spec a VM cannot do.
    #[error("not supported by vmctl: {0}")]
    Unsupported(String),
    #[error("{what}: {}", describe_io(.source))]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The container's program cannot be run (exit 127: not found, 126: not executable).
    #[error("{message}")]
    NotExecutable { message: String, code: u8 },
    /// The guest agent refused or failed a request.
    #[error("{0}")]
    Agent(String),
    #[error("hook failed: {0}")]
    Hook(String),
    /// Carrying the container's network namespace into the VM failed.
    #[error("network: {0}")]
    Network(String),
    #[error("{0}")]
    Internal(String),
}

/// `vmctl boot`'s exit status when the guest crashed (triple fault), apart from 125 (vmctl's own
/// failures) and 0 (the guest's own reset), so scripts can tell a kernel crash from both.
pub const GUEST_CRASHED: u8 = 123;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit status for this failure: 125 for `vmctl boot` (as `docker run`, so it cannot be
    /// mistaken for the workload's status), [`GUEST_CRASHED`] for a guest that triple-faulted,
    /// 126/127 for a program that cannot be run, and 1, as runc, for the container commands.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::GuestCrashed(_) => GUEST_CRASHED,
            Error::Vmm(_) | Error::Guest(_) | Error::MissingAsset { .. } | Error::Console(_) => 125,
            Error::NotExecutable { code, .. } => *code,
            _ => 1,
        }
    }
}

/// An I/O error as a user reads it: the system's message without Rust's " (os error N)".
pub fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
