//! The messages. The host translates the OCI spec into these: host paths never reach the guest,
//! only the tags of the shares that carry them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The id of the container's init process in [`Request`]s that name a process.
pub const INIT_ID: &str = "init";

/// What the host asks of the agent, one per frame on an [`crate::AGENT_PORT`] connection. The
/// agent answers every request with one [`Response`] frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version check; answered by [`Response::Hello`]. The agent also sends it first on its
    /// [`crate::READY_PORT`] connection.
    Hello { version: u16 },
    /// Mounts the container's file systems and prepares its init process, which waits for
    /// [`Request::Start`]. Answered by [`Response::Started`] with the init's pid in the guest.
    CreateContainer { spec: Box<ContainerSpec> },
    /// Lets the prepared init exec its program.
    Start,
    /// Starts another process in the running container (namespaces, root, cgroup of its init).
    /// `id` is the host's name for it, unique per container. Answered by [`Response::Started`].
    Exec {
        id: String,
        process: Box<ProcessSpec>,
    },
    /// Turns this connection into one stdio stream of process `id`: after the [`Response::Ok`]
    /// the connection carries raw bytes, host to guest for `stdin`, guest to host for `stdout`
    /// and `stderr`, both ways for `tty`. The guest side ends an output stream with EOF once the
    /// process's end of it is closed; the host ends stdin by closing.
    Attach { id: String, stream: Stream },
    /// Waits until process `id` ends; answered by [`Response::Exited`].
    Wait { id: String },
    /// Sends `signal` to process `id`, or with `all` to every process of the container.
    Signal { id: String, signal: i32, all: bool },
    /// Sets the window size of process `id`'s terminal.
    Resize { id: String, size: WindowSize },
    /// Lists the container's processes; answered by [`Response::Processes`].
    Ps,
    /// An interface appeared in the container's namespace after boot (`docker network
    /// connect`): the spare guest interface with MAC `spare` becomes it (its MAC, name, MTU and
    /// addresses), and `routes` through it go in. Answered by [`Response::Ok`].
    AddInterface {
        spare: [u8; 6],
        interface: NetInterface,
        routes: Vec<NetRoute>,
    },
    /// Interface `name`'s host interface went away: it goes down, loses its addresses and is a
    /// spare again, with MAC `spare`. Answered by [`Response::Ok`].
    RemoveInterface { name: String, spare: [u8; 6] },
}

/// The agent's answer to one [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Hello {
        version: u16,
        /// The agent's own version string, for messages.
        agent: String,
    },
    Ok,
    /// A process was created; `pid` is its pid in the guest (the container's pid namespace
    /// shows it differently).
    Started {
        pid: i32,
    },
    Exited {
        status: ExitStatus,
    },
    Processes {
        processes: Vec<ProcessInfo>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

/// What went wrong, for the host to choose its exit code and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or asked for something invalid.
    Invalid,
    /// The program to run does not exist (a shell's 127).
    NotFound,
    /// The program exists but cannot be executed (a shell's 126).
    NotExecutable,
    /// No such process, or not in a state that allows the request.
    State,
    /// A system call failed in the guest.
    System,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128+N for signal N, as one byte.
    pub fn shell_status(self) -> u8 {
        match self {
            ExitStatus::Code(c) => (c & 0xff) as u8,
            ExitStatus::Signal(s) => (128 + (s & 0x7f)) as u8,
        }
    }
}

/// One stdio stream of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
    /// The terminal of a process started with `terminal: true`: input and output on one stream.
    Tty,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// One process of the container, as `ps` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The pid in the guest's initial pid namespace.
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    /// Clock ticks of user plus system time.
    pub cpu_ticks: u64,
    /// The command line, arguments joined by spaces (the name in brackets when empty).
    pub command: String,
}

