//! `vmctl boot` with the tiny bare-metal test guests (resources/testguests/), on this machine's
//! /dev/kvm: serial output, the exit-status port, SMP start-up, boot markers and `--timings`, the
//! bzImage loader and 64-bit boot protocol, the normal end of a VM by i8042 reset, the crash
//! report of a triple fault, the report of a KVM exit the VMM cannot serve, SIGTERM ending a VM of
//! spinning vCPUs quickly, and a guest flooding the console and the marker port at a reader that
//! stalled.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmctl_tests::{
    guest, hex_digits, kvm_unusable, mentions_any, on_kvm_pvm, parse_timings, skip_if, vmctl,
    vmctl_boot, BOOT_TIMEOUT,
};

/// The kernel command line the `exit` guest printed (`exit: cmdline: ...`).
fn printed_cmdline(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("exit: cmdline: "))
}

/// Sends SIGTERM to a running `vmctl boot` and waits for it (failing past BOOT_TIMEOUT: a vCPU
/// that never gets back to its orders). Returns whether the kill was sent, the exit status, the
/// time from the signal to the exit, and stderr.
fn terminate(
    child: &mut std::process::Child,
) -> (bool, std::process::ExitStatus, Duration, String) {
    let start = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for vmctl") {
            break status;
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            panic!("vmctl did not end within {BOOT_TIMEOUT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = start.elapsed();
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    (killed, status, took, stderr)
}

#[test]
fn hello_64bit_elf_prints_on_com1_and_exits_0() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel".as_ref(), guest("hello").as_os_str()]);

    run.assert_code(0);
    assert!(
        run.stdout.lines().any(|l| l == "hello from a 64-bit guest"),
        "the guest's line is missing from stdout\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn pvh_guest_sees_the_default_cmdline_and_exits_0() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel".as_ref(), guest("exit").as_os_str()]);

    run.assert_code(0);
    assert_eq!(
        printed_cmdline(&run.stdout),
        Some("console=ttyS0 reboot=k panic=-1 quiet"),
        "the guest did not get docs/design.md's default command line\n{}",
        run.describe()
    );
}

fn check_exit_status(status: u8) {
    let cmdline = format!("status={status}");

    let run = vmctl_boot([
        "--kernel".as_ref(),
        guest("exit").as_os_str(),
        "--cmdline".as_ref(),
        cmdline.as_ref(),
    ]);

    run.assert_code(i32::from(status));
    assert_eq!(
        printed_cmdline(&run.stdout),
        Some(cmdline.as_str()),
        "--cmdline must replace the command line whole (nothing added without devices)\n{}",
        run.describe()
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("exit: status {status}")),
        "the guest's report is missing\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn exit_port_status_0_through_cmdline() {
    skip_if!(kvm_unusable());
    check_exit_status(0);
}

#[test]
fn exit_port_status_3_through_cmdline() {
    skip_if!(kvm_unusable());
    check_exit_status(3);
}

#[test]
fn exit_port_status_255_through_cmdline() {
    skip_if!(kvm_unusable());
    check_exit_status(255);
}

fn check_smp(cpus: usize) {
    let cpus_arg = cpus.to_string();

    let run = vmctl_boot([
        "--kernel".as_ref(),
        guest("smp").as_os_str(),
        "--cpus".as_ref(),
        cpus_arg.as_ref(),
    ]);

    run.assert_code(i32::try_from(cpus).expect("a small count"));
    let mut seen = vec![0usize; cpus];
    for line in run.stdout.lines() {
        if let Some(id) = line
            .strip_prefix("cpu ")
            .and_then(|r| r.strip_suffix(" up"))
        {
            let id: usize = id.parse().expect("a decimal APIC ID");
            assert!(
                id < cpus,
                "APIC ID {id} reported with --cpus {cpus}\n{}",
                run.describe()
            );
            seen[id] += 1;
        }
    }
    for (id, count) in seen.iter().enumerate() {
        assert_eq!(
            *count,
            1,
            "`cpu {id} up` should appear exactly once\n{}",
            run.describe()
        );
    }
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("smp: {cpus} cpus up")),
        "the BSP's count is missing\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn smp_1_cpu_reports_in() {
    skip_if!(kvm_unusable());
    check_smp(1);
}

#[test]
fn smp_2_cpus_all_report_in_via_init_sipi() {
    skip_if!(kvm_unusable());
    check_smp(2);
}

#[test]
fn smp_4_cpus_all_report_in_via_init_sipi() {
    skip_if!(kvm_unusable());
    check_smp(4);
}

