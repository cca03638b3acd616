//! virtio-net with the real Linux driver: a tap in a network namespace made by the test, ping both
//! ways, 100 MiB over TCP with a checksum in each direction, a tap vmctl creates and removes, and
//! the errors a user meets (a bad MAC, no tun device, an interface that is not a tap).
//!
//! The Linux tests need root and a KVM that runs Linux (the test host); the error tests need root
//! and any usable /dev/kvm (they boot a tiny guest, or fail before booting).

use std::process::{Command, Stdio};
use std::time::Duration;

use vmctl_tests::linux::{initramfs_with, linux_root_unavailable, vmlinux, ConsoleVm};
use vmctl_tests::netns::{sh, Netns};
use vmctl_tests::{guest, guest_tool, kvm_unusable, not_root, run, skip_if, vmctl, Outcome};

/// 100 MiB each way.
const TRANSFER: u64 = 100 << 20;
/// A whole transfer test inside the test host (QEMU TCG: everything is slow).
const GUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// `vmctl boot ARGS -- sh -c SCRIPT` in `ns`.
fn start_vm(ns: &Netns, args: &[&str], script: &str) -> ConsoleVm {
    ConsoleVm::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(vmctl())
            .arg("boot")
            .args(args)
            .args(["--", "sh", "-c", script]),
    )
}

/// `sent|received N bytes sha256 HEX ...` -> (N, HEX).
fn transfer_line(line: &str) -> (u64, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [_, n, "bytes", "sha256", hex, ..] => (n.parse().expect("a byte count"), hex.to_string()),
        _ => panic!("not a nettool result line: {line:?}"),
    }
}

/// Sets up a tap named `tap` in `ns`, with the host side at 10.0.2.1/24.
fn host_tap(ns: &Netns, tap: &str) {
    let n = &ns.0;
    sh(&format!(
        "ip -n {n} tuntap add dev {tap} mode tap vnet_hdr && \
         ip -n {n} addr add 10.0.2.1/24 dev {tap} && ip -n {n} link set {tap} up"
    ));
}

