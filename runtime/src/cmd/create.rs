//! `vmctl create`: boot the container's VM up to a ready agent whose init waits for `start`,
//! leaving the monitor (the container's pid) behind. Also the first half of `vmctl run`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use clap::Args;
use guest_protocol as proto;

use crate::boot::assets;
use crate::monitor::launch::{Launch, LogTarget, NetNs, Stdio, Sync};
use crate::monitor::SYNC_FD;
use crate::oci::{self, cgroup, hooks, id, log, spec, state, translate, Global};
use crate::Error;

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json)
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// A Unix socket that receives the master of the container's pty
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's pid (its monitor's) here
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (there is no pivot_root on the host)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (the guest has its own keyrings)
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from fd 3) to the container: only 0 is possible
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container's id
    pub id: String,
}

/// A created container, as `run` goes on with it.
pub struct Created {
    pub monitor: Child,
    pub dir: PathBuf,
}

pub fn run(g: &Global, args: CreateArgs) -> Result<u8, Error> {
    create(g, &args, false)?;
    Ok(0)
}

/// Creates the container. `caller_terminal`: `vmctl run` in the foreground attaches the
/// container's terminal itself.
pub fn create(g: &Global, a: &CreateArgs, caller_terminal: bool) -> Result<Created, Error> {
    id::validate(&a.id)?;
    let bundle = std::fs::canonicalize(&a.bundle)
        .map_err(|_| Error::Spec(format!("bundle {} does not exist", a.bundle.display())))?;
    let spec = spec::load(&bundle)?;
    spec::validate(&spec, &bundle)?;
    if a.preserve_fds > 0 {
        return Err(Error::Unsupported(
            "--preserve-fds: descriptors cannot be passed into a VM".into(),
        ));
    }
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let stdio = match (&a.console_socket, terminal, caller_terminal) {
        (Some(_), false, _) => {
            return Err(Error::Usage(
                "--console-socket needs process.terminal set in config.json".into(),
            ))
        }
        (Some(s), true, _) => Stdio::ConsoleSocket(s.clone()),
        (None, true, true) => Stdio::Caller,
        (None, true, false) => {
            return Err(Error::Usage(
                "process.terminal is set: a detached container needs --console-socket".into(),
            ))
        }
        (None, false, _) => Stdio::Inherited,
    };
    let vm = translate::translate(&a.id, &spec, &bundle)?;
    let netns = match spec::network_namespace(&spec) {
        Some(None) => NetNs::New,
        Some(Some(path)) => NetNs::Join(path),
        None => NetNs::Inherit,
    };
    if let NetNs::Join(path) = &netns {
        refuse_host_netns(path)?;
    }
    let linux = spec.linux().as_ref();
    let cpu = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref());
    let launch = Launch {
        id: a.id.clone(),
        root: g.root.clone(),
        bundle: bundle.clone(),
        rootfs: spec::rootfs_path(&spec, &bundle)?,
        vm,
        netns,
        cgroup: cgroup::resolve(
            linux
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            &a.id,
            g.systemd_cgroup,
        ),
        cpu_quota: cpu.and_then(|c| c.quota()),
        cpu_period: cpu.and_then(|c| c.period()),
        stdio,
        kernel: assets::default_kernel()?,
        guest_image: assets::default_guest_image()?,
        hooks: spec.hooks().clone(),
        process: spec.process().clone(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        oci_version: spec.version().clone(),
        log: g.log.as_ref().map(|p| LogTarget {
            path: p.clone(),
            json: g.log_format == log::Format::Json,
            debug: g.debug,
        }),
    };
    let dir = state::create_dir(&g.root, &a.id)?;
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        monitor: None,
        cgroups: Vec::new(),
    };
    let created = launch_monitor(&launch, &mut cleanup)?;
    if let Some(pid_file) = &a.pid_file {
        let pid_file = absolute(pid_file);
        state::write_atomic(
            &pid_file,
            created.monitor.id().to_string().as_bytes(),
            0o644,
        )?;
    }
    cleanup.disarm();
    Ok(created)
}

/// A VM cannot have the host's interfaces (`docker run --network host` names the host's own
/// namespace): say so rather than boot a VM without a network.
fn refuse_host_netns(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| Error::io("cannot read this process's network namespace", e))?;
    let theirs = std::fs::metadata(path).map_err(|e| {
        Error::io(
            format!("cannot open network namespace {}", path.display()),
            e,
        )
    })?;
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        return Err(Error::Unsupported(format!(
            "network namespace {} is the host's own: a VM cannot have the host's interfaces (--network host)",
            path.display()
        )));
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

