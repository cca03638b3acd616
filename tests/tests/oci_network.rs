//! A container's network namespace carried into its VM: a veth in the namespace (as Docker's
//! hook leaves it) becomes the guest's interface with the same name, MAC, address and routes;
//! the guest reaches the host and the host reaches a server in the guest; nothing is left in the
//! namespace afterwards. The host's own namespace is refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use vmctl_tests::netns::{sh, Netns};
use vmctl_tests::oci::{runtime_unavailable, wait_until, Bundle, Runtime};
use vmctl_tests::skip_if;

/// A network namespace whose `eth0` is one end of a veth pair, the other on the host at
/// `host_ip`/24 (gone with the namespace).
fn veth_netns(tag: &str, host_ip: &str, guest_ip: &str) -> Netns {
    let ns = Netns::new(tag);
    let (n, hi) = (&ns.0, format!("vh{tag}{}", std::process::id() % 100_000));
    sh(&format!(
        "ip link add {hi} type veth peer name eth0 netns {n} && \
         ip addr add {host_ip}/24 dev {hi} && ip link set {hi} up && \
         ip -n {n} addr add {guest_ip}/24 dev eth0 && ip -n {n} link set eth0 up && \
         ip -n {n} route add default via {host_ip}"
    ));
    ns
}

fn no_ip_tool() -> Option<String> {
    let found = |tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    (!found("ip") || !found("tc")).then(|| "iproute2 (ip, tc) is not installed".to_string())
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
    let ns = veth_netns("net", "10.201.0.1", "10.201.0.2");
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
    join_netns(&mut b, &ns.path());
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
    let mac = sh(&ns.exec("cat /sys/class/net/eth0/address"));
    assert!(out.contains(mac.trim()), "the guest has eth0's MAC: {out}");
    assert!(out.contains("default via 10.201.0.1"), "{out}");
    assert!(
        out.lines().any(|l| l == "unknown" || l == "up"),
        "lo is up: {out}"
    );
    assert_eq!(from_guest.join().unwrap(), "from-guest\n");
    let left = sh(&format!(
        "ip -n {ns} -o link; tc -n {ns} qdisc show dev eth0",
        ns = ns.0
    ));
    assert!(!left.contains("vmtap"), "the tap is gone: {left}");
    assert!(!left.contains("ingress"), "the redirect is gone: {left}");
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
