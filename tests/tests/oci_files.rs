//! The container's files, shared live with the host over 9P: rootfs writes visible both ways
//! while the container runs, `root.readonly` enforced by the host even against a guest that
//! remounts, symlinks and `..` confined to the rootfs, bind mounts of directories and files.

use std::time::Duration;

use vmctl_tests::oci::{runtime_unavailable, wait_until, Bundle, Runtime};
use vmctl_tests::{skip_if, TempDir};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn rootfs_writes_are_live_both_ways() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("live");
    b.args(&[
        "sh",
        "-c",
        "echo from-guest > /guest.txt; while [ ! -f /host.txt ]; do sleep 0.05; done; \
         cat /host.txt > /seen.txt; sleep 1000",
    ]);
    rt.run(&["create", "--bundle", path(b.path()), "live1"])
        .assert_code(0);
    rt.run(&["start", "live1"]).assert_code(0);
    let root = b.rootfs();

    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(
            root.join("guest.txt")
        )
        .is_ok_and(|s| s == "from-guest\n")),
        "the guest's write is on the host while it runs"
    );
    std::fs::write(root.join("host.txt"), "from-host\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(
            root.join("seen.txt")
        )
        .is_ok_and(|s| s == "from-host\n")),
        "the host's write is seen in the guest"
    );
}

#[test]
fn a_readonly_root_stays_readonly_even_after_a_remount() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("readonly");
    b.edit(|c| {
        c["root"]["readonly"] = true.into();
        // CAP_SYS_ADMIN lets the guest remount its root read-write: the host must still refuse.
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push("CAP_SYS_ADMIN".into());
        }
    });
    b.args(&[
        "sh",
        "-c",
        "touch /before 2>/dev/null && echo wrote-before; \
         mount -o remount,rw / && echo remounted; \
         echo x > /after 2>/dev/null && echo wrote-after; \
         mkdir /dir 2>/dev/null && echo made-dir; \
         rm /bin/busybox 2>/dev/null && echo removed; exit 0",
    ]);

    let out = rt.run(&["run", "--bundle", path(b.path()), "ro1"]);

    out.assert_code(0);
    assert!(!out.stdout.contains("wrote"), "{}", out.describe());
    assert!(!out.stdout.contains("made-dir"), "{}", out.describe());
    assert!(!out.stdout.contains("removed"), "{}", out.describe());
    for name in ["before", "after", "dir"] {
        assert!(!b.rootfs().join(name).exists(), "{name} reached the host");
    }
    assert!(b.rootfs().join("bin/busybox").exists());
}

#[test]
fn symlinks_and_dotdot_reach_nothing_outside_the_rootfs() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("escape");
    // Beside the rootfs, on the host: what an escape would find.
    std::fs::write(b.path().join("secret"), "SECRET-OUTSIDE\n").unwrap();
    let root = b.rootfs();
    std::os::unix::fs::symlink("../../../../../../../..", root.join("up")).unwrap();
    std::os::unix::fs::symlink(b.path(), root.join("abs")).unwrap();
    std::os::unix::fs::symlink("/../../secret", root.join("rootdotdot")).unwrap();
    b.args(&[
        "sh",
        "-c",
        "cat /up/secret /abs/secret /rootdotdot /../secret /../../up/up/secret 2>&1; \
         ls /up/ | head -3; echo done",
    ]);

    let out = rt.run(&["run", "--bundle", path(b.path()), "esc1"]);

    out.assert_code(0);
    assert!(!out.stdout.contains("SECRET"), "{}", out.describe());
    assert!(out.stdout.contains("done"), "{}", out.describe());
}

#[test]
fn bind_mounts_of_a_directory_and_a_file_are_live_and_ro_is_enforced() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let data = TempDir::new("bind-data");
    let conf = TempDir::new("bind-file");
    std::fs::write(data.path().join("in.txt"), "host-data\n").unwrap();
    let greeting = conf.file("greeting", b"hello\n");
    std::fs::write(conf.path().join("sibling"), "NOT-SHARED\n").unwrap();
    let mut b = Bundle::busybox("bind");
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({"destination": "/data", "type": "bind",
            "source": data.path(), "options": ["rbind", "rprivate"]}));
        mounts.push(
            serde_json::json!({"destination": "/etc/greeting", "type": "bind",
            "source": greeting, "options": ["rbind", "ro"]}),
        );
    });
    b.args(&[
        "sh",
        "-c",
        "cat /data/in.txt; echo guest-data > /data/out.txt; cat /etc/greeting; \
         echo changed > /etc/greeting 2>/dev/null && echo wrote-ro; \
         ls /etc/ | grep -c sibling; exit 0",
    ]);

    let out = rt.run(&["run", "--bundle", path(b.path()), "bind1"]);

    out.assert_code(0);
    assert_eq!(out.stdout, "host-data\nhello\n0\n", "{}", out.describe());
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "guest-data\n"
    );
    assert_eq!(std::fs::read_to_string(&greeting).unwrap(), "hello\n");
}
