//! The runtime's answer to bad input: one `vmctl: ` line naming the problem, a non-zero exit,
//! the error in `--log` as runc writes it, and nothing left behind (state dir, monitor process,
//! cgroup).
//!
//! The checks that fail before any VM starts run wherever vmctl is built; those that boot a VM
//! need what `runtime_unavailable` checks.

use serde_json::Value;
use vmctl_tests::oci::{processes_mentioning, runtime_unavailable, Bundle, Runtime};
use vmctl_tests::{mentions_any, not_root, skip_if, Outcome, TempDir};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Asserts a failed command: exit `code`, one line naming each of `words`, no panic.
fn assert_error(out: &Outcome, code: i32, words: &[&str]) {
    out.assert_no_panic();
    out.assert_code(code);
    let line = out.single_error_line();
    for w in words {
        assert!(
            mentions_any(line, &[w]),
            "the error does not name {w:?}\n{}",
            out.describe()
        );
    }
}

/// Asserts nothing of container `id` is left.
fn assert_nothing_left(rt: &Runtime, id: &str) {
    assert!(!rt.root().join(id).exists(), "a state dir is left for {id}");
    assert!(
        processes_mentioning(&format!("monitor {id}")).is_empty(),
        "a monitor is left for {id}"
    );
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/vmctl")
            .join(id)
            .exists(),
        "a cgroup is left for {id}"
    );
}

/// A bundle directory with `config` as its config.json and an empty rootfs.
fn raw_bundle(config: &str) -> TempDir {
    let dir = TempDir::new("bad-bundle");
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    dir.file("config.json", config.as_bytes());
    dir
}

/// A change to a valid config that makes it invalid.
type Edit = fn(&mut Value);

fn valid_config() -> Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    })
}

#[test]
fn a_missing_bundle_is_named() {
    skip_if!(not_root());
    let rt = Runtime::new();
    let out = rt.run(&["create", "--bundle", "/no/such/bundle", "b1"]);
    assert_error(&out, 1, &["/no/such/bundle"]);
    assert_nothing_left(&rt, "b1");
}

#[test]
fn malformed_json_says_where() {
    skip_if!(not_root());
    let rt = Runtime::new();
    let dir = raw_bundle("{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\n");
    let out = rt.run(&["create", "--bundle", path(dir.path()), "b2"]);
    assert_error(&out, 1, &["config.json", "line"]);
    assert_nothing_left(&rt, "b2");
}

#[test]
fn invalid_specs_say_what_is_wrong() {
    skip_if!(not_root());
    let rt = Runtime::new();
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            |c| c["process"]["args"] = serde_json::json!([]),
            &["process.args"],
        ),
        (|c| c["process"]["cwd"] = "relative".into(), &["cwd"]),
        (
            |c| c["root"]["path"] = "/no/such/rootfs".into(),
            &["/no/such/rootfs"],
        ),
        (
            |c| {
                c.as_object_mut().unwrap().remove("process");
            },
            &["process"],
        ),
        (|c| c["ociVersion"] = "0.9".into(), &["ociVersion"]),
        (
            |c| {
                c["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}])
            },
            &["not supported", "uidMappings"],
        ),
        (
            |c| {
                c["linux"]["namespaces"] =
                    serde_json::json!([{"type": "pid", "path": "/proc/1/ns/pid"}])
            },
            &["not supported", "pid"],
        ),
        (
            |c| {
                c["mounts"] =
                    serde_json::json!([{"destination": "/x", "type": "nfs", "source": "h:/x"}])
            },
            &["not supported", "nfs"],
        ),
        (
            |c| c["mounts"] = serde_json::json!([{"destination": "/x", "type": "bind", "source": "/no/such/dir"}]),
            &["/no/such/dir"],
        ),
    ];
    for (i, (edit, words)) in cases.into_iter().enumerate() {
        let mut config = valid_config();
        edit(&mut config);
        let dir = raw_bundle(&config.to_string());
        let id = format!("inv{i}");
        let out = rt.run(&["create", "--bundle", path(dir.path()), &id]);
        assert_error(&out, 1, words);
        assert_nothing_left(&rt, &id);
    }
}

#[test]
fn unknown_containers_and_bad_flags() {
    let rt = Runtime::new();
    for cmd in [
        vec!["start", "ghost"],
        vec!["state", "ghost"],
        vec!["kill", "ghost"],
        vec!["delete", "ghost"],
        vec!["pause", "ghost"],
        vec!["exec", "ghost", "true"],
        vec!["ps", "ghost"],
    ] {
        let out = rt.run(&cmd);
        assert_error(&out, 1, &["ghost", "does not exist"]);
    }
    assert_error(&rt.run(&["kill", "ghost", "SIGNOPE"]), 1, &["SIGNOPE"]);
    assert_error(&rt.run(&["state", "../etc"]), 1, &["../etc"]);
    let flag = rt.run(&["create", "--no-such-flag", "x"]);
    flag.assert_no_panic();
    flag.assert_code(2);
    assert!(flag.single_error_line().contains("--no-such-flag"));
    // `delete --force` of a container that is not there succeeds, as runc's does.
    rt.run(&["delete", "--force", "ghost"]).assert_code(0);
}

#[test]
fn errors_go_to_the_log_in_runcs_json_form() {
    let rt = Runtime::new();
    let log = TempDir::new("log");
    let log_file = log.path().join("log.json");
    let out = rt.run(&[
        "--log",
        path(&log_file),
        "--log-format",
        "json",
        "start",
        "ghost",
    ]);
    assert_error(&out, 1, &["ghost"]);
    let text = std::fs::read_to_string(&log_file).expect("the log exists");
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).expect("JSON lines");
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("ghost"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_program_that_cannot_run_gives_127_or_126() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    for (program, code) in [
        ("/no/such/program", 127),
        ("nosuchcommand", 127),
        ("/etc/passwd", 126),
    ] {
        let mut b = Bundle::busybox("noexec");
        b.args(&[program]);
        let out = rt.run(&["run", "--bundle", path(b.path()), "noexec1"]);
        assert_error(&out, code, &[program]);
        assert_nothing_left(&rt, "noexec1");
    }
}

#[test]
fn wrong_states_and_duplicates_are_refused() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("states");
    b.args(&["sleep", "1000"]);
    rt.run(&["create", "--bundle", path(b.path()), "st1"])
        .assert_code(0);

    assert_error(
        &rt.run(&["create", "--bundle", path(b.path()), "st1"]),
        1,
        &["st1", "exists"],
    );
    assert_error(&rt.run(&["pause", "st1"]), 1, &["st1", "created"]);
    assert_error(&rt.run(&["exec", "st1", "true"]), 1, &["st1", "created"]);
    rt.run(&["start", "st1"]).assert_code(0);
    assert_error(&rt.run(&["start", "st1"]), 1, &["st1", "running"]);
    assert_error(&rt.run(&["delete", "st1"]), 1, &["st1", "running"]);
    assert_error(&rt.run(&["resume", "st1"]), 1, &["st1", "running"]);
    rt.run(&["delete", "--force", "st1"]).assert_code(0);
    assert_nothing_left(&rt, "st1");
}

#[test]
fn a_reader_that_went_away_is_no_crash() {
    // Arrange: stdout a pipe whose read end is already closed (`vmctl features | grep -q x`).
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read_end, write_end) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read_end);

    // Act
    let out = std::process::Command::new(vmctl_tests::vmctl())
        .arg("features")
        .stdout(std::process::Stdio::from(write_end))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("running vmctl features");

    // Assert: no panic (a panic aborts: SIGABRT), and nothing to report.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
