//! The launcher on this host, as root, without a VM: a busybox root file system in a scratch
//! directory stands in for the root share. Skipped (with a message) when not root.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use common::{can_run, spec, Scratch};
use guest_protocol::{ContainerSpec, ErrorKind};
use vmctl_agent::container::{
    launch, ChildStdio, ContainerPlan, ExecTarget, Launched, ProcessPlan,
};
use vmctl_agent::sys::fd::pipe;

/// The agent's ends of a process's pipes.
struct HostEnds {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn pipes() -> (ChildStdio, HostEnds) {
    let (in_r, in_w) = pipe().unwrap();
    let (out_r, out_w) = pipe().unwrap();
    let (err_r, err_w) = pipe().unwrap();
    (
        ChildStdio::Pipes {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        },
        HostEnds {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        },
    )
}

fn plan(s: &ContainerSpec, scratch: &Scratch) -> ContainerPlan {
    let shares = scratch.shares();
    ContainerPlan::new(s, scratch.root(), &|tag| shares.join(tag)).unwrap()
}

/// The tests run one at a time: [`wait`] reaps every other child too (helpers, and processes
/// whose creation failed: a zombie left in a pid namespace keeps its init from ending), as the
/// agent's reaper does.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reaps children until `pid` ends; its wait status.
fn wait(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        assert!(r > 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            return status;
        }
    }
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

/// Creates and starts the init of `s`, waits for it: (wait status, stdout, stderr).
fn run(s: &ContainerSpec, scratch: &Scratch) -> (i32, String, String) {
    let (child, host) = pipes();
    let launched = launch::create_init(&plan(s, scratch), child).unwrap();
    drop(host.stdin);
    launch::start(launched.start.unwrap()).unwrap();
    let status = wait(launched.pid);
    (status, read_all(host.stdout), read_all(host.stderr))
}

#[test]
fn the_init_runs_in_its_namespaces_and_root() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("ns");
    let s = spec(
        "echo pid=$$; hostname; ls /; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         ls /dev; readlink /dev/ptmx; cat /proc/kcore | wc -c; \
         echo x 2>&1 >/proc/sys/kernel/hostname; grep -E '^Cap(Eff|Bnd)' /proc/self/status; exit 3",
    );
    let mut s = s;
    let caps = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
    // ambient but not inheritable, as runc's default spec has them: skipped, as runc does
    s.process.capabilities = Some(guest_protocol::Capabilities {
        bounding: caps.clone(),
        effective: caps.clone(),
        permitted: caps.clone(),
        ambient: caps,
        ..Default::default()
    });

    let (status, out, err) = run(&s, &scratch);

    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3,
        "{status:#x} {out} {err}"
    );
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("testbox\n"), "{out}");
    assert!(out.contains("sh -c"), "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "pts", "shm", "mqueue",
    ] {
        assert!(out.lines().any(|l| l == dev), "/dev/{dev} missing: {out}");
    }
    assert!(out.contains("pts/ptmx\n"), "{out}");
    assert!(out.contains("\n0\n"), "/proc/kcore is masked: {out}");
    assert!(
        out.contains("Read-only file system"),
        "/proc/sys is read-only: {out}"
    );
    assert!(out.contains("CapEff:\t0000000000000021"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000021"), "{out}");
    assert!(
        !out.contains("vmctl-agent-test"),
        "the host's paths are gone: {out}"
    );
}

#[test]
fn user_groups_limits_caps_umask_cwd_and_env_apply() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("creds");
    let mut s = spec(
        "id -u; id -g; id -G; ulimit -n; umask; pwd; env; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    );
    s.process.user.uid = 1000;
    s.process.user.gid = 1000;
    s.process.user.additional_gids = vec![10, 20];
    s.process.user.umask = Some(0o027);
    s.process.cwd = "/home/app".into();
    s.process.env.push("FOO=bar baz".into());
    s.process.no_new_privileges = true;
    s.process.rlimits = vec![guest_protocol::Rlimit {
        kind: "RLIMIT_NOFILE".into(),
        soft: 123,
        hard: 456,
    }];
    // A user other than root keeps across exec only its ambient capabilities (as under runc).
    let caps = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
    let kill = vec!["CAP_KILL".to_string()];
    s.process.capabilities = Some(guest_protocol::Capabilities {
        bounding: caps.clone(),
        effective: caps.clone(),
        permitted: caps,
        inheritable: kill.clone(),
        ambient: kill,
    });

    let (status, out, err) = run(&s, &scratch);

    assert_eq!(status, 0, "{out} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        ["1000", "1000", "1000 10 20", "123", "0027", "/home/app"],
        "{out}"
    );
    assert!(out.contains("FOO=bar baz\n"), "{out}");
    assert!(!out.contains("CARGO"), "only the spec's environment: {out}");
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000020"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000020"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000021"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        scratch.root().join("home/app").is_dir(),
        "the cwd was created"
    );
}

