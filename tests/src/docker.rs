//! A dockerd of the test's own, with vmctl registered as the runtime `vmctl`: its own
//! `--data-root`, `--exec-root`, `--pidfile`, socket and bridge, so it never meets another daemon
//! on the machine, and images made with `docker import` from the busybox bundle the build makes.
//! One daemon at a time per test binary: daemons share the host's iptables chains.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::oci::{bundle_template, processes_mentioning, runtime_unavailable, wait_until};
use crate::{not_root, run, vmctl, Outcome, TempDir};

/// A `docker run` boots a Linux VM: seconds under nested emulation, more with a busy daemon.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(240);
/// The image `import_busybox` makes.
pub const BUSYBOX: &str = "vmctl-test/busybox:latest";

/// Why the Docker tests cannot run here, if they cannot.
pub fn docker_unavailable() -> Option<String> {
    not_root().or_else(runtime_unavailable).or_else(|| {
        ["dockerd", "docker", "containerd", "containerd-shim-runc-v2"]
            .iter()
            .find(|b| !on_path(b))
            .map(|b| format!("{b} is not installed (make deps installs docker.io)"))
    })
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// A running dockerd, stopped and cleaned away on drop.
pub struct Dockerd {
    dir: TempDir,
    socket: PathBuf,
    bridge: String,
    child: Child,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Dockerd {
    /// Starts a daemon whose default bridge is a bridge of its own on 10.213.`net`.0/24.
    pub fn start(net: u8) -> Dockerd {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = TempDir::new("dockerd");
        let socket = dir.path().join("docker.sock");
        let bridge = format!("vmctl-dk{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        crate::netns::sh(&format!(
            "ip link add name {bridge} type bridge && ip addr add 10.213.{net}.1/24 dev {bridge} \
             && ip link set {bridge} up"
        ));
        let config = dir.file(
            "daemon.json",
            serde_json::json!({ "runtimes": { "vmctl": { "path": vmctl() } } })
                .to_string()
                .as_bytes(),
        );
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", &bridge])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let d = Dockerd {
            dir,
            socket,
            bridge,
            child,
            _one_at_a_time: guard,
        };
        let started = Instant::now();
        let ready = wait_until(Duration::from_secs(120), || {
            d.docker(&["version"]).code() == Some(0)
        });
        assert!(
            ready,
            "dockerd not ready after {:?}; its log:\n{}",
            started.elapsed(),
            d.log_tail()
        );
        d.import_busybox();
        d
    }

    /// `docker -H <our socket> ARGS...`, run to the end.
    pub fn docker(&self, args: &[&str]) -> Outcome {
        run(&mut self.cmd(args), DOCKER_TIMEOUT)
    }

    /// [`Dockerd::docker`] with a timeout of its own, for slow flows.
    pub fn docker_for(&self, args: &[&str], timeout: Duration) -> Outcome {
        run(&mut self.cmd(args), timeout)
    }

    /// The command, not run (for input on stdin or a background run).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        c
    }

    /// `docker ARGS...`, asserted to succeed; its stdout without the trailing newline.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert_eq!(
            out.code(),
            Some(0),
            "docker {args:?} failed\n{}",
            out.describe()
        );
        out.stdout.trim_end().to_string()
    }

    /// `docker run --runtime vmctl ARGS...`.
    pub fn run_vm(&self, args: &[&str]) -> Outcome {
        self.run_vm_for(args, DOCKER_TIMEOUT)
    }

    /// [`Dockerd::run_vm`] with a timeout of its own, for slow workloads.
    pub fn run_vm_for(&self, args: &[&str], timeout: Duration) -> Outcome {
        let mut all = vec!["run", "--runtime", "vmctl"];
        all.extend_from_slice(args);
        self.docker_for(&all, timeout)
    }

    /// `docker run -d --runtime vmctl ARGS...`, asserted to succeed; the container's id.
    pub fn run_vm_detached(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d", "--runtime", "vmctl"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// `docker inspect -f FORMAT NAME`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name])
    }

    /// The state root Docker gives vmctl (`--root`).
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("exec/runtime-vmctl/moby")
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory beside the daemon's, removed with it.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// The end of dockerd's log, for messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn import_busybox(&self) {
        let rootfs = bundle_template().join("rootfs");
        let out = run(
            Command::new("sh").arg("-c").arg(format!(
                "tar -C {} -c . | docker -H unix://{} import -c 'ENV PATH=/bin:/sbin' - {BUSYBOX}",
                rootfs.display(),
                self.socket.display()
            )),
            DOCKER_TIMEOUT,
        );
        assert_eq!(out.code(), Some(0), "docker import\n{}", out.describe());
    }

    /// Removes every container and asserts nothing of vmctl's is left: no monitor, no state
    /// directory, no tap on the host, no mount of a container's rootfs.
    pub fn assert_nothing_left(&self) {
        let ids = self.ok(&["ps", "-aq", "--no-trunc"]);
        for id in ids.lines() {
            self.ok(&["rm", "-f", id]);
        }
        // Each container's monitor is `vmctl monitor <id>`.
        let left = || -> Vec<String> { ids.lines().flat_map(processes_mentioning).collect() };
        let gone = wait_until(Duration::from_secs(30), || left().is_empty());
        assert!(gone, "vmctl processes left: {:?}", left());
        let root = self.runtime_root();
        let states: Vec<_> = std::fs::read_dir(&root)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            states.is_empty(),
            "state dirs left in {}: {states:?}",
            root.display()
        );
        let links = crate::netns::sh("ip -o link show");
        assert!(!links.contains("vmtap"), "taps left on the host:\n{links}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let merged: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&*self.data_root().to_string_lossy()) && l.contains("merged"))
            .collect();
        assert!(merged.is_empty(), "container mounts left: {merged:?}");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.cmd(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        // A user-defined network's bridge outlives the daemon.
        let _ = self.cmd(&["network", "prune", "-f"]).output();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        unmount_under(self.dir.path());
    }
}

/// Lazily unmounts whatever the daemon left mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&*dir.to_string_lossy()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).output();
    }
}
