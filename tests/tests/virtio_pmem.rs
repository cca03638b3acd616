//! virtio-pmem with the real Linux driver (virtio_pmem + nd_pmem): erofs and ext4 images mounted
//! with `-o dax` in the guest, checksums against the host's, DAX really on (mount options, the
//! block queue's dax flag, statx's DAX attribute per file), writes on a read-write pmem reaching
//! the host file, and a read-only pmem leaving its file unchanged. Linux tests skip on kvm-pvm and
//! run inside the test host (`make test`). The bad-input tests use a tiny guest and run anywhere
//! with a usable /dev/kvm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vmctl_tests::linux::{boot_linux, initramfs_with, linux_unavailable, LINUX_TIMEOUT};
use vmctl_tests::{
    find_guest_tool, guest, kvm_unusable, run, skip_if, vmctl_boot, Outcome, TempDir,
};

/// Runs a host tool, asserting it succeeds; returns its stdout.
fn host(program: &str, args: &[&str]) -> String {
    let out = run(Command::new(program).args(args), Duration::from_secs(120));
    assert!(
        !out.timed_out && out.code() == Some(0),
        "{program} failed\n{}",
        out.describe()
    );
    out.stdout
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why the host tools these tests need are missing, if they are.
fn tools_missing(tools: &[&str]) -> Option<String> {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("host tools missing: {}", missing.join(", ")))
}

fn sha256(path: &Path) -> String {
    host("sha256sum", &[path.to_str().expect("utf-8 path")])
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_string()
}

/// Deterministic bytes that do not compress (xorshift).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An ext4 image of `size` (e.g. "64M") with 4 KiB blocks (DAX needs the page size) holding
/// `dir`'s files.
fn mkfs_ext4(image: &Path, dir: &Path, size: &str) {
    host(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-d",
            dir.to_str().unwrap(),
            image.to_str().unwrap(),
            size,
        ],
    );
}

/// An uncompressed erofs image of `dir`, without inline tails (erofs serves only "flat plain"
/// files through DAX).
fn mkfs_erofs(image: &Path, dir: &Path) {
    host(
        "mkfs.erofs",
        &[
            "-E",
            "noinline_data",
            image.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
}

/// The values of the guest's `TAG rest...` lines.
fn tagged<'a>(out: &'a Outcome, tag: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix(tag))
        .filter_map(|rest| rest.strip_prefix(' '))
        .collect()
}

