//! virtio-vsock with the real Linux driver, through the hybrid Unix socket: host -> guest
//! (`CONNECT <port>` to a guest listener) and guest -> host (a listener at `<socket>_<port>`),
//! 16 concurrent streams each way and 100 MiB, all with checksums; a guest closing in
//! mid-stream; connections to ports nobody listens on; and the socket file's life.
//!
//! Both ends run `tests/guest-tools`' vsock-test (static: in the guest over AF_VSOCK, on the host
//! over the Unix socket). The Linux tests need a KVM that runs Linux (the test host); the socket
//! file tests boot a tiny guest and run on any usable /dev/kvm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmctl_tests::linux::{initramfs_with, linux_unavailable, vmlinux, ConsoleVm};
use vmctl_tests::{
    guest, guest_tool, kvm_unusable, mentions_any, run, skip_if, vmctl, vmctl_boot, TempDir,
};

const CID: u32 = 3;
/// 100 MiB in one stream.
const BIG: u64 = 100 << 20;
/// Each of the 16 concurrent streams.
const SMALL: u64 = 1 << 20;
const STREAMS: usize = 16;
/// A whole test inside the test host (QEMU TCG: everything is slow).
const TIMEOUT: Duration = Duration::from_secs(900);

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Boots the project's kernel with vsock-test in the initramfs and `--vsock cid=3,socket=uds`
/// (2 vCPUs: the guest's streams run in parallel).
fn start_vm(uds: &Path, initrd: &Path, script: &str) -> ConsoleVm {
    ConsoleVm::spawn(
        Command::new(vmctl())
            .arg("boot")
            .args(["--kernel", s(&vmlinux()), "--initrd", s(initrd)])
            .args(["--memory", "512", "--cpus", "2"])
            .args(["--vsock", &format!("cid={CID},socket={}", s(uds))])
            .args(["--", "sh", "-c", script]),
    )
}

/// Runs the host-side vsock-test to the end.
fn host_tool(args: &[&str]) -> vmctl_tests::Outcome {
    run(Command::new(guest_tool("vsock-test")).args(args), TIMEOUT)
}

