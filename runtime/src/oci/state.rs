//! The state directory: `<root>/<id>/state.json` per container, written atomically, read by every
//! command. The container's monitor (the pid-file process) is its only writer once it exists;
//! a container whose monitor is gone is `stopped`, whatever the file last said.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

pub const STATE_FILE: &str = "state.json";
/// The monitor's control socket.
pub const CONTROL_SOCKET: &str = "ctl.sock";
/// The hybrid vsock socket of the VM (guest ports are `<this>_<port>`).
pub const VSOCK_SOCKET: &str = "vsock.sock";
/// The guest's serial console, a log for debugging.
pub const CONSOLE_LOG: &str = "console.log";
/// Pid files of exec processes: `execs/<exec id>`.
pub const EXECS_DIR: &str = "execs";

/// The OCI status of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is recorded about a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The monitor's pid (the container's pid-file process).
    pub pid: i32,
    /// Its start time (clock ticks since boot, /proc/<pid>/stat field 22), so that a recycled
    /// pid is never mistaken for the monitor.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: BTreeMap<String, String>,
    /// The status the monitor last recorded.
    pub status: Status,
    /// The spec's hooks (poststart, poststop run by later commands).
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The spec's process, the defaults of `exec`.
    pub process: Option<oci_spec::runtime::Process>,
    /// Cgroup directories created for the container (removed by `delete`).
    pub cgroups: Vec<PathBuf>,
    /// The container's cgroup path (exec processes join it too).
    pub cgroup_path: String,
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
}

/// `<root>/<id>`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Creates the container's state directory; an existing one means the id is taken.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf, Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|e| {
            Error::io(
                format!("cannot create the state root {}", root.display()),
                e,
            )
        })?;
    let dir = dir(root, id);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists(id.to_string())),
        Err(e) => Err(Error::io(format!("cannot create {}", dir.display()), e)),
    }
}

/// Reads the record of container `id`.
pub fn load(root: &Path, id: &str) -> Result<Record, Error> {
    let path = dir(root, id).join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_string()))
        }
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{} is corrupt: {e}", path.display())))
}

/// Writes the record atomically (a temporary file renamed over the old one).
pub fn save(root: &Path, record: &Record) -> Result<(), Error> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| Error::Internal(format!("cannot encode the state: {e}")))?;
    write_atomic(&dir(root, &record.id).join(STATE_FILE), &bytes, 0o600)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed,
/// so a reader sees the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("cannot write {}", path.display()), e)
    })
}

/// The container's status now: the recorded one while its monitor lives, else `stopped`.
pub fn status(record: &Record) -> Status {
    if process_alive(record.pid, record.pid_start) {
        record.status
    } else {
        Status::Stopped
    }
}

/// Whether `pid` is a live (not zombie) process that started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, started)) => state != 'Z' && state != 'X' && started == start,
        None => false,
    }
}

/// The start time of `pid` (clock ticks since boot), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// (state letter, start time) from /proc/<pid>/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // field 22 overall is the 20th after the state (fields 3..)
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The ids of every container under `root`, sorted.
pub fn ids(root: &Path) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot list {}", root.display()), e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own stat");
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(0, 0));
    }

    #[test]
    fn atomic_write_replaces_whole() {
        let dir = std::env::temp_dir().join(format!("vmctl-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