#[test]
fn ping_both_ways_and_100_mib_each_way_with_checksums() {
    skip_if!(linux_root_unavailable());
    let ns = Netns::new("net");
    host_tap(&ns, "vtap0");
    let tool = guest_tool("nettool");
    let (_dir, initrd) = initramfs_with(&[("/bin/nettool", &tool)]);
    let script = format!(
        "set -e; ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.2/24 dev eth0; \
         echo MAC $(cat /sys/class/net/eth0/address); \
         ping -c 3 -W 5 10.0.2.1 >/dev/null && echo GUEST-PING-OK; \
         echo GUEST-READY; \
         nettool recv 5001 --timeout 400; \
         nettool send 10.0.2.1 5002 {TRANSFER} --seed 7 --timeout 120; \
         echo GUEST-DONE"
    );
    let mut vm = start_vm(
        &ns,
        &[
            "--kernel",
            vmlinux().to_str().expect("utf-8"),
            "--initrd",
            initrd.to_str().expect("utf-8"),
            "--memory",
            "512",
            "--net",
            "tap=vtap0,mac=06:00:0a:00:02:02",
        ],
        &script,
    );

    let mac = vm.wait_for("MAC ", Duration::from_secs(120));
    vm.wait_for("GUEST-PING-OK", Duration::from_secs(60));
    vm.wait_for("GUEST-READY", Duration::from_secs(10));
    let host_ping = run(
        Command::new("sh").args(["-c", &ns.exec("busybox ping -c 3 -W 5 10.0.2.2")]),
        Duration::from_secs(60),
    );
    vm.wait_for("listening on 5001", Duration::from_secs(60));
    // Host -> guest, and the host's receiver for guest -> host, started before the guest sends.
    let tool_s = tool.to_str().expect("utf-8");
    let host_recv = Command::new("sh")
        .args(["-c", &ns.exec(&format!("{tool_s} recv 5002 --timeout 500"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host receiver");
    let host_sent = sh(&ns.exec(&format!(
        "{tool_s} send 10.0.2.2 5001 {TRANSFER} --seed 3 --timeout 60"
    )));
    let guest_received = vm.wait_for("received ", GUEST_TIMEOUT);
    let guest_sent = vm.wait_for("sent ", GUEST_TIMEOUT);
    let host_received = host_recv.wait_with_output().expect("host receiver output");
    let (code, stderr, console) = vm.finish(Duration::from_secs(120));

    assert_eq!(mac, "MAC 06:00:0a:00:02:02");
    assert!(
        host_ping.code() == Some(0),
        "host -> guest ping\n{}",
        host_ping.describe()
    );
    let host_sent = transfer_line(host_sent.lines().last().unwrap_or_default());
    let guest_received = transfer_line(&guest_received);
    assert_eq!(host_sent.0, TRANSFER);
    assert_eq!(
        guest_received, host_sent,
        "host -> guest: bytes or checksum differ"
    );
    let host_received_out = String::from_utf8_lossy(&host_received.stdout);
    let host_received_line = host_received_out
        .lines()
        .find(|l| l.starts_with("received "))
        .unwrap_or_else(|| panic!("host receiver: {host_received:?}"));
    let guest_sent = transfer_line(&guest_sent);
    assert_eq!(guest_sent.0, TRANSFER);
    assert_eq!(
        transfer_line(host_received_line),
        guest_sent,
        "guest -> host: bytes or checksum differ"
    );
    assert!(
        console.iter().any(|l| l == "GUEST-DONE"),
        "{}",
        console.join("\n")
    );
    assert_eq!(code, Some(0), "vmctl exit; stderr:\n{stderr}");
    eprintln!("host->guest: {host_sent:?}; guest->host: {guest_sent:?}");
}

#[test]
fn a_tap_vmctl_creates_is_up_survives_a_driver_reset_and_is_gone_after() {
    skip_if!(linux_root_unavailable());
    let ns = Netns::new("ntap");
    // Ping until the host side is configured; then the driver is unbound and bound again (a
    // device reset and a second activation) and the link must work as before.
    let script = "up() { ip link set eth0 up && ip addr add 10.0.3.2/24 dev eth0; }; \
                  pings() { i=0; while [ $i -lt 120 ]; do ping -c 1 -W 1 10.0.3.1 >/dev/null 2>&1 \
                  && return 0; i=$((i+1)); done; return 1; }; \
                  up; echo GUEST-READY; pings || { echo GUEST-PING-FAILED; exit 1; }; \
                  echo GUEST-PING-OK; dev=$(basename $(readlink /sys/class/net/eth0/device)); \
                  echo $dev > /sys/bus/virtio/drivers/virtio_net/unbind; \
                  echo $dev > /sys/bus/virtio/drivers/virtio_net/bind; \
                  up; pings || { echo GUEST-REBIND-PING-FAILED; exit 1; }; echo GUEST-REBIND-PING-OK";
    let mut vm = start_vm(
        &ns,
        &[
            "--kernel",
            vmlinux().to_str().expect("utf-8"),
            "--net",
            "tap=vmtap7",
        ],
        script,
    );

    vm.wait_for("GUEST-READY", Duration::from_secs(120));
    let present = ns.has_link("vmtap7");
    let flags = sh(&ns.exec("cat /sys/class/net/vmtap7/flags"));
    // The user configures the host side of a tap vmctl created.
    sh(&ns.exec("ip addr add 10.0.3.1/24 dev vmtap7"));
    vm.wait_for("GUEST-PING-OK", Duration::from_secs(180));
    vm.wait_for("GUEST-REBIND-PING-OK", Duration::from_secs(180));
    let (code, stderr, _) = vm.finish(Duration::from_secs(60));
    let gone = !ns.has_link("vmtap7");

    assert!(present, "vmctl did not create the tap");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).expect("flags");
    assert_ne!(flags & 1, 0, "the tap vmctl created is not up");
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(stderr.trim().is_empty(), "vmctl printed: {stderr}");
    assert!(gone, "the tap vmctl created outlived the VM");
}

/// A failed `vmctl boot` with a virtio-net flag: one `vmctl: ` line that says `words`.
fn assert_one_line_error(out: &Outcome, code: i32, words: &[&str]) {
    out.assert_no_panic();
    out.assert_code(code);
    let line = out.single_error_line().to_lowercase();
    for w in words {
        assert!(
            line.contains(&w.to_lowercase()),
            "{w:?} missing from {line:?}"
        );
    }
}

fn boot_tiny_with(prefix: &[&str], net: &str) -> Outcome {
    let exit = guest("exit");
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .arg(vmctl())
        .args(["boot", "--kernel"])
        .arg(exit)
        .args(["--net", net]);
    run(&mut cmd, Duration::from_secs(60))
}

#[test]
fn a_bad_mac_is_one_clear_error_line() {
    let out = run(
        Command::new(vmctl()).args([
            "boot",
            "--kernel",
            "/nonexistent",
            "--net",
            "tap=t0,mac=06:00:zz:00:00:01",
        ]),
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, 2, &["06:00:zz:00:00:01", "mac"]);

    let out = run(
        Command::new(vmctl()).args([
            "boot",
            "--kernel",
            "/nonexistent",
            "--net",
            "tap=t0,mac=01:00:5e:00:00:01",
        ]),
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, 2, &["multicast"]);
}

#[test]
fn no_tun_device_is_one_clear_error_line() {
    skip_if!(not_root());
    skip_if!(kvm_unusable());
    // A private mount namespace with an empty tmpfs over /dev/net: no /dev/net/tun.
    let out = boot_tiny_with(
        &[
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            r#"mkdir -p /dev/net && mount -t tmpfs none /dev/net && exec "$0" "$@""#,
        ],
        "tap=vmtap9",
    );

    assert_one_line_error(&out, 125, &["/dev/net/tun", "no such file", "tun module"]);
}

#[test]
fn an_interface_that_is_not_a_tap_is_one_clear_error_line() {
    skip_if!(not_root());
    skip_if!(kvm_unusable());
    let ns = Netns::new("nlo");

    let out = boot_tiny_with(&["ip", "netns", "exec", &ns.0], "tap=lo");

    assert_one_line_error(&out, 125, &["lo", "not a tap"]);
}
