//! The OCI runtime's building blocks: ids, the bundle's spec, the state directory, hooks,
//! cgroups, logging, signals.

pub mod cgroup;
pub mod hooks;
pub mod id;
pub mod log;
pub mod signal;
pub mod sockets;
pub mod spec;
pub mod state;
pub mod time;
pub mod translate;

use std::path::PathBuf;

/// runc's global flags, which every container command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Root directory for the containers' state
    #[arg(long, global = true, value_name = "PATH", default_value = "/run/vmctl")]
    pub root: PathBuf,
    /// Log file for the runtime's own messages
    #[arg(long, global = true, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: log::Format,
    /// Debug messages in the log
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility: systemd cgroup paths (slice:prefix:name) are mapped to
    /// their cgroupfs directories
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; ignored
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    pub criu: Option<String>,
    /// Accepted for runc compatibility (`--rootless=BOOL` globally, a bare `--rootless` for
    /// `spec`); a VM's container needs no rootless mode, so it is ignored
    #[arg(
        long,
        global = true,
        value_name = "BOOL",
        hide = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub rootless: Option<String>,
}

/// The OCI state of a container as `state` prints it (and as hooks receive it).
pub fn state_json(record: &state::Record, status: state::Status) -> serde_json::Value {
    let pid = if matches!(status, state::Status::Stopped) {
        0
    } else {
        record.pid
    };
    let mut v = serde_json::json!({
        "ociVersion": record.oci_version,
        "id": record.id,
        "pid": pid,
        "status": status.as_str(),
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": record.created,
        "owner": record.owner,
    });
    if !record.annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&record.annotations).unwrap_or_default();
    }
    v
}
