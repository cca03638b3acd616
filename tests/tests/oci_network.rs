//! A container's network namespace carried into its VM: a veth in the namespace (as Docker's
//! hook leaves it) becomes the guest's interface with the same name, MAC, address and routes;
//! the guest reaches the host and the host reaches a server in the guest; nothing is left in the
//! namespace afterwards. The host's own namespace is refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use vmctl_tests::oci::{runtime_unavailable, wait_until, Bundle, Runtime};
use vmctl_tests::{run, skip_if, Outcome};

/// A network namespace with one end of a veth pair as its `eth0`; removed on drop.
struct Veth {
    netns: String,
    host_if: String,
}

impl Veth {
    /// `eth0` in a new namespace at `guest_ip`/24, its peer on the host at `host_ip`/24.
    fn new(tag: &str, host_ip: &str, guest_ip: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v = Veth {
            netns: format!("vmctl-{tag}-{id}"),
            host_if: format!("vh{tag}{id}"),
        };
        let (ns, hi) = (&v.netns, &v.host_if);
        for cmd in [
            format!("ip netns add {ns}"),
            format!("ip link add {hi} type veth peer name eth0 netns {ns}"),
            format!("ip addr add {host_ip}/24 dev {hi}"),
            format!("ip link set {hi} up"),
            format!("ip -n {ns} addr add {guest_ip}/24 dev eth0"),
            format!("ip -n {ns} link set eth0 up"),
            format!("ip -n {ns} route add default via {host_ip}"),
        ] {
            sh(&cmd).assert_code(0);
        }
        v
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// The MAC of the namespace's `eth0`.
    fn mac(&self) -> String {
        let out = sh(&format!(
            "ip netns exec {} cat /sys/class/net/eth0/address",
            self.netns
        ));
        out.assert_code(0);
        out.stdout.trim().to_string()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {}", self.host_if));
        let _ = sh(&format!("ip netns del {}", self.netns));
    }
}

fn sh(cmd: &str) -> Outcome {
    run(
        Command::new("sh").args(["-c", cmd]),
        Duration::from_secs(60),
    )
}

fn no_ip_tool() -> Option<String> {
    (!sh("command -v ip && command -v tc").stdout.contains("/tc"))
        .then(|| "iproute2 (ip, tc) is not installed".to_string())
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn join_netns(b: &mut Bundle, netns: &str) {
    b.edit(|spec| {
        for ns in spec["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = netns.into();
            }
        }
    });
}

#[test]
fn a_veth_in_the_namespace_becomes_the_guests_interface() {
    skip_if!(runtime_unavailable().or_else(no_ip_tool));
    let veth = Veth::new("net", "10.201.0.1", "10.201.0.2");
    let listener = TcpListener::bind("10.201.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let from_guest = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let rt = Runtime::new();
    let mut b = Bundle::busybox("net");
    join_netns(&mut b, &veth.path());
    b.args(&[
        "sh",
        "-c",
        &format!(
            "ip -o addr show eth0; cat /sys/class/net/eth0/address; ip route; \
             cat /sys/class/net/lo/operstate; echo from-guest | nc 10.201.0.1 {port}; \
             mkdir -p /www && echo hello-from-guest > /www/index.html && \
             echo serving; exec httpd -f -p 8080 -h /www"
        ),
    ]);
    let out_file = b.path().join("out.txt");
    let mut child = rt
        .cmd(&["run", "--bundle", path(b.path()), "net1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut answer = String::new();
    let served = wait_until(Duration::from_secs(180), || {
        let Ok(mut conn) =
            TcpStream::connect_timeout(&"10.201.0.2:8080".parse().unwrap(), Duration::from_secs(2))
        else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        answer.clear();
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_ok()
            && conn.read_to_string(&mut answer).is_ok()
            && answer.contains("hello-from-guest")
    });
    rt.run(&["kill", "net1", "KILL"]);
    let _ = child.wait();
    rt.run(&["delete", "--force", "net1"]);

    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(
        served,
        "the host reached the guest's server: {answer:?}\n{out}"
    );
    assert!(out.contains("inet 10.201.0.2/24"), "{out}");
    assert!(out.contains(&veth.mac()), "the guest has eth0's MAC: {out}");
    assert!(out.contains("default via 10.201.0.1"), "{out}");
    assert!(
        out.lines().any(|l| l == "unknown" || l == "up"),
        "lo is up: {out}"
    );
    assert_eq!(from_guest.join().unwrap(), "from-guest\n");
    let left = sh(&format!(
        "ip -n {ns} -o link; tc -n {ns} qdisc show dev eth0",
        ns = veth.netns
    ));
    assert!(
        !left.stdout.contains("vmtap"),
        "the tap is gone: {}",
        left.stdout
    );
    assert!(
        !left.stdout.contains("ingress"),
        "the redirect is gone: {}",
        left.stdout
    );
}

#[test]
fn the_hosts_own_network_namespace_is_refused() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let mut b = Bundle::busybox("nethost");
    join_netns(&mut b, "/proc/self/ns/net");

    let out = rt.run(&["create", "--bundle", path(b.path()), "nethost1"]);

    out.assert_code(1);
    assert!(
        out.single_error_line().contains("the host's own"),
        "{}",
        out.describe()
    );
    assert!(!rt.root().join("nethost1").exists(), "no state is left");
}
