//! The container's monitor: the process `create` leaves behind, whose pid is the container's
//! (`--pid-file`). It sits in the container's cgroup and network namespace, runs the VMM (vCPU
//! and device threads), serves the guest's 9P mounts, relays the container's stdio, answers the
//! control socket, and exits with the container's status when its init ends (128+N for a
//! signal N), as runc's container process does.

pub mod agent;
mod console_log;
pub mod control;
mod dns;
mod files;
mod hotplug;
pub mod launch;
mod network;
pub mod process;
pub mod pty;
pub mod relay;
mod serve;
pub mod signals;

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_protocol::{self as proto, Request, Response};

use crate::oci::sockets::SocketDir;
use crate::oci::{cgroup, log, state, time};
use crate::Error;
use launch::{Launch, NetNs, Sync};

/// The descriptor `create` passes the sync socket on.
pub const SYNC_FD: RawFd = 3;
/// How long the guest agent may take to come up (a Linux boot; minutes under emulation).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel command line of a container VM (the VMM appends the devices).
pub fn kernel_cmdline() -> String {
    format!(
        "console=ttyS0 reboot=k panic=-1 quiet root=/dev/pmem0 rootfstype=erofs rootflags=dax ro rootwait init=/init {}",
        proto::AGENT_CMDLINE_FLAG
    )
}

