//! `vmctl boot` with the project's real Linux kernel and initramfs: both image formats, the
//! workload's exit status, SMP, guest memory size and a large console stream. These need
//! hardware-style KVM: on kvm-pvm they skip, and `make test` runs them inside the test host.

use std::time::Duration;

use vmctl_tests::linux::{boot_linux, bzimage, linux_unavailable, vmlinux, LINUX_TIMEOUT};
use vmctl_tests::skip_if;

#[test]
fn vmlinux_boots_and_runs_the_command() {
    skip_if!(linux_unavailable());
    let kernel = vmlinux();

    let run = boot_linux(
        &["--kernel", kernel.to_str().unwrap()],
        &["uname", "-sr"],
        LINUX_TIMEOUT,
    );

    run.assert_code(0);
    assert!(
        run.stdout.trim_end().starts_with("Linux 6."),
        "uname did not print\n{}",
        run.describe()
    );
}

#[test]
fn bzimage_boots_and_runs_the_command() {
    skip_if!(linux_unavailable());
    let kernel = bzimage();

    let run = boot_linux(
        &["--kernel", kernel.to_str().unwrap()],
        &["cat", "/proc/cmdline"],
        LINUX_TIMEOUT,
    );

    run.assert_code(0);
    assert!(
        run.stdout
            .starts_with("console=ttyS0 reboot=k panic=-1 quiet vmctl.cmd="),
        "the guest did not see the default command line\n{}",
        run.describe()
    );
}

#[test]
fn exit_status_0_and_3_come_back() {
    skip_if!(linux_unavailable());

    let ok = boot_linux(&[], &["true"], LINUX_TIMEOUT);
    let three = boot_linux(&[], &["sh", "-c", "exit 3"], LINUX_TIMEOUT);

    ok.assert_code(0);
    three.assert_code(3);
}

#[test]
fn death_by_signal_is_128_plus_n() {
    skip_if!(linux_unavailable());

    let run = boot_linux(&[], &["sh", "-c", "kill -TERM $$"], LINUX_TIMEOUT);

    run.assert_code(128 + 15);
}

#[test]
fn missing_program_is_127() {
    skip_if!(linux_unavailable());

    let run = boot_linux(&[], &["/no/such/program"], LINUX_TIMEOUT);

    run.assert_code(127);
}

#[test]
fn arguments_with_spaces_and_quotes_arrive_intact() {
    skip_if!(linux_unavailable());
    let arg = "two words, \"quotes\" and 'single' = ok";

    let run = boot_linux(&[], &["printf", "%s|", arg, "x"], LINUX_TIMEOUT);

    run.assert_code(0);
    assert_eq!(run.stdout, format!("{arg}|x|"), "{}", run.describe());
}

#[test]
fn smp_guest_sees_every_vcpu() {
    skip_if!(linux_unavailable());

    for cpus in ["2", "4"] {
        let run = boot_linux(&["--cpus", cpus], &["nproc"], LINUX_TIMEOUT);

        run.assert_code(0);
        assert_eq!(run.stdout.trim(), cpus, "{}", run.describe());
    }
}

#[test]
fn memtotal_matches_memory() {
    skip_if!(linux_unavailable());

    for mib in [128u64, 512] {
        let run = boot_linux(
            &["--memory", &mib.to_string()],
            &["grep", "MemTotal", "/proc/meminfo"],
            LINUX_TIMEOUT,
        );

        run.assert_code(0);
        let kib: u64 = run
            .stdout
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MemTotal\n{}", run.describe()));
        // MemTotal is RAM minus what the kernel image and early allocations took.
        assert!(
            kib <= mib * 1024 && kib >= (mib - 32) * 1024,
            "MemTotal {kib} kB for --memory {mib}\n{}",
            run.describe()
        );
    }
}

#[test]
fn one_mib_of_console_output_arrives_complete_and_in_order() {
    skip_if!(linux_unavailable());
    // 1..=170000, one number a line: 1,078,895 bytes.
    let expected: String = (1..=170_000).map(|n| format!("{n}\n")).collect();
    assert!(expected.len() > 1 << 20);

    let run = boot_linux(&[], &["seq", "1", "170000"], Duration::from_secs(900));

    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.len(), expected.len(), "byte count differs");
    assert!(run.stdout == expected, "bytes differ or are out of order");
}
