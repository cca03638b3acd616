//! What `create` hands the container's monitor, and the messages on their sync socket.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::oci::translate::Translated;

/// Where the VMM's network namespace comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NetNs {
    /// A new, empty one (the spec lists a network namespace without a path).
    New,
    /// An existing one (the spec's path, e.g. set up by Docker).
    Join(PathBuf),
    /// The caller's own (the spec lists none).
    Inherit,
}

/// How the container's stdio reaches the monitor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Stdio {
    /// Fds 0, 1 and 2 are the container's stdin, stdout and stderr.
    Inherited,
    /// A pty is made, its master sent to this socket (`--console-socket`), its slave relayed.
    ConsoleSocket(PathBuf),
    /// The caller attaches the terminal itself (`vmctl run` in the foreground with a terminal).
    Caller,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Launch {
    pub id: String,
    /// The state root (`--root`).
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub vm: Translated,
    pub netns: NetNs,
    pub cgroup: String,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub stdio: Stdio,
    pub kernel: PathBuf,
    pub guest_image: PathBuf,
    pub hooks: Option<oci_spec::runtime::Hooks>,
    pub process: Option<oci_spec::runtime::Process>,
    pub annotations: BTreeMap<String, String>,
    pub oci_version: String,
    pub log: Option<LogTarget>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogTarget {
    pub path: PathBuf,
    pub json: bool,
    pub debug: bool,
}

/// Monitor and `create` on their socket pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Sync {
    /// create -> monitor: the launch description.
    Launch(Box<Launch>),
    /// monitor -> create: in its cgroup and network namespace; the prestart hooks may run.
    Ready { cgroups: Vec<PathBuf> },
    /// create -> monitor: hooks done, boot the VM.
    Go,
    /// monitor -> create: the VM runs, the agent has built the container, its init waits.
    Created,
    /// monitor -> create: it failed (and is exiting). `code` is the exit status to use.
    Failed { message: String, code: u8 },
}
