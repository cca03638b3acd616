//! virtio-blk with the real Linux driver: a file written on an ext4 disk in the guest reads back
//! on the host, a read-only disk refuses writes and stays unchanged byte for byte, GET_ID shows the
//! serial in sysfs, a raw read of the whole disk matches the host's checksum, discard punches holes
//! in a sparse image; and the errors a user meets for a bad `--disk` (these need any usable KVM).
//!
//! The Linux tests need a KVM that runs Linux (the test host), e2fsprogs (mkfs.ext4, debugfs) and
//! sha256sum on the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vmctl_tests::linux::{boot_linux, linux_unavailable, LINUX_TIMEOUT};
use vmctl_tests::{guest, kvm_unusable, run, skip_if, vmctl_boot, Outcome, TempDir};

/// Runs a shell command on the host, asserting it succeeds; returns its stdout.
fn sh(cmd: &str) -> String {
    let out = run(
        Command::new("sh").args(["-c", cmd]),
        Duration::from_secs(300),
    );
    assert!(
        !out.timed_out && out.code() == Some(0),
        "host command failed\n{}",
        out.describe()
    );
    out.stdout
}

fn sha256_file(path: &Path) -> String {
    sha256_of(&format!("cat '{}'", path.display()))
}

/// The sha256 of what `producer` writes to stdout.
fn sha256_of(producer: &str) -> String {
    sh(&format!("{producer} | sha256sum"))
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_string()
}

/// A file of `mib` MiB of pseudo-random bytes (plus `extra` bytes).
fn random_image(dir: &TempDir, name: &str, mib: u64, extra: u64) -> std::path::PathBuf {
    let p = dir.path().join(name);
    sh(&format!(
        "head -c {} /dev/urandom > '{}'",
        (mib << 20) + extra,
        p.display()
    ));
    p
}

/// An empty ext4 file system image of `mib` MiB.
fn ext4_image(dir: &TempDir, name: &str, mib: u64) -> std::path::PathBuf {
    let p = dir.path().join(name);
    sh(&format!(
        "truncate -s {mib}M '{0}' && mkfs.ext4 -q -F -E nodiscard '{0}'",
        p.display()
    ));
    p
}

/// Boots the guest with `args`, runs `script` with sh, and asserts it exited 0; returns stdout.
fn guest_sh(args: &[&str], script: &str) -> Outcome {
    let out = boot_linux(args, &["sh", "-c", script], LINUX_TIMEOUT);
    out.assert_no_panic();
    out.assert_code(0);
    out
}

/// The value of the last `KEY=value` line of the guest's output.
fn value(out: &Outcome, key: &str) -> String {
    let prefix = format!("{key}=");
    out.stdout
        .lines()
        .rev()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= line\n{}", out.describe()))
        .trim()
        .to_string()
}

#[test]
fn a_file_written_on_ext4_in_the_guest_reads_back_on_the_host() {
    skip_if!(linux_unavailable());
    // Arrange
    let dir = TempDir::new("blk-ext4");
    let img = ext4_image(&dir, "disk.img", 64);
    let disk = img.to_str().unwrap();
    // Act: 6 MiB of random data and a small file, written through the page cache, synced.
    let out = guest_sh(
        &["--disk", disk],
        "set -e; mkdir -p /mnt; mount -t ext4 /dev/vda /mnt; \
         head -c 6291456 /dev/urandom > /mnt/file; echo hello-from-the-guest > /mnt/small; \
         sync; echo SUM=$(sha256sum /mnt/file | cut -d' ' -f1); umount /mnt",
    );
    // Assert
    let guest_sum = value(&out, "SUM");
    let host_sum = sha256_of(&format!("debugfs -R 'cat /file' '{disk}' 2>/dev/null"));
    assert_eq!(guest_sum, host_sum, "{}", out.describe());
    let small = sh(&format!("debugfs -R 'cat /small' '{disk}' 2>/dev/null"));
    assert_eq!(small, "hello-from-the-guest\n");
    sh(&format!("e2fsck -fn '{disk}' >/dev/null"));
}

#[test]
fn a_read_only_disk_refuses_writes_and_stays_unchanged() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("blk-ro");
    let img = ext4_image(&dir, "ro.img", 32);
    sh(&format!(
        "echo read-only-content > '{0}/f' && debugfs -w -R 'write {0}/f /f' '{1}' >/dev/null 2>&1",
        dir.path().display(),
        img.display()
    ));
    let before = sha256_file(&img);
    let arg = format!("{},ro", img.display());
    // The kernel sees a read-only disk and refuses writes itself; with the flag forced off
    // (`blockdev --setrw`) a write reaches the device, which fails it with an I/O error.
    let out = guest_sh(
        &["--disk", &arg],
        "echo RO=$(cat /sys/block/vda/ro); \
         dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/dev/null; echo KERNEL_WRITE=$?; \
         blockdev --setrw /dev/vda; \
         dd if=/dev/zero of=/dev/vda bs=4096 count=1 seek=10 oflag=direct 2>/dev/null; \
         echo DEVICE_WRITE=$?; \
         mkdir -p /mnt; mount -t ext4 -o ro,noload /dev/vda /mnt && echo CONTENT=$(cat /mnt/f); \
         umount /mnt; true",
    );
    assert_eq!(value(&out, "RO"), "1", "{}", out.describe());
    assert_ne!(value(&out, "KERNEL_WRITE"), "0", "{}", out.describe());
    assert_ne!(value(&out, "DEVICE_WRITE"), "0", "{}", out.describe());
    assert_eq!(
        value(&out, "CONTENT"),
        "read-only-content",
        "{}",
        out.describe()
    );
    assert_eq!(sha256_file(&img), before, "the read-only image changed");
}

