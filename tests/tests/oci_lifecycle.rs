//! The OCI runtime's lifecycle with real microVMs: create/start/state/kill/delete, `run` and its
//! exit statuses, stdio, the process spec (env, cwd, user, rlimits), exec, list/ps, pause and
//! resume, and a killed monitor cleaned up by `delete --force`.

use std::time::Duration;

use serde_json::Value;
use vmctl_tests::oci::{
    pid_alive, processes_mentioning, run_with_input, runtime_unavailable, wait_until, Bundle,
    Runtime,
};
use vmctl_tests::skip_if;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn create_start_state_kill_delete() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("lifecycle");
    b.args(&["sleep", "1000"]);
    let pid_file = b.path().join("c.pid");

    rt.run(&[
        "create",
        "--bundle",
        path(b.path()),
        "--pid-file",
        path(&pid_file),
        "life1",
    ])
    .assert_code(0);
    let state = rt.state("life1");
    let pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "life1");
    assert_eq!(state["pid"].as_i64(), Some(pid));
    assert_eq!(state["bundle"].as_str(), Some(path(b.path())));
    assert!(pid_alive(pid), "the pid-file process lives after create");

    rt.run(&["start", "life1"]).assert_code(0);
    assert_eq!(rt.status("life1"), "running");

    rt.run(&["kill", "life1", "KILL"]).assert_code(0);
    assert!(
        wait_until(Duration::from_secs(30), || rt.status("life1") == "stopped"),
        "the container stops after kill"
    );
    assert_eq!(rt.state("life1")["pid"], 0);
    assert!(!pid_alive(pid));

    rt.run(&["delete", "life1"]).assert_code(0);
    assert!(
        !rt.root().join("life1").exists(),
        "delete removes the state"
    );
    let gone = rt.run(&["state", "life1"]);
    gone.assert_code(1);
    assert!(gone.single_error_line().contains("does not exist"));
}

#[test]
fn run_returns_the_exit_status() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    for (script, want) in [("exit 0", 0), ("exit 3", 3)] {
        let mut b = Bundle::busybox("status");
        b.args(&["sh", "-c", script]);
        let out = rt.run(&["run", "--bundle", path(b.path()), "status1"]);
        out.assert_code(want);
        assert!(
            !rt.root().join("status1").exists(),
            "run deletes the container at the end\n{}",
            out.describe()
        );
    }
}

#[test]
fn the_kernel_runs_shared_or_copied_as_the_annotation_says() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    for (value, logged) in [("true", "kernel pages shared"), ("false", "kernel copied")] {
        let mut b = Bundle::busybox("sharekernel");
        b.args(&["sh", "-c", "exit 5"]).edit(|spec| {
            spec["annotations"] = serde_json::json!({ "vmctl.share_kernel_pages": value });
        });
        let log = b.path().join("vmctl.log");

        let out = rt.run(&[
            "--debug",
            "--log",
            path(&log),
            "run",
            "--bundle",
            path(b.path()),
            "sharekernel1",
        ]);

        out.assert_code(5);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            log.contains(logged),
            "{value}: no {logged:?} in the log:\n{log}"
        );
    }
}

#[test]
fn run_of_a_killed_container_returns_137() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("status137");
    // The container's init is PID 1 of its pid namespace: only a signal from outside kills it.
    b.args(&["sleep", "1000"]);
    let mut child = rt
        .cmd(&["run", "--bundle", path(b.path()), "kill137"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("starting run");
    assert!(
        wait_until(Duration::from_secs(120), || rt
            .run(&["state", "kill137"])
            .stdout
            .contains("running")),
        "the container runs"
    );

    rt.run(&["kill", "kill137", "9"]).assert_code(0);

    let status = child.wait().expect("waiting for run");
    assert_eq!(status.code(), Some(137));
}

#[test]
fn stdin_is_piped_in_and_stdout_and_stderr_stay_apart() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("stdio");
    b.args(&["sh", "-c", "read x; echo out:$x; echo err:$x >&2; cat"]);

    let out = run_with_input(
        &rt,
        &["run", "--bundle", path(b.path()), "stdio1"],
        b"hello\nrest\n",
    );

    out.assert_code(0);
    assert_eq!(out.stdout, "out:hello\nrest\n", "{}", out.describe());
    assert_eq!(out.stderr, "err:hello\n", "{}", out.describe());
}

#[test]
fn large_output_arrives_whole() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("bigout");
    // 8 MiB of numbered lines: nothing may be lost or reordered.
    b.args(&["sh", "-c", "seq 1 1000000"]);

    let out = rt.run(&["run", "--bundle", path(b.path()), "big1"]);

    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1_000_000, "every line arrives");
    assert_eq!(lines[999_999], "1000000");
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, l)| *l == (i + 1).to_string()));
}