#[test]
fn a_signal_death_is_reported_as_such() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    // (without a pid namespace: the init of one ignores signals sent from inside it)
    let scratch = Scratch::new("signal");
    let mut s = spec("kill -9 $$");
    s.namespaces
        .retain(|n| *n != guest_protocol::Namespace::Pid);
    let (status, _, _) = run(&s, &scratch);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == 9,
        "{status:#x}"
    );
}

#[test]
fn a_missing_or_unexecutable_program_fails_the_create() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("notfound");
    std::fs::write(scratch.root().join("bin/data"), "x").unwrap();
    for (program, kind, text) in [
        (
            "nosuchprog",
            ErrorKind::NotFound,
            "exec: \"nosuchprog\": executable file not found in $PATH",
        ),
        (
            "/bin/data",
            ErrorKind::NotExecutable,
            "exec: \"/bin/data\": permission denied",
        ),
    ] {
        let mut s = spec("");
        s.process.args = vec![program.into()];
        let (child, _host) = pipes();

        let err = launch::create_init(&plan(&s, &scratch), child).unwrap_err();

        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn symlinks_in_the_root_cannot_redirect_a_mount_outside() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("escape");
    let outside = scratch.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, scratch.root().join("evil")).unwrap();
    let mut s = spec("ls -d /evil/x && echo inside");
    s.mounts.push(common::fs_mount("/evil/x", "tmpfs", &[]));

    let (status, out, err) = run(&s, &scratch);

    assert_eq!(status, 0, "{out} {err}");
    assert!(
        !outside.join("x").exists(),
        "the mount point was made outside the root"
    );
    let inside = scratch
        .root()
        .join(outside.strip_prefix("/").unwrap())
        .join("x");
    assert!(inside.is_dir(), "{}", inside.display());
}

#[test]
fn shares_are_bind_mounted_files_and_dirs_read_only_where_asked() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("shares");
    std::fs::write(scratch.share("hosts").join("hosts"), "10.0.0.1 db\n").unwrap();
    std::fs::write(scratch.share("data").join("f"), "data\n").unwrap();
    let mut s = spec("cat /etc/hosts; cat /data/f; echo new > /data/g && echo wrote; echo x > /etc/hosts || echo ro");
    let share = |tag: &str, file: Option<&str>, opts: &[&str]| guest_protocol::MountSpec {
        destination: match tag {
            "hosts" => "/etc/hosts".into(),
            _ => "/data".into(),
        },
        source: guest_protocol::MountSource::Share {
            tag: tag.into(),
            file: file.map(Into::into),
        },
        options: opts.iter().map(|s| s.to_string()).collect(),
    };
    s.mounts
        .push(share("hosts", Some("hosts"), &["rbind", "rprivate", "ro"]));
    s.mounts.push(share("data", None, &["rbind", "rprivate"]));

    let (status, out, err) = run(&s, &scratch);

    assert_eq!(status, 0, "{out} {err}");
    assert_eq!(out, "10.0.0.1 db\ndata\nwrote\nro\n", "{err}");
    assert_eq!(
        std::fs::read_to_string(scratch.shares().join("data/g")).unwrap(),
        "new\n"
    );
    assert!(
        Path::new(&scratch.root().join("etc/hosts")).is_file(),
        "mount point file created"
    );
}

#[test]
fn exec_joins_the_namespaces_and_root_of_a_running_init() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let scratch = Scratch::new("exec");
    let s = spec("read line; echo got $line");
    let (child, init_host) = pipes();
    let p = plan(&s, &scratch);
    let init: Launched = launch::create_init(&p, child).unwrap();
    launch::start(init.start.unwrap()).unwrap();
    let target = ExecTarget {
        init_pid: init.pid,
        namespaces: p.namespaces.clone(),
    };
    let mut ps = s.process.clone();
    ps.args = vec![
        "sh".into(),
        "-c".into(),
        "echo pid=$$; hostname; cat /proc/1/cmdline | tr '\\0' ' '".into(),
    ];
    let (child, host) = pipes();

    let exec = launch::exec(&target, &ProcessPlan::new(&ps).unwrap(), child).unwrap();
    drop(host.stdin);
    let status = wait(exec.pid);
    let out = read_all(host.stdout);

    assert_eq!(status, 0, "{out} {}", read_all(host.stderr));
    assert!(out.starts_with("pid="), "{out}");
    assert!(!out.starts_with("pid=1\n"), "{out}");
    assert!(out.contains("testbox\n"), "{out}");
    assert!(out.contains("sh -c read line"), "{out}");
    let mut notfound = ps.clone();
    notfound.args = vec!["nope".into()];
    let (child, _h) = pipes();
    let err = launch::exec(&target, &ProcessPlan::new(&notfound).unwrap(), child).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    std::io::Write::write_all(&mut std::fs::File::from(init_host.stdin), b"hello\n").unwrap();
    assert_eq!(wait(init.pid), 0, "the init ended after reading its line");
    assert_eq!(read_all(init_host.stdout), "got hello\n");
}
