//! Helpers for tests that boot a real Linux guest: the project's kernel and initramfs, whether
//! this host's KVM can run Linux at all, and extra files appended to the initramfs.
//!
//! Linux guests need hardware-style KVM. On kvm-pvm (this project's development machines) the
//! tests skip with a message, and `make test` runs them inside the test host instead
//! (resources/testhost/run), where they run for real.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{kvm_unusable, not_root, on_kvm_pvm, run, vmctl, Outcome, TempDir};

/// A Linux boot under nested virtualization (the test host) takes a few seconds; commands inside
/// may take longer (100 MiB transfers), so each call can pass its own.
pub const LINUX_TIMEOUT: Duration = Duration::from_secs(180);

/// The directory holding the project's kernel and initramfs: `$VMCTL_SHARE`, else
/// `<dir of vmctl>/../share/vmctl` (the build/ layout, also inside the test host).
pub fn share_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("VMCTL_SHARE") {
        return PathBuf::from(p);
    }
    let exe = vmctl();
    exe.parent()
        .map(|bin| bin.join("../share/vmctl"))
        .unwrap_or_else(|| PathBuf::from("/usr/share/vmctl"))
}

pub fn vmlinux() -> PathBuf {
    share_dir().join("vmlinux")
}

pub fn bzimage() -> PathBuf {
    share_dir().join("bzImage")
}

pub fn initramfs() -> PathBuf {
    share_dir().join("initramfs.img")
}

/// Why Linux guests cannot run here, if they cannot.
pub fn linux_unavailable() -> Option<String> {
    if let Some(why) = kvm_unusable() {
        return Some(why);
    }
    if on_kvm_pvm() {
        return Some(
            "this host's /dev/kvm is kvm-pvm, which cannot run Linux guests; \
             `make test` runs these tests inside the test host"
                .into(),
        );
    }
    for f in [vmlinux(), bzimage(), initramfs()] {
        if !f.is_file() {
            return Some(format!(
                "{} is missing: run `make build` first",
                f.display()
            ));
        }
    }
    None
}

/// Why a Linux test that also needs root (taps, namespaces, mounts) cannot run, if it cannot.
pub fn linux_root_unavailable() -> Option<String> {
    linux_unavailable().or_else(not_root)
}

/// `vmctl boot ARGS... -- COMMAND...` with the project's kernel and initramfs.
pub fn boot_linux(args: &[&str], command: &[&str], timeout: Duration) -> Outcome {
    let mut cmd = Command::new(vmctl());
    cmd.arg("boot").args(args);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    run(&mut cmd, timeout)
}

/// A `vmctl boot` running in the background (or a command that runs one), its console read line
/// by line.
pub struct ConsoleVm {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl ConsoleVm {
    /// Starts `cmd` (stdin /dev/null, stdout and stderr read here).
    pub fn spawn(cmd: &mut Command) -> ConsoleVm {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting vmctl");
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            s
        });
        ConsoleVm {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits for a console line starting with `prefix`; returns it. Kills vmctl and panics with its
    /// stderr and the console so far when none comes within `timeout`.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let status = self.child.wait();
                    let stderr = self
                        .stderr
                        .take()
                        .and_then(|h| h.join().ok())
                        .unwrap_or_default();
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("within {timeout:?}"),
                        RecvTimeoutError::Disconnected => "before vmctl ended".into(),
                    };
                    panic!(
                        "no console line starting with {prefix:?} {why}; vmctl: {status:?}\n\
                         stderr:\n{stderr}\nconsole:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for vmctl to exit; returns its exit code, its stderr and the whole console.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for vmctl") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("vmctl did not exit; console:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status.code(), stderr, std::mem::take(&mut self.seen))
    }
}

impl Drop for ConsoleVm {
    /// A test that fails half-way leaves no VM behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The project's initramfs with more files in it: a newc archive appended to the default one
/// (Linux unpacks concatenated archives in order). `files` are (path in the guest, host file);
/// each keeps its host permission bits. Returns the directory holding it and the image's path.
pub fn initramfs_with(files: &[(&str, &Path)]) -> (TempDir, PathBuf) {
    let dir = TempDir::new("initramfs");
    let mut image = std::fs::read(initramfs())
        .unwrap_or_else(|e| panic!("reading {}: {e}", initramfs().display()));
    let mut archive = Vec::new();
    let mut ino = 0x7000_0000u32;
    for (dest, src) in files {
        let data = std::fs::read(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(src).expect("metadata").permissions(),
        ) & 0o7777;
        // Parent directories first (existing ones are left as they are by the kernel).
        let dest = dest.trim_start_matches('/');
        let parts: Vec<&str> = dest.split('/').collect();
        for i in 1..parts.len() {
            ino += 1;
            newc_entry(&mut archive, ino, &parts[..i].join("/"), 0o040755, &[]);
        }
        ino += 1;
        newc_entry(&mut archive, ino, dest, 0o100000 | mode, &data);
    }
    newc_entry(&mut archive, 0, "TRAILER!!!", 0, &[]);
    // Compressed or not, an archive must start on a 4-byte boundary.
    image.resize(image.len().next_multiple_of(4), 0);
    image.extend_from_slice(&archive);
    let path = dir.path().join("initramfs.img");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&image))
        .expect("writing the extended initramfs");
    (dir, path)
}

fn newc_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}