#[test]
fn env_cwd_user_and_rlimits_are_honoured() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("process");
    b.edit(|c| {
        let p = &mut c["process"];
        p["args"] = serde_json::json!([
            "sh",
            "-c",
            "echo A=$A; echo B=$B; pwd; id -u; id -g; id -G; ulimit -n; ulimit -Hn; umask"
        ]);
        p["env"] = serde_json::json!(["PATH=/bin:/sbin", "A=1", "B=two words"]);
        p["cwd"] = "/tmp".into();
        p["user"] =
            serde_json::json!({"uid": 65534, "gid": 65534, "additionalGids": [1234], "umask": 18});
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
    });

    let out = rt.run(&["run", "--bundle", path(b.path()), "proc1"]);

    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "A=1",
            "B=two words",
            "/tmp",
            "65534",
            "65534",
            "65534 1234",
            "123",
            "456",
            "0022"
        ],
        "{}",
        out.describe()
    );
}

#[test]
fn exec_runs_in_the_running_container() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("exec");
    b.edit(|c| c["hostname"] = "exechost".into());
    b.args(&["sleep", "1000"]);
    rt.run(&["create", "--bundle", path(b.path()), "exec1"])
        .assert_code(0);
    rt.run(&["start", "exec1"]).assert_code(0);

    let out = rt.run(&[
        "exec",
        "exec1",
        "sh",
        "-c",
        "hostname; echo err >&2; exit 5",
    ]);
    out.assert_code(5);
    assert_eq!(out.stdout, "exechost\n");
    assert_eq!(out.stderr, "err\n");

    let missing = rt.run(&["exec", "exec1", "/no/such/program"]);
    missing.assert_code(127);
    assert!(missing.single_error_line().contains("/no/such/program"));

    let pid_file = b.path().join("exec.pid");
    let detached = rt.run(&[
        "exec",
        "--detach",
        "--pid-file",
        path(&pid_file),
        "exec1",
        "sleep",
        "1000",
    ]);
    detached.assert_code(0);
    let exec_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(exec_pid), "the detached exec's process lives");
    let ps = rt.run(&["ps", "--format", "json", "exec1"]);
    ps.assert_code(0);
    let pids: Vec<i64> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(
        pids.contains(&exec_pid),
        "ps lists the exec process: {pids:?}"
    );
    // Signalling the exec's host process signals the process in the guest.
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(exec_pid as i32, libc::SIGTERM) };
    assert!(wait_until(Duration::from_secs(20), || !pid_alive(exec_pid)));
}

#[test]
fn list_and_ps_give_json() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("list");
    b.args(&["sleep", "1000"]);
    rt.run(&["create", "--bundle", path(b.path()), "list1"])
        .assert_code(0);
    rt.run(&["start", "list1"]).assert_code(0);

    let list = rt.run(&["list", "--format", "json"]);
    list.assert_code(0);
    let all: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], "list1");
    assert_eq!(all[0]["status"], "running");
    let quiet = rt.run(&["list", "-q"]);
    assert_eq!(quiet.stdout, "list1\n");

    let ps = rt.run(&["ps", "--format", "json", "list1"]);
    ps.assert_code(0);
    let pids: Vec<i64> = serde_json::from_str(&ps.stdout).unwrap();
    assert_eq!(pids, vec![rt.state("list1")["pid"].as_i64().unwrap()]);
    let table = rt.run(&["ps", "list1"]);
    table.assert_code(0);
    assert!(table.stdout.contains("sleep 1000"), "{}", table.describe());
}

#[test]
fn pause_stops_the_vm_and_resume_continues() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("pause");
    b.args(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.05; done",
    ]);
    rt.run(&["create", "--bundle", path(b.path()), "pause1"])
        .assert_code(0);
    rt.run(&["start", "pause1"]).assert_code(0);
    let count = || {
        std::fs::read_to_string(b.rootfs().join("count"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || count() > 2),
        "the loop runs"
    );

    rt.run(&["pause", "pause1"]).assert_code(0);
    assert_eq!(rt.status("pause1"), "paused");
    let frozen = count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(), frozen, "nothing runs while paused");

    rt.run(&["resume", "pause1"]).assert_code(0);
    assert_eq!(rt.status("pause1"), "running");
    assert!(
        wait_until(Duration::from_secs(30), || count() > frozen + 2),
        "the loop goes on after resume"
    );
}

#[test]
fn a_killed_monitor_is_cleaned_up_by_delete_force() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("kill9");
    b.args(&["sleep", "1000"]);
    rt.run(&["create", "--bundle", path(b.path()), "kill9x"])
        .assert_code(0);
    rt.run(&["start", "kill9x"]).assert_code(0);
    let pid = rt.state("kill9x")["pid"].as_i64().unwrap();

    // SAFETY: kill(2) on the monitor this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(20), || rt.status("kill9x") == "stopped"));
    rt.run(&["delete", "--force", "kill9x"]).assert_code(0);

    assert!(!rt.root().join("kill9x").exists(), "no state dir left");
    assert!(
        processes_mentioning("kill9x").is_empty(),
        "no process left: {:?}",
        processes_mentioning("kill9x")
    );
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/vmctl/kill9x").exists(),
        "no cgroup left"
    );
}
