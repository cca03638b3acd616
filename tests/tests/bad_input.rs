//! `vmctl boot` with bad input: every case ends with a non-zero exit (125 for vmctl's own errors,
//! 2 for a clap usage error), exactly one stderr line `vmctl: <the problem>`, and no panic or
//! backtrace.
//!
//! The kernel, initrd and memory checks need a usable /dev/kvm (vmctl may open it before it looks
//! at its input, and then a missing /dev/kvm would be the error reported): they skip without it.

use std::path::Path;
use std::process::Command;
use vmctl_tests::{
    guest, kvm_unusable, mentions_any, not_root, run, skip_if, vmctl, vmctl_boot, Outcome, TempDir,
    BOOT_TIMEOUT,
};

/// Asserts `run` failed as vmctl's own error: exit 125, one `vmctl: ` line naming the problem (it
/// contains every one of `all` and at least one of `any`), no panic. Returns the line.
fn assert_vmctl_error(run: &Outcome, all: &[&str], any: &[&str]) -> String {
    run.assert_no_panic();
    run.assert_code(125);
    check_line(run, all, any)
}

fn check_line(run: &Outcome, all: &[&str], any: &[&str]) -> String {
    let line = run.single_error_line();
    for word in all {
        assert!(
            mentions_any(line, &[word]),
            "the error line does not name {word:?}\n{}",
            run.describe()
        );
    }
    assert!(
        any.is_empty() || mentions_any(line, any),
        "the error line says none of {any:?}\n{}",
        run.describe()
    );
    line.to_string()
}

/// A value check vmctl may leave to clap (exit 2) or do itself (exit 125): either way one
/// `vmctl: ` line naming the flag, and no panic.
fn assert_rejected_value(run: &Outcome, all: &[&str], any: &[&str]) {
    run.assert_no_panic();
    assert!(!run.timed_out, "timed out\n{}", run.describe());
    assert!(
        matches!(run.code(), Some(125) | Some(2)),
        "expected exit code 125 (vmctl's error) or 2 (usage error)\n{}",
        run.describe()
    );
    check_line(run, all, any);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn missing_kernel_is_named() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("missing-kernel");
    let kernel = dir.path().join("no-such-kernel");

    let run = vmctl_boot(["--kernel", path_str(&kernel)]);

    assert_vmctl_error(
        &run,
        &[path_str(&kernel)],
        &["no such file", "not found", "does not exist", "missing"],
    );
}

#[test]
fn unreadable_kernel_is_named() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("unreadable-kernel");
    let kernel = dir.path().join("kernel");
    std::fs::copy(guest("exit"), &kernel).expect("copying the guest");
    set_mode(&kernel, 0o000);
    let mut cmd = if not_root().is_none() {
        // root reads mode-000 files: drop the capabilities that let it (it keeps /dev/kvm, which
        // root owns with rw for the owner)
        let mut c = Command::new("setpriv");
        c.args([
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
        ])
        .arg(vmctl());
        c
    } else {
        Command::new(vmctl())
    };
    cmd.args(["boot", "--kernel", path_str(&kernel)]);

    let run = run(&mut cmd, BOOT_TIMEOUT);

    assert_vmctl_error(
        &run,
        &[path_str(&kernel)],
        &[
            "permission denied",
            "cannot read",
            "can't read",
            "unreadable",
            "not readable",
        ],
    );
}

#[test]
fn kernel_path_that_is_a_directory_is_named() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("dir-kernel");

    let run = vmctl_boot(["--kernel", path_str(dir.path())]);

    assert_vmctl_error(&run, &[path_str(dir.path())], &["directory"]);
}

#[test]
fn text_file_is_not_a_kernel() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("text-kernel");
    let kernel = dir.file(
        "notes.txt",
        b"this is a text file, not a kernel\n".repeat(64).as_slice(),
    );

    let run = vmctl_boot(["--kernel", path_str(&kernel)]);

    assert_vmctl_error(&run, &[path_str(&kernel), "kernel"], &[]);
}

#[test]
fn empty_file_is_not_a_kernel() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("empty-kernel");
    let kernel = dir.file("empty", b"");

    let run = vmctl_boot(["--kernel", path_str(&kernel)]);

    assert_vmctl_error(&run, &[path_str(&kernel), "kernel"], &[]);
}

#[test]
fn truncated_elf_is_not_a_kernel() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("truncated-kernel");
    let whole = std::fs::read(guest("exit")).expect("reading the exit guest");
    // The ELF and program headers (64 + 2 * 56 bytes) survive; the segments they describe do not.
    let kernel = dir.file("truncated.elf", &whole[..200]);

    let run = vmctl_boot(["--kernel", path_str(&kernel)]);

    assert_vmctl_error(&run, &[path_str(&kernel), "kernel"], &[]);
}

#[test]
fn missing_initrd_is_named() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("missing-initrd");
    let initrd = dir.path().join("no-such-initrd");

    let run = vmctl_boot([
        "--kernel",
        path_str(&guest("exit")),
        "--initrd",
        path_str(&initrd),
    ]);

    assert_vmctl_error(
        &run,
        &[path_str(&initrd)],
        &["no such file", "not found", "does not exist", "missing"],
    );
}

