//! Helpers for the OCI runtime's tests: a busybox bundle per test (an overlay on the bundle the
//! build makes, so each test writes its own upper layer), a private `--root`, and commands run
//! against both. Containers boot real Linux microVMs, so these tests need what
//! [`crate::linux::linux_root_unavailable`] checks, plus the guest image and the bundle.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::linux::{linux_root_unavailable, share_dir};
use crate::{exe_dir, repo_root, run, vmctl, Outcome, TempDir};

/// A container's create boots a Linux VM: seconds under nested emulation.
pub const OCI_TIMEOUT: Duration = Duration::from_secs(180);

/// The busybox bundle `make bundles` builds: `$VMCTL_TEST_BUNDLE`, else
/// `<dir of this test binary>/bundles/busybox`, else `<repo>/build/tests/bundles/busybox`.
pub fn bundle_template() -> PathBuf {
    if let Some(p) = std::env::var_os("VMCTL_TEST_BUNDLE") {
        return PathBuf::from(p);
    }
    if let Some(dir) = exe_dir().map(|d| d.join("bundles/busybox")) {
        if dir.join("config.json").is_file() {
            return dir;
        }
    }
    repo_root().join("build/tests/bundles/busybox")
}

/// Why the runtime's tests cannot run here, if they cannot.
pub fn runtime_unavailable() -> Option<String> {
    linux_root_unavailable().or_else(|| {
        let image = share_dir().join("guest.erofs");
        let bundle = bundle_template();
        if !image.is_file() {
            Some(format!("{} is missing: run `make build`", image.display()))
        } else if !bundle.join("config.json").is_file() {
            Some(format!("{} is missing: run `make build`", bundle.display()))
        } else {
            None
        }
    })
}

/// A bundle of its own: `rootfs` an overlay whose lower layer is the template's rootfs, and a
/// config.json the test edits.
pub struct Bundle {
    dir: TempDir,
    pub config: Value,
    mounted: bool,
}

impl Bundle {
    pub fn busybox(tag: &str) -> Bundle {
        let dir = TempDir::new(tag);
        let template = bundle_template();
        let config: Value = serde_json::from_slice(
            &std::fs::read(template.join("config.json")).expect("reading the template config"),
        )
        .expect("the template config is JSON");
        for sub in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("bundle dirs");
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            template.join("rootfs").display(),
            dir.path().join("upper").display(),
            dir.path().join("work").display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(dir.path().join("rootfs"))
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting the bundle's overlay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut b = Bundle {
            dir,
            config,
            mounted: true,
        };
        b.config["root"]["path"] = Value::String("rootfs".into());
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets process.args (and saves).
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        self.save();
        self
    }

    /// Edits the config with `f` (and saves).
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("config to JSON"),
        )
        .expect("writing config.json");
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path().join("rootfs"))
                .status();
        }
    }
}

/// A private state root (`--root`); containers left in it are force-deleted on drop.
pub struct Runtime {
    root: TempDir,
    binary: PathBuf,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime::with_binary(vmctl())
    }

    /// The same tests against another runc-compatible runtime (runc, crun).
    pub fn with_binary(binary: PathBuf) -> Runtime {
        Runtime {
            root: TempDir::new("oci-root"),
            binary,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `<runtime> --root R ARGS...` (not run).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Runs `<runtime> --root R ARGS...` with stdin /dev/null.
    pub fn run(&self, args: &[&str]) -> Outcome {
        run(&mut self.cmd(args), OCI_TIMEOUT)
    }

    /// The container's OCI state, as `state` prints it.
    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        out.assert_code(0);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state is not JSON ({e})\n{}", out.describe()))
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                if let Some(id) = e.file_name().to_str() {
                    let _ = self.cmd(&["delete", "--force", id]).output();
                }
            }
        }
    }
}

/// Whether process `pid` exists (a zombie counts as gone).
pub fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `<runtime> --root R ARGS...` with `input` on its stdin.
pub fn run_with_input(rt: &Runtime, args: &[&str], input: &[u8]) -> Outcome {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = rt.cmd(args);
    let command = format!("{cmd:?}");
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("waiting for the runtime");
    let _ = writer.join();
    Outcome {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out: false,
        elapsed: start.elapsed(),
    }
}

/// The processes whose command line mentions `needle` (e.g. a container id), for leak checks.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && pid_alive(name.parse().unwrap_or(0)) {
                found.push(format!("{name}: {text}"));
            }
        }
    }
    found
}
