/// Failures of the vmctl command itself (not of the guest's workload).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Vmm(#[from] vmm::Error),
    #[error("{0}")]
    Guest(String),
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
}

impl Error {
    /// `vmctl boot` exits 125 on its own failures, as `docker run` does, so they cannot be
    /// mistaken for the workload's status.
    pub fn exit_code(&self) -> u8 {
        125
    }
}