#[test]
fn timings_show_vmm_ready_first_entry_markers_and_guest_exit_in_order() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot([
        "--kernel".as_ref(),
        guest("marker").as_os_str(),
        "--timings".as_ref(),
    ]);

    run.assert_code(0);
    let timings = parse_timings(&run.stderr);
    let expected = [
        "vmm ready",
        "vcpu 0 first entry",
        "marker mmio 0xc0000000 = 123",
        "marker port 0x80 = 0x41",
        "marker port 0x80 = 0x61",
        "guest exit: status 0",
    ];
    let mut last_ms = 0.0;
    for event in expected {
        let t = timings
            .iter()
            .find(|t| t.event.starts_with(event))
            .unwrap_or_else(|| panic!("no `{event}` line in --timings\n{}", run.describe()));
        assert!(
            t.ms >= last_ms,
            "`{event}` at {} ms comes before the previous event ({last_ms} ms)\n{}",
            t.ms,
            run.describe()
        );
        assert!(
            t.ms <= run.elapsed.as_secs_f64() * 1000.0,
            "`{event}` at {} ms is later than the whole run\n{}",
            t.ms,
            run.describe()
        );
        last_ms = t.ms;
    }
    assert_eq!(
        timings
            .iter()
            .filter(|t| t.event.starts_with("marker"))
            .count(),
        3,
        "exactly the guest's three markers\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn bzimage_64bit_boot_protocol_gets_its_cmdline() {
    skip_if!(kvm_unusable());
    let cmdline = "bzimage test cmdline 42";

    let run = vmctl_boot([
        "--kernel".as_ref(),
        guest("bzimage").as_os_str(),
        "--cmdline".as_ref(),
        cmdline.as_ref(),
    ]);

    run.assert_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("bzimage: cmdline: {cmdline}")),
        "the bzImage guest did not print its command line from the zero page\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn triple_fault_is_reported_as_a_crash_with_the_registers_and_status_123() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel".as_ref(), guest("triple-fault").as_os_str()]);

    run.assert_code(123);
    assert!(
        run.stdout.contains("triple-fault: empty IDT, then ud2"),
        "the guest did not run\n{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("still running"),
        "the fault did not end the VM\n{}",
        run.describe()
    );
    assert!(
        run.stderr
            .contains("vmctl: the guest crashed: triple fault on vcpu 0"),
        "no crash report\n{}",
        run.describe()
    );
    for register in [
        "rip=0x",
        "rsp=0x",
        "rflags=0x",
        "cr0=0x",
        "cr3=0x",
        "cr4=0x",
        "efer=0x",
    ] {
        assert!(
            run.stderr.contains(register),
            "the crash report lacks {register}\n{}",
            run.describe()
        );
    }
    // The state is the guest's at the fault (rip on its ud2, its empty IDT loaded), unless the
    // host's KVM reset the vCPU first (AMD SVM: the test host), which the report must then say.
    if run.stderr.contains("the registers at the fault are lost") {
        assert!(
            run.stderr.contains("rip=0x000000000000fff0") && run.stderr.contains("cs=0xf000"),
            "the report says the registers are lost, but they are not the reset state\n{}",
            run.describe()
        );
    } else {
        assert!(
            run.stderr.contains("instruction bytes at rip: 0f 0b"),
            "rip is not on the faulting ud2\n{}",
            run.describe()
        );
        assert!(
            run.stderr.contains("idt=0x0/0x0"),
            "the guest's empty IDT is not in the report\n{}",
            run.describe()
        );
    }
    run.assert_no_panic();
}

#[test]
fn i8042_reset_ends_the_vm_with_status_0() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel".as_ref(), guest("reset").as_os_str()]);

    run.assert_code(0);
    assert!(
        run.stdout.contains("reset: writing 0xfe to port 0x64"),
        "the guest did not run\n{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("still running"),
        "the reset did not end the VM\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn unservable_kvm_exit_is_reported_with_reason_rip_bytes_and_hint() {
    skip_if!(kvm_unusable());
    skip_if!((!on_kvm_pvm()).then(|| {
        "this KVM is not kvm-pvm: it executes xrstor, so the guest has nothing to report"
            .to_string()
    }));

    let run = vmctl_boot(["--kernel".as_ref(), guest("emulation-failure").as_os_str()]);

    run.assert_code(125);
    // The guest prints where the instruction is: "emulation-failure: xrstor at 0x00100046, ..."
    let rip = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("emulation-failure: xrstor at 0x"))
        .and_then(|r| r.split(',').next())
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("the guest did not print its RIP\n{}", run.describe()));
    let line = run.single_error_line();
    assert!(
        mentions_any(line, &["internal error", "internal_error", "emulation"]),
        "the message does not name the exit reason\n{}",
        run.describe()
    );
    assert!(
        line.split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|tok| {
                let tok = tok.trim_start_matches("0x");
                u64::from_str_radix(tok, 16).ok()
            })
            .any(|v| v == rip),
        "the message does not give the RIP {rip:#x}\n{}",
        run.describe()
    );
    assert!(
        hex_digits(line).contains("0fae2f"),
        "the message does not show the instruction bytes 0f ae 2f (xrstor)\n{}",
        run.describe()
    );
    assert!(
        mentions_any(line, &["pvm"]),
        "the message has no hint that this host's KVM (kvm-pvm) cannot run such guests\n{}",
        run.describe()
    );
    run.assert_no_panic();
}

