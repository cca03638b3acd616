//! Network namespaces and host commands for the networking tests.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::run;

/// A network namespace with `lo` up, deleted on drop (with every interface in it).
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("vmctl-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns(name)
    }

    /// `ip netns exec NS` prefix for a shell command.
    pub fn exec(&self, cmd: &str) -> String {
        format!("ip netns exec {} {cmd}", self.0)
    }

    /// The path that names it in an OCI spec.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    pub fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.0, "link", "show", dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Runs a shell command on the host, asserting it succeeds; returns its stdout.
pub fn sh(cmd: &str) -> String {
    let out = run(
        Command::new("sh").args(["-c", cmd]),
        Duration::from_secs(300),
    );
    assert!(
        out.code() == Some(0),
        "host command failed: {cmd}\n{}",
        out.describe()
    );
    out.stdout
}
