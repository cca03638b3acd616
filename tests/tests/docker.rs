//! Docker with vmctl as a runtime: a dockerd of the test's own (tests/src/docker.rs) runs
//! ordinary `docker` commands with `--runtime vmctl`, each container in a microVM, and every flow
//! is checked by what a user sees: output, exit codes, files on the host, HTTP answers, inspect.
//! Afterwards no monitor, state dir, tap or rootfs mount is left.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use vmctl_tests::dns::Upstream;
use vmctl_tests::docker::{docker_unavailable, Dockerd, BUSYBOX};
use vmctl_tests::oci::wait_until;
use vmctl_tests::skip_if;

/// `GET /` from `addr`, the body (empty when nothing answers).
fn http_get(addr: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn docker_run_gives_output_exit_codes_and_the_process_settings() {
    skip_if!(docker_unavailable());
    // Arrange
    let d = Dockerd::start(1);
    // Act
    let hello = d.run_vm(&["--rm", BUSYBOX, "echo", "hello from a microVM"]);
    let status = d.run_vm(&["--rm", BUSYBOX, "sh", "-c", "exit 3"]);
    let kernel = d.run_vm(&["--rm", BUSYBOX, "cat", "/proc/cmdline"]);
    let settings = d.run_vm(&[
        "--rm",
        "-e",
        "GREETING=bonjour",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "--hostname",
        "vmhost",
        BUSYBOX,
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g) $(hostname)",
    ]);
    let read_only = d.run_vm(&["--rm", "--read-only", BUSYBOX, "touch", "/etc/new"]);
    let limits = d.run_vm(&[
        "--rm",
        "--ulimit",
        "nofile=1000:2000",
        BUSYBOX,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    let missing = d.run_vm(&["--rm", BUSYBOX, "/no/such/program"]);
    // Assert
    hello.assert_code(0);
    assert_eq!(hello.stdout, "hello from a microVM\n");
    status.assert_code(3);
    assert!(
        kernel.stdout.contains("virtio_mmio.device="),
        "not a vmctl VM's kernel command line\n{}",
        kernel.describe()
    );
    settings.assert_code(0);
    assert_eq!(settings.stdout, "bonjour /tmp 65534:65534 vmhost\n");
    assert_ne!(read_only.code(), Some(0), "{}", read_only.describe());
    assert!(
        read_only.stderr.contains("Read-only file system"),
        "{}",
        read_only.describe()
    );
    limits.assert_code(0);
    assert_eq!(limits.stdout, "1000\n2000\n");
    assert_eq!(missing.code(), Some(127), "{}", missing.describe());
    d.assert_nothing_left();
}

#[test]
fn a_detached_container_is_driven_by_docker_commands() {
    skip_if!(docker_unavailable());
    // Arrange
    let d = Dockerd::start(2);
    let script = "echo started; trap 'echo got-term; exit 7' TERM; while true; do sleep 0.2; done";
    d.run_vm_detached(&["--name", "c1", BUSYBOX, "sh", "-c", script]);
    assert!(
        wait_until(Duration::from_secs(60), || d
            .docker(&["logs", "c1"])
            .stdout
            .contains("started")),
        "no output in docker logs"
    );
    let host_dir = d.scratch("cp");
    std::fs::write(host_dir.join("in.txt"), "from the host\n").unwrap();

    // Act + Assert: exec, with and without a terminal.
    assert_eq!(d.ok(&["exec", "c1", "echo", "inside"]), "inside");
    assert_eq!(d.ok(&["exec", "-t", "c1", "tty"]).trim(), "/dev/pts/0");
    let exec_status = d.docker(&["exec", "c1", "sh", "-c", "exit 4"]);
    exec_status.assert_code(4);

    // pause / unpause
    d.ok(&["pause", "c1"]);
    assert_eq!(d.inspect("c1", "{{.State.Status}}"), "paused");
    d.ok(&["unpause", "c1"]);
    assert_eq!(d.inspect("c1", "{{.State.Status}}"), "running");

    // cp both ways, diff, commit
    d.ok(&[
        "cp",
        &host_dir.join("in.txt").display().to_string(),
        "c1:/root/in.txt",
    ]);
    assert_eq!(
        d.ok(&["exec", "c1", "cat", "/root/in.txt"]),
        "from the host"
    );
    d.ok(&["exec", "c1", "sh", "-c", "echo from the VM > /root/out.txt"]);
    d.ok(&[
        "cp",
        "c1:/root/out.txt",
        &host_dir.join("out.txt").display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out.txt")).unwrap(),
        "from the VM\n"
    );
    let diff = d.ok(&["diff", "c1"]);
    assert!(diff.contains("A /root/out.txt"), "docker diff: {diff}");
    d.ok(&["commit", "c1", "vmctl-test/committed"]);
    let committed = d.run_vm(&["--rm", "vmctl-test/committed", "cat", "/root/out.txt"]);
    assert_eq!(
        committed.stdout,
        "from the VM\n",
        "{}",
        committed.describe()
    );

    // stop: SIGTERM reaches the workload, whose status docker records
    d.ok(&["stop", "c1"]);
    assert_eq!(d.inspect("c1", "{{.State.ExitCode}}"), "7");
    assert!(d.ok(&["logs", "c1"]).contains("got-term"));

    // restart runs it again
    d.ok(&["restart", "c1"]);
    assert_eq!(d.inspect("c1", "{{.State.Status}}"), "running");
    assert!(wait_until(Duration::from_secs(60), || d
        .docker(&["logs", "c1"])
        .stdout
        .matches("started")
        .count()
        == 2));

    // kill -s delivers that signal
    d.ok(&["kill", "-s", "TERM", "c1"]);
    assert_eq!(d.ok(&["wait", "c1"]), "7");

    // stop of a workload ignoring SIGTERM ends in SIGKILL after the timeout
    d.run_vm_detached(&[
        "--name",
        "stubborn",
        BUSYBOX,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.2; done",
    ]);
    d.ok(&["stop", "-t", "2", "stubborn"]);
    assert_eq!(d.inspect("stubborn", "{{.State.ExitCode}}"), "137");

    // wait returns the status
    d.run_vm_detached(&["--name", "waiter", BUSYBOX, "sh", "-c", "sleep 1; exit 5"]);
    assert_eq!(d.ok(&["wait", "waiter"]), "5");
    d.assert_nothing_left();
}

#[test]
fn containers_reach_each_other_the_host_and_published_ports() {
    skip_if!(docker_unavailable());
    // Arrange
    let d = Dockerd::start(3);
    d.run_vm_detached(&[
                "--name",
        "web",
        "-p",
        "18088:80",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir -p /www && echo served by a microVM > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = d.inspect("web", "{{.NetworkSettings.IPAddress}}");
    let mac = d.inspect("web", "{{.NetworkSettings.MacAddress}}");
    // Act
    let published = wait_until(Duration::from_secs(60), || {
        http_get("127.0.0.1:18088").contains("served by a microVM")
    });
    let direct = http_get(&format!("{ip}:80"));
    let guest_view = d.ok(&["exec", "web", "ip", "-o", "addr", "show", "eth0"]);
    let guest_link = d.ok(&["exec", "web", "cat", "/sys/class/net/eth0/address"]);
    let neighbour = d.run_vm(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        &format!("wget -qO- http://{ip}/ && ping -c 1 -W 5 10.213.3.1 >/dev/null && echo host-ok"),
    ]);
    let none = d.run_vm(&["--rm", "--network", "none", BUSYBOX, "ls", "/sys/class/net"]);
    let host = d.run_vm(&["--rm", "--network", "host", BUSYBOX, "true"]);
    let shared = d.run_vm(&["--rm", "--network", "container:web", BUSYBOX, "true"]);
    // Assert
    assert!(published, "no answer on the published port 18088");
    assert!(
        direct.contains("served by a microVM"),
        "from the host: {direct:?}"
    );
    assert!(
        guest_view.contains(&format!("{ip}/")),
        "guest eth0: {guest_view}"
    );
    assert_eq!(guest_link, mac);
    neighbour.assert_code(0);
    assert_eq!(
        neighbour.stdout,
        "served by a microVM\nhost-ok\n",
        "{}",
        neighbour.describe()
    );
    none.assert_code(0);
    assert_eq!(none.stdout, "lo\n");
    assert_ne!(host.code(), Some(0));
    assert!(
        host.stderr.contains("--network host"),
        "{}",
        host.describe()
    );
    assert_ne!(shared.code(), Some(0));
    assert!(
        shared.stderr.contains("--network container:X"),
        "{}",
        shared.describe()
    );
    d.assert_nothing_left();
}

#[test]
fn a_user_defined_network_resolves_container_names() {
    skip_if!(docker_unavailable());
    // Arrange: Docker's embedded DNS answers at 127.0.0.11 in each container's namespace, and
    // forwards other names, from that namespace, to the container's --dns server.
    let d = Dockerd::start(4);
    d.ok(&["network", "create", "--subnet", "10.214.4.0/24", "vmnet"]);
    let _upstream = Upstream::start(Ipv4Addr::new(10, 214, 4, 1), Ipv4Addr::new(10, 9, 8, 7));
    d.run_vm_detached(&[
        "--name",
        "db",
        "--network",
        "vmnet",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir -p /www && echo db answers > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = d.inspect(
        "db",
        "{{(index .NetworkSettings.Networks \"vmnet\").IPAddress}}",
    );
    // Act
    let client = d.run_vm(&[
        "--rm",
        "--network",
        "vmnet",
        "--dns",
        "10.214.4.1",
        BUSYBOX,
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup db; nslookup outside.example; \
         wget -qO- http://db/ && ping -c 1 -W 5 db",
    ]);
    // Assert
    client.assert_code(0);
    assert!(
        client.stdout.contains("nameserver 127.0.0.11"),
        "{}",
        client.describe()
    );
    assert!(
        client.stdout.contains(&format!("Address: {ip}")),
        "db is {ip}: {}",
        client.describe()
    );
    assert!(
        client.stdout.contains("Address: 10.9.8.7"),
        "outside.example, from the upstream server: {}",
        client.describe()
    );
    assert!(
        client.stdout.contains("db answers"),
        "{}",
        client.describe()
    );
    assert!(
        client.stdout.contains(&format!("({ip})")),
        "ping by name: {}",
        client.describe()
    );
    d.assert_nothing_left();
}

#[test]
fn network_connect_and_disconnect_reach_a_running_container() {
    skip_if!(docker_unavailable());
    // Arrange: the VM boots on the default bridge only.
    let d = Dockerd::start(6);
    d.ok(&["network", "create", "--subnet", "10.214.5.0/24", "second"]);
    d.run_vm_detached(&[
        "--name",
        "multi",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir -p /www && echo on two networks > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let second_ip = || {
        d.inspect(
            "multi",
            "{{(index .NetworkSettings.Networks \"second\").IPAddress}}",
        )
    };
    let answers = |ip: &str| {
        wait_until(Duration::from_secs(60), || {
            http_get(&format!("{ip}:80")).contains("on two networks")
        })
    };
    let before = d.ok(&["exec", "multi", "ls", "/sys/class/net"]);
    // Act
    d.ok(&["network", "connect", "second", "multi"]);
    let first = second_ip();
    let reached = answers(&first);
    let guest_view = d.ok(&["exec", "multi", "ip", "-o", "-4", "addr", "show", "eth1"]);
    d.ok(&["network", "disconnect", "second", "multi"]);
    let gone = wait_until(Duration::from_secs(30), || {
        !d.ok(&["exec", "multi", "ip", "-o", "link"])
            .contains("eth1")
    });
    let unreachable = http_get(&format!("{first}:80"));
    d.ok(&["network", "connect", "second", "multi"]);
    let again = second_ip();
    let reached_again = answers(&again);
    // Assert
    assert_eq!(
        before, "eth0\nlo",
        "the spare devices are out of the container's sight"
    );
    assert!(reached, "nothing answered at {first} after network connect");
    assert!(
        guest_view.contains(&format!("{first}/24")),
        "guest eth1: {guest_view}"
    );
    assert!(gone, "eth1 still in the VM after network disconnect");
    assert_eq!(
        unreachable, "",
        "still answering at {first} once disconnected"
    );
    assert!(
        reached_again,
        "nothing answered at {again} after connecting again"
    );
    d.assert_nothing_left();
}

#[test]
fn volumes_are_live_both_ways_with_owners_modes_and_read_only() {
    skip_if!(docker_unavailable());
    // Arrange
    let d = Dockerd::start(4);
    let vol = d.scratch("vol");
    std::fs::write(vol.join("from-host.txt"), "host data\n").unwrap();
    let many = d.scratch("many");
    for i in 0..10_000 {
        std::fs::write(many.join(format!("f{i:05}")), format!("{i}\n")).unwrap();
    }
    let bind = format!("{}:/data", vol.display());
    let bind_ro = format!("{}:/data:ro", vol.display());
    let bind_many = format!("{}:/many", many.display());
    // Act
    let rw = d.run_vm(&[
        "--rm",
        "-v",
        &bind,
        BUSYBOX,
        "sh",
        "-c",
        "cat /data/from-host.txt && echo vm data > /data/from-vm.txt && \
         mkdir -m 750 /data/dir && chown 1000:1001 /data/dir",
    ]);
    let as_user = d.run_vm(&[
        "--rm",
        "-u",
        "1000:1001",
        "-v",
        &bind,
        BUSYBOX,
        "touch",
        "/data/dir/user-file",
    ]);
    let ro = d.run_vm(&["--rm", "-v", &bind_ro, BUSYBOX, "touch", "/data/nope"]);
    d.ok(&["volume", "create", "named"]);
    let named_write = d.run_vm(&[
        "--rm",
        "-v",
        "named:/v",
        BUSYBOX,
        "sh",
        "-c",
        "echo kept > /v/f",
    ]);
    let named_read = d.run_vm(&["--rm", "-v", "named:/v", BUSYBOX, "cat", "/v/f"]);
    let tmpfs = d.run_vm(&[
        "--rm",
        "--tmpfs",
        "/scratch",
        BUSYBOX,
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3 && echo x > /scratch/f && cat /scratch/f",
    ]);
    // Each file costs several 9P round trips: ~20 ms apiece under nested emulation.
    let listing = d.run_vm_for(
        &[
            "--rm",
            "-v",
            &bind_many,
            BUSYBOX,
            "sh",
            "-c",
            "ls /many | wc -l && cat /many/* | wc -l",
        ],
        Duration::from_secs(900),
    );
    // Assert
    rw.assert_code(0);
    assert_eq!(rw.stdout, "host data\n");
    assert_eq!(
        std::fs::read_to_string(vol.join("from-vm.txt")).unwrap(),
        "vm data\n"
    );
    let dir = std::fs::metadata(vol.join("dir")).unwrap();
    assert_eq!(
        (dir.uid(), dir.gid(), dir.mode() & 0o7777),
        (1000, 1001, 0o750)
    );
    as_user.assert_code(0);
    let file = std::fs::metadata(vol.join("dir/user-file")).unwrap();
    assert_eq!((file.uid(), file.gid()), (1000, 1001));
    assert_ne!(ro.code(), Some(0), "{}", ro.describe());
    assert!(!vol.join("nope").exists());
    named_write.assert_code(0);
    assert_eq!(named_read.stdout, "kept\n", "{}", named_read.describe());
    assert_eq!(tmpfs.stdout, "tmpfs\nx\n", "{}", tmpfs.describe());
    assert_eq!(listing.stdout, "10000\n10000\n", "{}", listing.describe());
    d.assert_nothing_left();
}

#[test]
fn memory_and_cpus_size_the_vm_and_an_oom_is_reported() {
    skip_if!(docker_unavailable());
    // Arrange
    let d = Dockerd::start(5);
    // Act
    let sized = d.run_vm(&[
        "--rm",
        "--memory",
        "192m",
        // --cpus is refused above the host's CPU count; the quota itself is not.
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "200000",
        BUSYBOX,
        "sh",
        "-c",
        "nproc; grep MemTotal /proc/meminfo",
    ]);
    let hog = d.run_vm(&[
        "--name",
        "hog",
        "--memory",
        "128m",
        BUSYBOX,
        // A line without end: tail's buffer grows page by page until the guest's OOM killer.
        "tail",
        "/dev/zero",
    ]);
    // Assert
    sized.assert_code(0);
    let mut lines = sized.stdout.lines();
    assert_eq!(lines.next(), Some("2"), "{}", sized.describe());
    let total_kib: u64 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (150 * 1024..=192 * 1024).contains(&total_kib),
        "MemTotal {total_kib} KiB for --memory 192m"
    );
    assert_eq!(hog.code(), Some(137), "{}", hog.describe());
    assert_eq!(d.inspect("hog", "{{.State.OOMKilled}}"), "true");
    d.assert_nothing_left();
}