/// `vmctl monitor`: runs until the container ends; exits with its status.
pub fn main() -> ExitCode {
    // SAFETY: `create` passed the sync socket as fd 3; nothing else in this process owns it.
    let mut sync = unsafe { UnixStream::from_raw_fd(SYNC_FD) };
    // SAFETY: FD_CLOEXEC on our own descriptor, so hooks and children do not inherit it.
    unsafe { libc::fcntl(SYNC_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let launch = match proto::read_frame::<_, Sync>(&mut sync) {
        Ok(Sync::Launch(l)) => *l,
        _ => return ExitCode::from(1),
    };
    if let Some(target) = &launch.log {
        let format = if target.json {
            log::Format::Json
        } else {
            log::Format::Text
        };
        log::init(&target.path, format, target.debug);
    }
    match run(launch, &mut sync) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::error(&e.to_string());
            let _ = proto::write_frame(
                &mut sync,
                &Sync::Failed {
                    message: e.to_string(),
                    code: e.exit_code(),
                },
            );
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(launch: Launch, sync: &mut UnixStream) -> Result<u8, Error> {
    let me = std::process::id();
    let cgroups = cgroup::join(&launch.cgroup, me)?;
    cgroup::apply_cpu(&launch.cgroup, launch.cpu_quota, launch.cpu_period);
    enter_netns(&launch.netns)?;
    // Signals are taken by one thread (forwarded into the guest); every thread inherits the mask.
    let signal_set = signals::block()?;
    proto::write_frame(
        sync,
        &Sync::Ready {
            cgroups: cgroups.clone(),
        },
    )
    .map_err(|e| Error::Internal(format!("create went away: {e}")))?;
    match proto::read_frame::<_, Sync>(sync) {
        Ok(Sync::Go) => {}
        _ => {
            return Err(Error::Internal(
                "create went away before the VM started".into(),
            ))
        }
    }
    let dir = state::dir(&launch.root, &launch.id);
    let sockets = SocketDir::open(&dir)?;
    let booted = boot(&launch, &dir, &sockets)?;
    let record = state::Record {
        id: launch.id.clone(),
        pid: me as i32,
        pid_start: state::start_time(me as i32).unwrap_or_default(),
        bundle: launch.bundle.clone(),
        rootfs: launch.rootfs.clone(),
        created: time::now(),
        owner: String::new(),
        annotations: launch.annotations.clone(),
        status: state::Status::Created,
        hooks: launch.hooks.clone(),
        process: launch.process.clone(),
        cgroups,
        cgroup_path: launch.cgroup.clone(),
        oci_version: launch.oci_version.clone(),
    };
    state::save(&launch.root, &record)?;
    let monitor = Arc::new(serve::Monitor::new(
        &launch,
        dir,
        sockets,
        record,
        booted.handle.clone(),
    ));
    monitor.open_console()?;
    serve::control_server(monitor.clone())?;
    signals::forward(signal_set, signals::to_monitor(monitor.clone()))?;
    proto::write_frame(sync, &Sync::Created)
        .map_err(|e| Error::Internal(format!("create went away: {e}")))?;
    let reason = booted.vm.wait();
    drop(booted.network);
    if booted.oom_killed.load(Ordering::Relaxed) {
        log::debug("the guest kernel OOM-killed a process: reporting it in the cgroup");
        cgroup::report_oom(&launch.cgroup);
    }
    Ok(monitor.finish(reason))
}

/// The VM up to a ready agent that has built the container.
struct Booted {
    vm: vmm::RunningVm,
    /// Set when the guest kernel OOM-killed a process.
    oom_killed: Arc<AtomicBool>,
    handle: vmm::VmHandle,
    network: network::Network,
}

fn boot(launch: &Launch, dir: &Path, sockets: &SocketDir) -> Result<Booted, Error> {
    let vsock = sockets.join(state::VSOCK_SOCKET);
    files::start(&port_socket(&vsock, proto::FILES_PORT), &launch.vm.shares)?;
    let ready_path = port_socket(&vsock, proto::READY_PORT);
    let ready = UnixListener::bind(&ready_path)
        .map_err(|e| Error::io(format!("cannot listen on {}", ready_path.display()), e))?;
    let console_path = dir.join(state::CONSOLE_LOG);
    let oom_killed = Arc::new(AtomicBool::new(false));
    let console = console_log::ConsoleLog::create(&console_path, oom_killed.clone())
        .map_err(|e| Error::io(format!("cannot create {}", console_path.display()), e))?;
    let stop =
        Arc::new(vmm::StopSignal::new().map_err(|e| Error::io("cannot create an eventfd", e))?);
    // The host's own namespace is never carried: its interfaces are not the container's.
    let (mut network, dns_relay) = match launch.netns {
        NetNs::Inherit => (network::Network::default(), None),
        NetNs::New | NetNs::Join(_) => (
            network::discover()?,
            dns::loopback_server(&launch.vm.container, &launch.vm.shares),
        ),
    };
    if let Some(server) = dns_relay {
        dns::start(
            &port_socket(&vsock, proto::DNS_UDP_PORT),
            &port_socket(&vsock, proto::DNS_TCP_PORT),
            server,
        )?;
    }
    let mut devices = vec![
        vmm::DeviceConfig::Pmem(vmm::PmemConfig {
            path: launch.guest_image.clone(),
            read_only: true,
        }),
        vmm::DeviceConfig::Vsock(vmm::VsockConfig {
            guest_cid: u64::from(proto::GUEST_CID),
            uds_path: vsock.clone(),
        }),
    ];
    let spares = network.spares.iter().map(|s| (&s.tap, s.mac));
    devices.extend(
        network
            .nics
            .iter()
            .map(|nic| (&nic.tap, nic.mac))
            .chain(spares)
            .map(|(tap, mac)| {
                vmm::DeviceConfig::Net(vmm::NetConfig {
                    tap: tap.clone(),
                    mac: Some(mac),
                })
            }),
    );
    let config = vmm::VmConfig {
        kernel: launch.kernel.clone(),
        share_kernel_pages: launch.vm.share_kernel_pages,
        initrd: None,
        cmdline: kernel_cmdline(),
        vcpus: launch.vm.vcpus,
        memory_mib: launch.vm.memory_mib,
        console: vmm::ConsoleConfig {
            output: Box::new(console),
            input: None,
            escape: None,
        },
        devices,
        timeline: Arc::new(vmm::Timeline::new(Instant::now(), false)),
        stop,
    };
    let booting = Instant::now();
    let vm = vmm::Vm::build(config)?;
    network.connect(dns_relay.is_some())?;
    let vm = vm.start()?;
    let handle = vm.handle();
    let since = |what: &str| {
        log::debug(&format!(
            "{what} {:.1} ms after the VM's build began",
            booting.elapsed().as_secs_f64() * 1e3
        ))
    };
    since(if launch.vm.share_kernel_pages {
        "VM started (kernel pages shared)"
    } else {
        "VM started (kernel copied)"
    });
    let fail = |e: Error| -> Error {
        handle.stop(vmm::StopReason::UserQuit);
        let tail = console_log::tail(&console_path, 5);
        if tail.is_empty() {
            e
        } else {
            Error::Agent(format!("{e} (guest console: {tail})"))
        }
    };
    wait_ready(&ready, &handle).map_err(fail)?;
    since("agent ready");
    drop(ready);
    let _ = std::fs::remove_file(&ready_path);
    let created = (|| {
        let mut agent = agent::AgentConn::connect(&vsock)?;
        let mut spec = launch.vm.container.clone();
        spec.interfaces = network.interfaces.clone();
        spec.routes = network.routes.clone();
        spec.dns_relay = dns_relay;
        spec.spares = network.spares.iter().map(|s| s.mac).collect();
        match agent.call(&Request::CreateContainer {
            spec: Box::new(spec),
        })? {
            Response::Started { .. } => Ok(()),
            other => Err(Error::Agent(format!(
                "unexpected answer to create: {other:?}"
            ))),
        }
    })();
    if let Err(e) = created {
        handle.stop(vmm::StopReason::UserQuit);
        let _ = vm.wait();
        return Err(e);
    }
    since("container built");
    if !network.spares.is_empty() {
        // Without the watcher the container runs as it booted: not a reason to fail it.
        let watching = hotplug::Hotplug {
            booted: network.nics.iter().map(|n| n.host_index).collect(),
            spares: std::mem::take(&mut network.spares),
            own_dns: dns_relay.is_some(),
            vsock: vsock.clone(),
            redirected: network.redirected(),
        }
        .watch();
        if let Err(e) = watching {
            log::warn(&format!(
                "interfaces added later will not reach the VM: {e}"
            ));
        }
    }
    Ok(Booted {
        vm,
        oom_killed,
        handle,
        network,
    })
}

/// Waits until the agent connects to the ready port and says hello.
fn wait_ready(listener: &UnixListener, handle: &vmm::VmHandle) -> Result<(), Error> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("cannot poll the ready socket", e))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                return match proto::read_frame::<_, Request>(&mut conn) {
                    Ok(Request::Hello { version }) if version == proto::VERSION => {
                        let _ = proto::write_frame(
                            &mut conn,
                            &Response::Hello {
                                version: proto::VERSION,
                                agent: format!("vmctl {}", env!("CARGO_PKG_VERSION")),
                            },
                        );
                        Ok(())
                    }
                    Ok(Request::Hello { version }) => Err(Error::Agent(format!(
                        "the guest agent speaks protocol version {version}, vmctl speaks {}",
                        proto::VERSION
                    ))),
                    Ok(other) => Err(Error::Agent(format!(
                        "the guest agent said {other:?} instead of hello"
                    ))),
                    Err(e) => Err(Error::Agent(format!("the guest agent's hello: {e}"))),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io("cannot accept the agent's connection", e)),
        }
        if !matches!(handle.state(), vmm::VmState::Running | vmm::VmState::Paused) {
            return Err(Error::Agent(
                "the VM stopped before its agent came up".into(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Error::Agent(format!(
                "the guest agent did not come up within {} s",
                READY_TIMEOUT.as_secs()
            )));
        }
        poll_readable(listener.as_raw_fd(), 50);
    }
}

fn poll_readable(fd: RawFd, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, valid for the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// `<vsock socket>_<port>`: where the VMM forwards the guest's connections to host port `port`.
pub fn port_socket(vsock: &Path, port: u32) -> PathBuf {
    let mut s = vsock.as_os_str().to_owned();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

fn enter_netns(netns: &NetNs) -> Result<(), Error> {
    match netns {
        NetNs::Inherit => Ok(()),
        NetNs::New => {
            // SAFETY: unshare only changes this (still single-threaded) process's namespaces.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(Error::io(
                    "cannot create a network namespace",
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
        NetNs::Join(path) => {
            let f = File::open(path).map_err(|e| {
                Error::io(
                    format!("cannot open network namespace {}", path.display()),
                    e,
                )
            })?;
            // SAFETY: setns on a namespace descriptor we hold open for the call.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::io(
                    format!("cannot join network namespace {}", path.display()),
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
    }
}