#[test]
fn sigterm_ends_a_vm_of_8_spinning_vcpus_quickly_with_128_plus_15() {
    skip_if!(kvm_unusable());
    let mut child = Command::new(vmctl())
        .args(["boot", "--cpus", "8", "--kernel"])
        .arg(guest("spin"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmctl starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    // The BSP prints this once it has sent INIT-SIPI-SIPI; the APs spin a moment later.
    while !seen.contains("spin: spinning") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("vmctl ended before the guest spun; stdout:\n{seen}");
        }
        seen.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(200));

    let (killed, status, took, stderr) = terminate(&mut child);

    println!(
        "SIGTERM to exit of vmctl with 8 spinning vCPUs: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(killed);
    assert_eq!(status.code(), Some(128 + 15), "stderr: {stderr}");
    assert!(
        took < Duration::from_secs(2),
        "vmctl took {took:?} to end on SIGTERM; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn a_guest_flooding_console_and_markers_at_a_stalled_reader_stays_stoppable_and_bounded() {
    // Arrange: the test reads the first 8 KiB of the console (whole lines, in order: each
    // `rep outsb` is split into its bytes) and 64 KiB more, then stops reading, so the console's
    // reader stalls, and waits until the guest has had time to overrun the console's buffer.
    skip_if!(kvm_unusable());
    let mut child = Command::new(vmctl())
        .args(["boot", "--timings", "--kernel"])
        .arg(guest("flood"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vmctl starts");
    let mut first = vec![0u8; 8192];
    let read = child
        .stdout
        .as_mut()
        .expect("piped stdout")
        .read_exact(&mut first);
    let line = "flood: 64 bytes of console text, sent 4 KiB at a time .........\n";
    assert!(read.is_ok(), "the console ended early: {read:?}");
    assert_eq!(String::from_utf8_lossy(&first), line.repeat(128));
    // The guest's pace, while the test keeps up with it, tells how long it needs to fill the pipe
    // and the console's 1 MiB buffer once the reader stalls (a nested test host is far slower).
    let mut more = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let read = child
        .stdout
        .as_mut()
        .expect("piped stdout")
        .read_exact(&mut more);
    assert!(read.is_ok(), "the console ended early: {read:?}");
    let bytes_per_sec = more.len() as f64 / started.elapsed().as_secs_f64().max(1e-3);
    let to_fill = Duration::from_secs_f64((1088.0 * 1024.0 / bytes_per_sec).min(90.0));
    let rss_kib = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    std::thread::sleep(to_fill * 2 + Duration::from_secs(1));
    let rss_early = rss_kib(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let rss_late = rss_kib(child.id());

    // Act
    let (killed, status, took, stderr) = terminate(&mut child);

    // Assert
    println!(
        "SIGTERM to exit with a stalled console reader: {:.1} ms; RSS {rss_early} then {rss_late} KiB",
        took.as_secs_f64() * 1e3
    );
    assert!(killed);
    assert_eq!(status.code(), Some(128 + 15), "stderr: {stderr}");
    // The console gives a stalled reader 2 s (vmm's CONSOLE_PATIENCE) before dropping the rest.
    assert!(
        took < Duration::from_secs(4),
        "vmctl took {took:?} to end; stderr: {stderr}"
    );
    // By now the guest has written more than the pipe and the buffer hold, and 72 KiB of text
    // came with 1152 markers.
    assert!(
        stderr.contains("bytes of console output were dropped"),
        "no report of the dropped console output (guest pace {bytes_per_sec:.0} B/s); stderr: {stderr}"
    );
    assert!(
        stderr.contains("later events not kept (at most 1024 are)"),
        "the timeline did not stop at its bound; stderr: {stderr}"
    );
    assert!(
        rss_late <= rss_early + 1024,
        "vmctl's RSS grew from {rss_early} to {rss_late} KiB while the guest flooded"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