/// Starts the host-side vsock-test in the background.
fn host_tool_bg(args: &[&str]) -> Child {
    Command::new(guest_tool("vsock-test"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting vsock-test on the host")
}

/// Waits for a background host tool, killing it after `timeout` (its output so far is kept).
fn finish_bg(mut child: Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("host vsock-test output")
}

/// The `conn I ...` result lines of vsock-test output, by connection and verb.
fn results(lines: &[String]) -> HashMap<(usize, String), String> {
    let mut out = HashMap::new();
    for line in lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["conn", i, verb, ..] = w.as_slice() {
            if let Ok(i) = i.parse() {
                out.insert((i, verb.to_string()), line.clone());
            }
        }
    }
    out
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

fn count(line: &str) -> u64 {
    line.split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"))
}

/// Checks that every stream arrived whole: same length and SHA-256 on both sides, and the
/// receiver's byte-by-byte comparison with the expected stream passed.
fn assert_streams(n: usize, bytes: u64, sent: &[String], received: &[String], context: &str) {
    let (sent, received) = (results(sent), results(received));
    for i in 0..n {
        let s = sent
            .get(&(i, "sent".into()))
            .unwrap_or_else(|| panic!("stream {i}: no sent line\n{context}"));
        let r = received
            .get(&(i, "recv".into()))
            .unwrap_or_else(|| panic!("stream {i}: no recv line\n{context}"));
        assert_eq!(count(s), bytes, "stream {i} sent\n{context}");
        assert_eq!(count(r), bytes, "stream {i} received\n{context}");
        assert_eq!(field(r, "verify"), Some("ok"), "stream {i}: {r}\n{context}");
        assert_eq!(
            field(s, "sha256"),
            field(r, "sha256"),
            "stream {i} checksums\n{context}"
        );
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// The guest's `conn ...` result lines: those of the SMALL streams, and the others.
fn guest_results(console: &[String]) -> (Vec<String>, Vec<String>) {
    console
        .iter()
        .filter(|l| l.starts_with("conn "))
        .cloned()
        .partition(|l| count(l) == SMALL)
}

/// Waits until the host listeners (`unix:PATH`) are up: they are once their sockets exist.
fn wait_for_listeners(listeners: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listeners.iter().all(|l| Path::new(&l[5..]).exists()) {
        assert!(Instant::now() < deadline, "host listeners did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn guest_initrd() -> (TempDir, PathBuf) {
    initramfs_with(&[("/bin/vsock-test", &guest_tool("vsock-test"))])
}

fn throughput(line: &str) -> String {
    format!(
        "{} MB/s in {} s",
        field(line, "mbps").unwrap_or("?"),
        field(line, "secs").unwrap_or("?")
    )
}

#[test]
fn host_to_guest_16_streams_and_100_mib_with_checksums() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("vsock-h2g");
    let uds = dir.path().join("v.sock");
    let (_i, initrd) = guest_initrd();
    let script = format!(
        "set -e; vsock-test listen vsock:1234 -n {STREAMS} --recv --sha256 --verify --seed 100; \
         vsock-test listen vsock:1235 --recv --sha256 --verify --seed 7; echo GUEST-DONE"
    );
    let mut vm = start_vm(&uds, &initrd, &script);
    vm.wait_for("listening", Duration::from_secs(120));
    let target = format!("hybrid:{}:1234", s(&uds));
    let n = STREAMS.to_string();
    let small = SMALL.to_string();
    let host16 = host_tool(&[
        "connect", &target, "-n", &n, "--send", &small, "--sha256", "--seed", "100", "--retry",
        "30",
    ]);
    vm.wait_for("listening", TIMEOUT);
    let target = format!("hybrid:{}:1235", s(&uds));
    let big = BIG.to_string();
    let host_big = host_tool(&[
        "connect", &target, "--send", &big, "--sha256", "--seed", "7", "--retry", "30",
    ]);
    vm.wait_for("GUEST-DONE", TIMEOUT);
    let (code, stderr, console) = vm.finish(Duration::from_secs(60));
    let context = format!(
        "host (16):\n{}\nhost (100 MiB):\n{}\nconsole:\n{}\nvmctl stderr:\n{stderr}",
        host16.describe(),
        host_big.describe(),
        console.join("\n")
    );
    assert_eq!(code, Some(0), "{context}");
    assert_eq!(host16.code(), Some(0), "{context}");
    assert_eq!(host_big.code(), Some(0), "{context}");
    let (first16, last) = guest_results(&console);
    assert_streams(STREAMS, SMALL, &lines(&host16.stdout), &first16, &context);
    assert_streams(1, BIG, &lines(&host_big.stdout), &last, &context);
    eprintln!("host -> guest 100 MiB: {}", throughput(&last[0]));
    assert!(!uds.exists(), "the socket is removed when the VM ends");
}

#[test]
fn guest_to_host_16_streams_and_100_mib_with_checksums() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("vsock-g2h");
    let uds = dir.path().join("v.sock");
    let (_i, initrd) = guest_initrd();
    let n = STREAMS.to_string();
    let l16 = format!("unix:{}_2000", s(&uds));
    let l_big = format!("unix:{}_2001", s(&uds));
    let host16 = host_tool_bg(&[
        "listen", &l16, "-n", &n, "--recv", "--sha256", "--verify", "--seed", "200",
    ]);
    let host_big = host_tool_bg(&[
        "listen", &l_big, "--recv", "--sha256", "--verify", "--seed", "9",
    ]);
    wait_for_listeners(&[&l16, &l_big]);
    let script = format!(
        "set -e; vsock-test connect vsock:2:2000 -n {STREAMS} --send {SMALL} --sha256 --seed 200; \
         vsock-test connect vsock:2:2001 --send {BIG} --sha256 --seed 9; echo GUEST-DONE"
    );
    let mut vm = start_vm(&uds, &initrd, &script);
    vm.wait_for("GUEST-DONE", TIMEOUT);
    let (code, stderr, console) = vm.finish(Duration::from_secs(60));
    // The guest is done: the listeners have their streams or never will.
    let host16 = finish_bg(host16, Duration::from_secs(60));
    let host_big = finish_bg(host_big, Duration::from_secs(60));
    let (h16, hbig) = (
        String::from_utf8_lossy(&host16.stdout).into_owned(),
        String::from_utf8_lossy(&host_big.stdout).into_owned(),
    );
    let context = format!(
        "host (16):\n{h16}\nhost (100 MiB):\n{hbig}\nconsole:\n{}\nvmctl stderr:\n{stderr}",
        console.join("\n")
    );
    assert_eq!(code, Some(0), "{context}");
    assert!(host16.status.success(), "{context}");
    assert!(host_big.status.success(), "{context}");
    let (first16, last) = guest_results(&console);
    assert_streams(STREAMS, SMALL, &first16, &lines(&h16), &context);
    assert_streams(1, BIG, &last, &lines(&hbig), &context);
    if let Some(l) = lines(&hbig).iter().find(|l| l.starts_with("conn 0 recv")) {
        eprintln!("guest -> host 100 MiB: {}", throughput(l));
    }
}

#[test]
fn mid_stream_closes_and_refused_connections_leave_the_vmm_working() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("vsock-close");
    let uds = dir.path().join("v.sock");
    let (_i, initrd) = guest_initrd();
    // Guest -> host: the host reads a stream the guest abandons (the writer exits mid-stream).
    let l_abandon = format!("unix:{}_3000", s(&uds));
    let host_abandon = host_tool_bg(&["listen", &l_abandon, "--recv", "--verify", "--seed", "5"]);
    wait_for_listeners(&[&l_abandon]);
    let script = "\
        vsock-test connect vsock:2:5555 --expect-refused; echo REFUSED-DONE; \
        vsock-test listen vsock:1234 --recv-max 300000 --verify --seed 3; echo MIDCLOSE-DONE; \
        vsock-test connect vsock:2:3000 --send 1000000000 --abort-after 20000000 --seed 5; \
        echo ABANDON-DONE; \
        vsock-test listen vsock:1236 --recv --sha256 --verify --seed 11; echo GUEST-DONE";
    let mut vm = start_vm(&uds, &initrd, script);
    let guest_refused = vm.wait_for("conn 0 ", Duration::from_secs(120));
    vm.wait_for("REFUSED-DONE", Duration::from_secs(30));
    // Host -> guest port nobody listens on (1233): the connection is closed, no OK.
    let nobody = format!("hybrid:{}:1233", s(&uds));
    let host_refused = host_tool(&["connect", &nobody, "--expect-refused"]);
    // Host -> guest: the guest reads 300000 bytes of a 100 MiB stream and closes.
    vm.wait_for("listening", TIMEOUT);
    let target = format!("hybrid:{}:1234", s(&uds));
    let big = BIG.to_string();
    let host_cut = host_tool(&[
        "connect", &target, "--send", &big, "--seed", "3", "--retry", "30",
    ]);
    let guest_cut = vm.wait_for("conn 0 recv", TIMEOUT);
    let aborted = vm.wait_for("conn 0 aborted after ", TIMEOUT);
    vm.wait_for("ABANDON-DONE", TIMEOUT);
    let abandoned = finish_bg(host_abandon, Duration::from_secs(60));
    // And afterwards a new connection works.
    vm.wait_for("listening", TIMEOUT);
    let target = format!("hybrid:{}:1236", s(&uds));
    let host_after = host_tool(&[
        "connect", &target, "--send", "1000000", "--sha256", "--seed", "11", "--retry", "30",
    ]);
    let guest_after = vm.wait_for("conn 0 recv", TIMEOUT);
    vm.wait_for("GUEST-DONE", TIMEOUT);
    let (code, stderr, console) = vm.finish(Duration::from_secs(60));
    let abandoned = String::from_utf8_lossy(&abandoned.stdout).into_owned();
    let context = format!(
        "host refused: {}\nhost cut: {}\nhost abandoned: {abandoned}\nhost after: {}\nconsole:\n{}\nvmctl stderr:\n{stderr}",
        host_refused.describe(),
        host_cut.describe(),
        host_after.describe(),
        console.join("\n")
    );
    assert_eq!(code, Some(0), "{context}");
    // The guest's connection to a host port without a listener is reset.
    assert!(
        mentions_any(&guest_refused, &["refused"]),
        "guest connect to nobody: {guest_refused}\n{context}"
    );
    // The host's CONNECT to a guest port without a listener is closed without an OK.
    assert_eq!(host_refused.code(), Some(0), "{context}");
    assert!(host_refused.stdout.contains("refused"), "{context}");
    // The guest closed in mid-stream: it got a correct prefix, the host's send failed.
    assert_eq!(count(&guest_cut), 300000, "{context}");
    assert_eq!(field(&guest_cut, "verify"), Some("ok"), "{context}");
    assert_eq!(
        host_cut.code(),
        Some(1),
        "the host sees the close\n{context}"
    );
    assert!(
        mentions_any(&host_cut.stdout, &["broken pipe", "reset", "error send"]),
        "{context}"
    );
    // The guest writer exited in mid-stream: the host read a correct prefix, then EOF.
    let r = results(&lines(&abandoned));
    let line = r
        .get(&(0, "recv".into()))
        .unwrap_or_else(|| panic!("{context}"));
    let written: u64 = aborted
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{aborted}\n{context}"));
    assert_eq!(
        count(line),
        written,
        "everything written arrives, then EOF\n{context}"
    );
    assert_eq!(field(line, "verify"), Some("ok"), "{context}");
    // The VMM carried on.
    assert_eq!(host_after.code(), Some(0), "{context}");
    assert_eq!(count(&guest_after), 1_000_000, "{context}");
    assert_eq!(field(&guest_after, "verify"), Some("ok"), "{context}");
    assert_eq!(
        field(&guest_after, "sha256"),
        host_after.stdout.lines().find_map(|l| field(l, "sha256")),
        "{context}"
    );
}

#[test]
fn socket_file_is_created_and_removed_with_the_vm() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("vsock-file");
    let uds = dir.path().join("v.sock");
    // A stale socket from an earlier VMM is replaced.
    drop(std::os::unix::net::UnixListener::bind(&uds).expect("binding a stale socket"));
    let out = vmctl_boot([
        "--kernel",
        s(&guest("exit")),
        "--vsock",
        &format!("cid={CID},socket={}", s(&uds)),
    ]);
    out.assert_no_panic();
    out.assert_code(0);
    assert!(
        !uds.exists(),
        "the socket file outlived the VM\n{}",
        out.describe()
    );
}

#[test]
fn unusable_socket_paths_give_one_error_line() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("vsock-bad");
    let missing = dir.path().join("no/such/dir/v.sock");
    let file = dir.file("regular", b"not a socket");
    for (path, words) in [
        (missing.clone(), &["no such file"][..]),
        (file.clone(), &["not a socket"][..]),
    ] {
        let out = vmctl_boot([
            "--kernel",
            s(&guest("exit")),
            "--vsock",
            &format!("cid={CID},socket={}", s(&path)),
        ]);
        out.assert_no_panic();
        out.assert_code(125);
        let line = out.single_error_line();
        assert!(line.contains(s(&path)), "{}", out.describe());
        assert!(mentions_any(line, words), "{}", out.describe());
        assert!(!line.contains("os error"), "{}", out.describe());
    }
    assert_eq!(
        std::fs::read(&file).expect("the regular file"),
        b"not a socket",
        "a file that is not a socket is left alone"
    );
}
