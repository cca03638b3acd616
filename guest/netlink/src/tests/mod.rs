//! Tests against the real kernel, each in a fresh network namespace of its own thread.
//!
//! They need root (CAP_NET_ADMIN, CAP_SYS_ADMIN for unshare) and iproute2's `ip` and `tc`;
//! without root, or where unshare(CLONE_NEWNET) fails, they print why and pass.

mod addresses;
mod fixtures;
mod frames;
mod links;
mod routes;
mod tc;

use std::io;
use std::process::Command;

use crate::{Link, Netlink};

/// Runs `body` on a new thread moved into a fresh network namespace; skips the test when that
/// is impossible here.
fn in_new_netns(body: impl FnOnce() + Send + 'static) {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        test_skip::report("not root");
        return;
    }
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only the calling thread,
        // which ends with the test.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        body();
        Ok(())
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => test_skip::report(&format!("unshare(CLONE_NEWNET) failed: {e}")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `program` with `args` (split at spaces) in the calling thread's namespace; returns its
/// standard output, panicking when it fails.
fn run(program: &str, args: &str) -> String {
    let output = Command::new(program)
        .args(args.split_whitespace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{program} {args} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The link named `name`, which must exist.
fn link(netlink: &mut Netlink, name: &str) -> Link {
    netlink
        .link_by_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no link {name}"))
}

/// A veth pair `va`/`vb`, created with ip(8).
fn veth_pair(netlink: &mut Netlink) -> (Link, Link) {
    run("ip", "link add va type veth peer name vb");
    (link(netlink, "va"), link(netlink, "vb"))
}

/// A veth pair `va`/`vb`, both up.
fn veth_pair_up(netlink: &mut Netlink) -> (Link, Link) {
    let (va, vb) = veth_pair(netlink);
    netlink.set_up(va.index, true).unwrap();
    netlink.set_up(vb.index, true).unwrap();
    (va, vb)
}