/// The guest boots with the pmem flags, runs `script` (sh -c) with `dax-check` in /bin.
fn boot_with_pmem(pmem: &[String], script: &str) -> Outcome {
    let tool = find_guest_tool("dax-check").expect("checked by the caller");
    let (_dir, initrd) = initramfs_with(&[("bin/dax-check", &tool)]);
    let mut args: Vec<String> = vec!["--initrd".into(), initrd.display().to_string()];
    for p in pmem {
        args.push("--pmem".into());
        args.push(p.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    boot_linux(&args, &["sh", "-c", script], LINUX_TIMEOUT)
}

fn linux_skip_reason() -> Option<String> {
    linux_unavailable()
        .or_else(|| tools_missing(&["mkfs.ext4", "mkfs.erofs", "debugfs", "e2fsck", "sha256sum"]))
        .or_else(|| find_guest_tool("dax-check").err())
}

#[test]
fn erofs_and_ext4_images_mount_with_dax_and_read_the_hosts_checksums() {
    skip_if!(linux_skip_reason());
    let tmp = TempDir::new("pmem-dax");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // Not a multiple of 2 MiB: the device pads the region.
    let data = payload((5 << 20) + 4096 * 3, 0x5eed);
    std::fs::write(tree.join("payload"), &data).unwrap();
    let want = sha256(&tree.join("payload"));
    let erofs = tmp.path().join("ro.erofs");
    let ext4 = tmp.path().join("rw.ext4");
    mkfs_erofs(&erofs, &tree);
    mkfs_ext4(&ext4, &tree, "48M");

    let out = boot_with_pmem(
        &[
            format!("{},ro", erofs.display()),
            ext4.display().to_string(),
        ],
        r#"mkdir -p /mnt/ro /mnt/rw
mount -t erofs -o dax /dev/pmem0 /mnt/ro || { echo FAIL mount erofs; dmesg | tail -20; exit 10; }
mount -t ext4 -o dax /dev/pmem1 /mnt/rw || { echo FAIL mount ext4; dmesg | tail -20; exit 11; }
echo "QUEUEDAX $(cat /sys/block/pmem0/queue/dax) $(cat /sys/block/pmem1/queue/dax)"
grep ' /mnt/r[ow] ' /proc/self/mountinfo | sed 's/^/MOUNTINFO /'
sha256sum /mnt/ro/payload /mnt/rw/payload | sed 's/^/SUM /'
dax-check /mnt/ro/payload /mnt/rw/payload || exit 12
umount /mnt/ro /mnt/rw || exit 13"#,
    );

    out.assert_code(0);
    out.assert_no_panic();
    assert_eq!(tagged(&out, "QUEUEDAX"), ["1 1"], "{}", out.describe());
    let mounts = tagged(&out, "MOUNTINFO");
    assert_eq!(mounts.len(), 2, "{}", out.describe());
    for m in &mounts {
        let super_opts = m.rsplit(' ').next().unwrap_or_default();
        assert!(
            super_opts
                .split(',')
                .any(|o| o == "dax" || o == "dax=always"),
            "mounted without DAX: {m}\n{}",
            out.describe()
        );
    }
    let sums = tagged(&out, "SUM");
    assert_eq!(
        sums,
        [
            format!("{want}  /mnt/ro/payload"),
            format!("{want}  /mnt/rw/payload")
        ],
        "{}",
        out.describe()
    );
    for f in ["/mnt/ro/payload", "/mnt/rw/payload"] {
        assert!(
            out.stdout.contains(&format!("dax-check: {f} dax=yes")),
            "{f} is not read through DAX\n{}",
            out.describe()
        );
    }
}

#[test]
fn writes_reach_a_read_write_pmem_file_and_never_a_read_only_one() {
    skip_if!(linux_skip_reason());
    let tmp = TempDir::new("pmem-write");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("before.txt"), b"from the host\n").unwrap();
    let rw = tmp.path().join("rw.ext4");
    let ro = tmp.path().join("ro.ext4");
    mkfs_ext4(&rw, &tree, "40M");
    mkfs_ext4(&ro, &tree, "40M");
    let ro_before = sha256(&ro);

    // Both are mounted read-write in the guest: the read-only pmem's writes must stay in the VM.
    let out = boot_with_pmem(
        &[rw.display().to_string(), format!("{},ro", ro.display())],
        r#"mkdir -p /mnt/rw /mnt/ro
mount -t ext4 -o dax /dev/pmem0 /mnt/rw || { echo FAIL mount rw; dmesg | tail -20; exit 10; }
mount -t ext4 -o dax /dev/pmem1 /mnt/ro || { echo FAIL mount ro; dmesg | tail -20; exit 11; }
dd if=/dev/urandom of=/mnt/rw/written bs=64k count=40 2>/dev/null || exit 12
echo hello-from-the-guest > /mnt/rw/hello.txt
cp /mnt/rw/written /mnt/ro/written && echo changed > /mnt/ro/before.txt || exit 13
sync
dax-check /mnt/rw/written /mnt/ro/written || exit 14
sha256sum /mnt/rw/written | sed 's/^/SUMRW /'
sha256sum /mnt/ro/written | sed 's/^/SUMRO /'
echo "READBACK $(cat /mnt/ro/before.txt)"
umount /mnt/rw /mnt/ro || exit 15
dmesg | grep -i -E 'pmem|nd_|ext4|dax|virtio' | grep -i -E 'error|fail|warn' | sed 's/^/DMESG /'
true"#,
    );

    out.assert_code(0);
    out.assert_no_panic();
    let rw_sum = tagged(&out, "SUMRW");
    let ro_sum = tagged(&out, "SUMRO");
    assert_eq!(rw_sum.len(), 1, "{}", out.describe());
    let guest_sum = rw_sum[0].split_whitespace().next().unwrap();
    assert_eq!(
        ro_sum.first().and_then(|l| l.split_whitespace().next()),
        Some(guest_sum),
        "the guest does not see its own writes on the read-only pmem\n{}",
        out.describe()
    );
    assert_eq!(tagged(&out, "READBACK"), ["changed"], "{}", out.describe());
    assert!(
        tagged(&out, "DMESG").is_empty(),
        "the guest kernel reported errors\n{}",
        out.describe()
    );

    // The read-write image: clean, with the guest's files.
    host("e2fsck", &["-f", "-n", rw.to_str().unwrap()]);
    let hello = host("debugfs", &["-R", "cat /hello.txt", rw.to_str().unwrap()]);
    assert_eq!(hello.trim(), "hello-from-the-guest");
    let dumped = tmp.path().join("written");
    host(
        "debugfs",
        &[
            "-R",
            &format!("dump /written {}", dumped.display()),
            rw.to_str().unwrap(),
        ],
    );
    assert_eq!(
        sha256(&dumped),
        guest_sum,
        "the host file differs from what the guest wrote"
    );
    assert_eq!(std::fs::metadata(&dumped).unwrap().len(), 40 * 65536);
    // The read-only image: not one byte changed.
    assert_eq!(
        sha256(&ro),
        ro_before,
        "the read-only pmem file was modified"
    );
}

// ---- bad input, with a tiny guest (runs on any usable /dev/kvm) -------------------------------

#[test]
fn a_pmem_file_that_cannot_be_used_is_one_error_line() {
    skip_if!(kvm_unusable());
    let tmp = TempDir::new("pmem-bad");
    let empty = tmp.file("empty.img", b"");
    let exit = guest("exit");
    let missing = tmp.path().join("missing.img");
    let cases = [
        (missing.clone(), String::new(), "No such file or directory"),
        (empty, String::new(), "is empty"),
        (tmp.path().to_path_buf(), ",ro".into(), "not a regular file"),
    ];
    for (path, opts, why) in cases {
        let arg = format!("{}{opts}", path.display());
        let out = vmctl_boot([
            "--kernel".as_ref(),
            exit.as_os_str(),
            "--pmem".as_ref(),
            arg.as_ref(),
        ]);
        out.assert_code(125);
        out.assert_no_panic();
        let line = out.single_error_line();
        assert!(
            line.contains(&path.display().to_string()) && line.contains(why),
            "expected the path and {why:?} in {line:?}"
        );
    }
    assert!(!missing.exists(), "vmctl created the missing file");
}

#[test]
fn pmem_files_are_mapped_for_a_tiny_guest() {
    skip_if!(kvm_unusable());
    let tmp = TempDir::new("pmem-tiny");
    let a = tmp.file("a.img", &payload(5000, 1));
    let b = tmp.file("b.img", &payload(3 << 20, 2));
    let before = sha256(&b);
    let exit = guest("exit");
    let ro = format!("{},ro", b.display());

    let out = vmctl_boot([
        "--kernel".as_ref(),
        exit.as_os_str(),
        "--pmem".as_ref(),
        a.as_os_str(),
        "--pmem".as_ref(),
        ro.as_ref(),
    ]);

    out.assert_code(0);
    out.assert_no_panic();
    let announced = out.stdout.matches("virtio_mmio.device=4K@").count();
    assert_eq!(announced, 2, "{}", out.describe());
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        5000,
        "the padding grew the file"
    );
    assert_eq!(sha256(&b), before);
}