#[test]
fn initrd_too_big_for_guest_memory_is_named() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("big-initrd");
    let initrd = dir.path().join("big.cpio");
    // 64 MiB (sparse: costs no disk) into a 32 MiB guest
    std::fs::File::create(&initrd)
        .and_then(|f| f.set_len(64 << 20))
        .expect("creating a sparse initrd");

    let run = vmctl_boot([
        "--kernel",
        path_str(&guest("exit")),
        "--initrd",
        path_str(&initrd),
        "--memory",
        "32",
    ]);

    assert_vmctl_error(
        &run,
        &["initrd"],
        &[
            "fit",
            "too big",
            "too large",
            "exceed",
            "memory",
            "room",
            "space",
        ],
    );
}

#[test]
fn memory_of_1_mib_is_too_small() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel", path_str(&guest("exit")), "--memory", "1"]);

    assert_rejected_value(&run, &["memory"], &["small", "least", "minimum", "16"]);
}

#[test]
fn memory_beyond_the_hosts_ram_is_refused() {
    skip_if!(kvm_unusable());
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("reading /proc/meminfo");
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    let too_much = (total_kib / 1024 * 2 + 1024).to_string();

    let run = vmctl_boot(["--kernel", path_str(&guest("exit")), "--memory", &too_much]);

    assert_rejected_value(
        &run,
        &["memory"],
        &[
            "host",
            "ram",
            "exceed",
            "more than",
            "total",
            "available",
            "too large",
            "too big",
        ],
    );
}

#[test]
fn pmem_too_large_for_the_hosts_kvm_bookkeeping_is_refused_fast() {
    // Arrange: a sparse 8 TiB file; KVM would spend ~20 GiB of host kernel memory mapping it.
    skip_if!(kvm_unusable());
    let dir = TempDir::new("pmem-huge");
    let huge = dir.path().join("huge.img");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(8 << 40))
        .expect("creating a sparse 8 TiB file");
    let started = std::time::Instant::now();

    // Act
    let run = vmctl_boot([
        "--kernel",
        path_str(&guest("exit")),
        "--pmem",
        path_str(&huge),
    ]);

    // Assert
    assert_vmctl_error(&run, &["pmem", "8192 GiB", "--disk"], &["kernel memory"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "refusing took {:?}",
        started.elapsed()
    );
}

#[test]
fn zero_cpus_are_refused() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel", path_str(&guest("exit")), "--cpus", "0"]);

    assert_rejected_value(&run, &["cpu"], &[]);
}

#[test]
fn a_thousand_cpus_are_refused() {
    skip_if!(kvm_unusable());

    let run = vmctl_boot(["--kernel", path_str(&guest("exit")), "--cpus", "1000"]);

    assert_rejected_value(&run, &["cpu"], &[]);
}

#[test]
fn malformed_memory_value_is_a_usage_error() {
    let run = vmctl_boot(["--kernel", "/nonexistent", "--memory", "lots"]);

    run.assert_no_panic();
    run.assert_code(2);
    check_line(&run, &["--memory", "lots"], &[]);
}

#[test]
fn missing_dev_kvm_is_named() {
    skip_if!(not_root());
    skip_if!(kvm_unusable());
    skip_if!(unshare_unusable());
    // A private mount namespace with an empty tmpfs over /dev: no /dev/kvm.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--",
        "sh",
        "-c",
        r#"mount -t tmpfs none /dev && exec "$0" "$@""#,
    ])
    .arg(vmctl())
    .args(["boot", "--kernel", path_str(&guest("exit"))]);

    let run = run(&mut cmd, BOOT_TIMEOUT);

    assert_vmctl_error(
        &run,
        &["/dev/kvm"],
        &[
            "no such file",
            "not found",
            "does not exist",
            "missing",
            "not available",
        ],
    );
}

#[test]
fn no_permission_on_dev_kvm_is_named() {
    skip_if!(not_root());
    skip_if!(kvm_unusable());
    skip_if!(kvm_open_to_others());
    // As nobody, with vmctl and the guest copied where nobody can read them.
    let dir = TempDir::new("kvm-perm");
    set_mode(dir.path(), 0o755);
    let bin = dir.path().join("vmctl");
    let kernel = dir.path().join("exit");
    std::fs::copy(vmctl(), &bin).expect("copying vmctl");
    std::fs::copy(guest("exit"), &kernel).expect("copying the guest");
    set_mode(&bin, 0o755);
    set_mode(&kernel, 0o644);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["boot", "--kernel", path_str(&kernel)]);

    let run = run(&mut cmd, BOOT_TIMEOUT);

    assert_vmctl_error(
        &run,
        &["/dev/kvm"],
        &["permission", "denied", "access", "not allowed"],
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Why `unshare --mount` cannot be used here (e.g. in a container without CAP_SYS_ADMIN), if so.
fn unshare_unusable() -> Option<String> {
    let probe = run(
        Command::new("unshare").args(["--mount", "--", "mount", "-t", "tmpfs", "none", "/mnt"]),
        BOOT_TIMEOUT,
    );
    (probe.code() != Some(0)).then(|| {
        format!(
            "`unshare --mount` with a tmpfs mount does not work here: {}",
            probe.stderr.trim()
        )
    })
}

/// Why nobody would be allowed to open /dev/kvm anyway (so the test has no error to provoke).
fn kvm_open_to_others() -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/dev/kvm").ok()?.permissions().mode();
    (mode & 0o006 != 0).then(|| format!("/dev/kvm is open to everyone (mode {:o})", mode & 0o777))
}
