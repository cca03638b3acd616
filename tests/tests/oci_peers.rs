//! vmctl beside its peers: the same lifecycle script run against vmctl and runc gives the same
//! transcript, and containerd's runc shim drives vmctl (`ctr run --runc-binary`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmctl_tests::oci::{runtime_unavailable, wait_until, Bundle, Runtime, OCI_TIMEOUT};
use vmctl_tests::{run, skip_if, vmctl, TempDir};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs one step and records its exit code and output.
fn step(t: &mut Vec<String>, rt: &Runtime, name: &str, args: &[&str]) {
    let out = rt.run(args);
    t.push(format!("{name}: {:?} {}", out.code(), out.stdout.trim()));
}

/// `state c1` reduced to what both runtimes must agree on.
fn status(rt: &Runtime) -> String {
    let out = rt.run(&["state", "c1"]);
    match serde_json::from_str::<serde_json::Value>(&out.stdout) {
        Ok(v) => format!(
            "{} pid>0={}",
            v["status"].as_str().unwrap_or("?"),
            v["pid"].as_i64().unwrap_or(0) > 0
        ),
        Err(_) => format!("exit {:?}", out.code()),
    }
}

/// A lifecycle, step by step, as lines `step: exit code [what was seen]` that must not depend
/// on the runtime.
fn transcript(rt: &Runtime, tag: &str) -> Vec<String> {
    let mut t = Vec::new();
    let mut b = Bundle::busybox(tag);
    b.args(&["sleep", "1000"]);
    step(
        &mut t,
        rt,
        "create",
        &["create", "--bundle", path(b.path()), "c1"],
    );
    t.push(format!("state after create: {}", status(rt)));
    step(&mut t, rt, "start", &["start", "c1"]);
    t.push(format!("state after start: {}", status(rt)));
    step(
        &mut t,
        rt,
        "exec",
        &["exec", "c1", "sh", "-c", "echo hi from exec; exit 4"],
    );
    step(&mut t, rt, "start again", &["start", "c1"]);
    step(&mut t, rt, "delete running", &["delete", "c1"]);
    step(
        &mut t,
        rt,
        "kill TERM to a pid-1 sleep",
        &["kill", "c1", "TERM"],
    );
    std::thread::sleep(Duration::from_secs(1));
    t.push(format!("state after TERM: {}", status(rt)));
    step(&mut t, rt, "kill KILL", &["kill", "c1", "KILL"]);
    let stopped = wait_until(Duration::from_secs(30), || {
        status(rt).starts_with("stopped")
    });
    t.push(format!("stopped after KILL: {stopped}"));
    t.push(format!("state after KILL: {}", status(rt)));
    step(&mut t, rt, "kill stopped", &["kill", "c1", "KILL"]);
    step(&mut t, rt, "delete", &["delete", "c1"]);
    t.push(format!("state after delete: {}", status(rt)));
    step(&mut t, rt, "delete again", &["delete", "c1"]);
    step(
        &mut t,
        rt,
        "delete --force missing",
        &["delete", "--force", "c1"],
    );
    b.args(&["sh", "-c", "echo out; exit 3"]);
    step(
        &mut t,
        rt,
        "run exit 3",
        &["run", "--bundle", path(b.path()), "c2"],
    );
    step(&mut t, rt, "list after run", &["list", "-q"]);
    t
}

#[test]
fn the_lifecycle_transcript_matches_runc() {
    skip_if!(runtime_unavailable());
    let Some(runc) = which("runc") else {
        vmctl_tests::print_skip("runc is not installed (it is in the test host)");
        return;
    };

    let ours = transcript(&Runtime::new(), "vs-vmctl");
    let theirs = transcript(&Runtime::with_binary(runc), "vs-runc");

    assert_eq!(
        ours,
        theirs,
        "vmctl (left) and runc (right) differ:\n{}",
        ours.iter()
            .zip(&theirs)
            .map(|(a, b)| format!("{}{a}\n   {b}", if a == b { "  " } else { "! " }))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// containerd with its own root, state and socket, stopped on drop.
struct Containerd {
    child: Child,
    dir: TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let sock = dir.path().join("containerd.sock");
        let child = Command::new("containerd")
            .args(["--root", path(&dir.path().join("root"))])
            .args(["--state", path(&dir.path().join("state"))])
            .args(["--address", path(&sock)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("starting containerd");
        assert!(
            wait_until(Duration::from_secs(60), || sock.exists()),
            "containerd did not come up: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Containerd { child, dir }
    }

    fn ctr(&self, args: &[&str]) -> vmctl_tests::Outcome {
        let sock = self.dir.path().join("containerd.sock");
        run(
            Command::new("ctr")
                .args(["--address", path(&sock)])
                .args(args),
            OCI_TIMEOUT,
        )
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn containerd_drives_vmctl_through_its_runc_shim() {
    skip_if!(runtime_unavailable());
    if which("containerd").is_none() || which("ctr").is_none() {
        vmctl_tests::print_skip("containerd is not installed (it is in the test host)");
        return;
    }
    let cd = Containerd::start();
    let b = Bundle::busybox("ctr");
    let vmctl = vmctl();

    let out = cd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        path(&vmctl),
        // Without an image ctr's spec has no environment: runc too finds no `sh` then.
        "--env",
        "PATH=/usr/bin:/bin",
        "--rootfs",
        path(&b.rootfs()),
        "ctr1",
        "sh",
        "-c",
        "echo hello from a microVM; exit 3",
    ]);

    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(
        out.stdout.contains("hello from a microVM"),
        "{}",
        out.describe()
    );
    let left = cd.ctr(&["containers", "ls", "-q"]);
    assert_eq!(left.stdout.trim(), "", "ctr run --rm removed the container");
}