/// Starts the monitor and takes it through hooks and boot to a created container.
fn launch_monitor(launch: &Launch, cleanup: &mut Cleanup) -> Result<Created, Error> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("cannot create a socket pair", e))?;
    let theirs = OwnedFd::from(theirs);
    let theirs_fd = theirs.as_raw_fd();
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find vmctl's own binary", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg0("vmctl").args(["monitor", &launch.id]);
    // SAFETY: the closure runs in the child between fork and exec and makes only async-signal-
    // safe system calls (dup2, setsid) on descriptors the child owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, SYNC_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A session of its own, as runc's container process: no controlling terminal whose
            // job control could stop it, and it outlives its creator's session.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let monitor = cmd
        .spawn()
        .map_err(|e| Error::io("cannot start the container's monitor", e))?;
    drop(theirs);
    let pid = monitor.id() as i32;
    cleanup.monitor = Some(monitor);
    let mut sync = ours;
    send(&mut sync, &Sync::Launch(Box::new(launch.clone())))?;
    match receive(&mut sync, cleanup)? {
        Sync::Ready { cgroups } => cleanup.cgroups = cgroups,
        other => return Err(unexpected(other)),
    }
    let creating = serde_json::json!({
        "ociVersion": launch.oci_version,
        "id": launch.id,
        "status": "creating",
        "pid": pid,
        "bundle": launch.bundle,
        "annotations": launch.annotations,
    })
    .to_string();
    if let Some(h) = &launch.hooks {
        #[allow(deprecated)]
        let prestart = h.prestart().clone().unwrap_or_default();
        hooks::run_all("prestart", &prestart, &creating)?;
        let create_runtime = h.create_runtime().clone().unwrap_or_default();
        hooks::run_all("createRuntime", &create_runtime, &creating)?;
    }
    send(&mut sync, &Sync::Go)?;
    match receive(&mut sync, cleanup)? {
        Sync::Created => {}
        other => return Err(unexpected(other)),
    }
    if let Some(h) = &launch.hooks {
        let record = state::load(&launch.root, &launch.id)?;
        let state = oci::state_json(&record, state::Status::Created).to_string();
        let create_container = h.create_container().clone().unwrap_or_default();
        hooks::run_all("createContainer", &create_container, &state)?;
    }
    let monitor = cleanup
        .monitor
        .take()
        .ok_or_else(|| Error::Internal("monitor lost".into()))?;
    Ok(Created {
        monitor,
        dir: state::dir(&launch.root, &launch.id),
    })
}

fn send(sync: &mut UnixStream, msg: &Sync) -> Result<(), Error> {
    proto::write_frame(sync, msg)
        .map_err(|e| Error::Internal(format!("cannot talk to the container's monitor: {e}")))
}

fn receive(sync: &mut UnixStream, cleanup: &mut Cleanup) -> Result<Sync, Error> {
    match proto::read_frame::<_, Sync>(sync) {
        Ok(Sync::Failed { message, code }) => Err(if code == 126 || code == 127 {
            Error::NotExecutable { message, code }
        } else {
            Error::Agent(message)
        }),
        Ok(msg) => Ok(msg),
        Err(e) => {
            let how = cleanup
                .monitor
                .as_mut()
                .and_then(|m| m.wait().ok())
                .map(|s| s.to_string())
                .unwrap_or_else(|| "gone".into());
            Err(Error::Internal(format!(
                "the container's monitor ended ({how}) during create: {e}"
            )))
        }
    }
}

fn unexpected(msg: Sync) -> Error {
    Error::Internal(format!(
        "unexpected message from the container's monitor: {msg:?}"
    ))
}

/// Undoes a create that failed half-way: the monitor (and with it the VM), its cgroups, the
/// state directory.
struct Cleanup {
    dir: Option<PathBuf>,
    monitor: Option<Child>,
    cgroups: Vec<PathBuf>,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.dir = None;
        self.monitor = None;
        self.cgroups.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut m) = self.monitor.take() {
            let _ = m.kill();
            let _ = m.wait();
        }
        let _ = cgroup::remove(&self.cgroups);
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