/// The container as the agent builds it: its root, mounts, namespaces and init process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    pub id: String,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// The share carrying the root file system.
    pub root: RootSpec,
    /// In the spec's order, each destination inside the root.
    pub mounts: Vec<MountSpec>,
    pub process: ProcessSpec,
    /// The namespaces to create for the container's processes (network and user are the VM's
    /// own business and not listed).
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: BTreeMap<String, String>,
    /// Device nodes to create in the container's /dev beside the default ones.
    pub devices: Vec<DeviceNode>,
    /// The VM's network interfaces, one per virtio-net device, as the host interfaces they
    /// stand for (see [`NetInterface`]), and the routes through them.
    #[serde(default)]
    pub interfaces: Vec<NetInterface>,
    #[serde(default)]
    pub routes: Vec<NetRoute>,
    /// A name server on the loopback of the container's namespace on the host (Docker's
    /// embedded DNS, 127.0.0.11 on user-defined networks), which the guest's own loopback
    /// cannot reach: the agent listens on this address, port 53 (UDP and TCP), and carries each
    /// query to the host's [`crate::DNS_UDP_PORT`] or [`crate::DNS_TCP_PORT`], which asks the server there.
    #[serde(default)]
    pub dns_relay: Option<std::net::IpAddr>,
    /// The MACs of the VM's spare interfaces, held down (and out of the way of the names the
    /// container uses) for interfaces that appear in the namespace later; see
    /// [`Request::AddInterface`].
    #[serde(default)]
    pub spares: Vec<[u8; 6]>,
}

/// A network interface of the container's namespace on the host (e.g. Docker's `eth0`), carried
/// into the VM by a virtio-net device with the same MAC: the agent finds the guest's interface by
/// that MAC and gives it the name, MTU and addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInterface {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub addresses: Vec<IpPrefix>,
}

/// An address with its prefix length, e.g. 172.17.0.2/16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPrefix {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

/// A route: to `destination` (the default route when `None`), through `gateway` if any, out of
/// the interface named `interface`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRoute {
    pub destination: Option<IpPrefix>,
    pub gateway: Option<std::net::IpAddr>,
    pub interface: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSpec {
    /// The tag of the share (its 9P attach name).
    pub share: String,
    pub readonly: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Absolute path inside the container.
    pub destination: String,
    pub source: MountSource,
    /// The spec's mount options (`ro`, `nosuid`, `mode=755`, `rbind`, ...).
    pub options: Vec<String>,
}

/// Where a mount comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MountSource {
    /// A file system the guest kernel makes (proc, sysfs, tmpfs, devpts, mqueue, cgroup, ...).
    Fs { fstype: String, source: String },
    /// A host directory or file, carried by the share `tag`. For a file, the share is a directory
    /// holding just that file, named `file`, which is what gets bind-mounted.
    Share { tag: String, file: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    Pid,
    Mount,
    Uts,
    Ipc,
    Cgroup,
}

/// A process to run, as the OCI spec's `process` says.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub terminal: bool,
    pub console_size: Option<WindowSize>,
    pub user: User,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub capabilities: Option<Capabilities>,
    pub oom_score_adj: Option<i32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// The spec's name, e.g. `RLIMIT_NOFILE`.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// Capability names as the spec writes them (`CAP_CHOWN`, ...).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceNode {
    pub path: String,
    /// `c`, `b`, `u` (unbuffered character) or `p` (fifo).
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let json = serde_json::to_string(&Request::Signal {
            id: INIT_ID.into(),
            signal: 15,
            all: false,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"op":"signal","id":"init","signal":15,"all":false}"#
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<Request, _> = serde_json::from_str(r#"{"op":"wait","id":"x","extra":1}"#);
        assert!(r.is_err());
    }

    #[test]
    fn shell_status_of_code_and_signal() {
        assert_eq!(ExitStatus::Code(3).shell_status(), 3);
        assert_eq!(ExitStatus::Signal(9).shell_status(), 137);
    }

    #[test]
    fn a_container_spec_round_trips() {
        let spec = ContainerSpec {
            id: "c1".into(),
            root: RootSpec {
                share: "rootfs".into(),
                readonly: true,
            },
            mounts: vec![MountSpec {
                destination: "/etc/hosts".into(),
                source: MountSource::Share {
                    tag: "m1".into(),
                    file: Some("hosts".into()),
                },
                options: vec!["rbind".into(), "ro".into()],
            }],
            namespaces: vec![Namespace::Pid, Namespace::Mount],
            ..Default::default()
        };
        let json = serde_json::to_string(&spec).unwrap();
        let back: ContainerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.mounts.len(), 1);
        assert!(back.root.readonly);
    }
}