#[test]
fn get_id_shows_the_serial_in_sysfs() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("blk-serial");
    let a = random_image(&dir, "a.img", 1, 0);
    let b = random_image(&dir, "b.img", 1, 0);
    let b_arg = format!("{},serial=vmctl-test-0123456", b.display());
    let out = guest_sh(
        &["--disk", a.to_str().unwrap(), "--disk", &b_arg],
        "echo A=$(cat /sys/block/vda/serial); echo B=$(cat /sys/block/vdb/serial)",
    );
    assert_eq!(value(&out, "A"), "vmctl-disk0", "{}", out.describe());
    assert_eq!(value(&out, "B"), "vmctl-test-0123456", "{}", out.describe());
}

#[test]
fn a_raw_read_of_the_whole_disk_matches_the_host_checksum() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("blk-raw");
    // 48 MiB and 300 bytes: the partial last sector is not part of the disk.
    let img = random_image(&dir, "raw.img", 48, 300);
    let host_sum = sha256_of(&format!("head -c {} '{}'", 48u64 << 20, img.display()));
    let out = guest_sh(
        &["--disk", img.to_str().unwrap()],
        "echo SIZE=$(blockdev --getsize64 /dev/vda); \
         echo SUM=$(sha256sum /dev/vda | cut -d' ' -f1); \
         echo DIRECT=$(dd if=/dev/vda bs=1M iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)",
    );
    assert_eq!(value(&out, "SIZE"), (48u64 << 20).to_string());
    assert_eq!(value(&out, "SUM"), host_sum, "{}", out.describe());
    assert_eq!(value(&out, "DIRECT"), host_sum, "{}", out.describe());
}

#[test]
fn discard_punches_holes_in_the_image() {
    skip_if!(linux_unavailable());
    let dir = TempDir::new("blk-discard");
    let img = random_image(&dir, "sparse.img", 32, 0);
    sh(&format!("sync '{}'", img.display()));
    let blocks_before = std::fs::metadata(&img).unwrap().blocks();
    let tail_sum = sha256_of(&format!("tail -c {} '{}'", 16u64 << 20, img.display()));
    // Discard the first 16 MiB.
    let out = guest_sh(
        &["--disk", img.to_str().unwrap()],
        "echo GRAN=$(cat /sys/block/vda/queue/discard_granularity); \
         blkdiscard -o 0 -l 16777216 /dev/vda; echo DISCARD=$?; \
         echo ZERO=$(head -c 16777216 /dev/vda | tr -d '\\000' | wc -c)",
    );
    assert_eq!(value(&out, "GRAN"), "4096", "{}", out.describe());
    assert_eq!(value(&out, "DISCARD"), "0", "{}", out.describe());
    assert_eq!(value(&out, "ZERO"), "0", "{}", out.describe());
    let blocks_after = std::fs::metadata(&img).unwrap().blocks();
    // 16 MiB = 32768 512-byte blocks freed (allow for file system rounding).
    assert!(
        blocks_after + 30000 < blocks_before,
        "no holes: {blocks_before} -> {blocks_after} blocks\n{}",
        out.describe()
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 32 << 20);
    let zero_sum = sha256_of(&format!("head -c {} /dev/zero", 16u64 << 20));
    let head_sum = sha256_of(&format!("head -c {} '{}'", 16u64 << 20, img.display()));
    assert_eq!(head_sum, zero_sum, "the discarded range reads as zeroes");
    let tail_after = sha256_of(&format!("tail -c {} '{}'", 16u64 << 20, img.display()));
    assert_eq!(tail_after, tail_sum, "the rest is untouched");
}

/// vmctl refuses a disk it cannot use with one `vmctl: ` line and exit status 125, before the
/// guest runs (a tiny guest: any usable KVM will do).
#[test]
fn bad_disks_are_one_line_errors() {
    skip_if!(kvm_unusable());
    let dir = TempDir::new("blk-bad");
    let empty = dir.file("empty.img", b"");
    let exit = guest("exit");
    let exit = exit.to_str().unwrap();
    let cases: [(String, &str); 5] = [
        (
            "/nonexistent/vmctl/x.img".into(),
            "vmctl: cannot open /nonexistent/vmctl/x.img: No such file or directory",
        ),
        (empty.display().to_string(), "is empty"),
        (dir.path().display().to_string(), "Is a directory"),
        (format!("{},ro", dir.path().display()), "not a disk image"),
        ("/dev/null,ro".into(), "/dev/null is not a disk image"),
    ];
    for (disk, expect) in cases {
        let out = vmctl_boot(["--kernel", exit, "--disk", &disk]);
        out.assert_no_panic();
        out.assert_code(125);
        let line = out.single_error_line();
        assert!(line.contains(expect), "{line:?} lacks {expect:?}");
    }
}
