//! The code that runs in the forked children (see `launch`). Each starts single-threaded from the
//! multithreaded agent, so it only makes system calls and allocates: no stdio, no lock the agent's
//! threads may hold, no panics (errors are reported on the channel).
//!
//! - The helper (forked from the agent) moves stdio into place, sets the inherited limits, enters
//!   or creates the namespaces, creates the process with CLONE_PARENT (so that it is the agent's
//!   child, and PID 1 of a new pid namespace), reports its pid and exits.
//! - The init builds the container (mounts, pivot_root, ...), sets itself up, reports it is ready,
//!   waits for the start and execs.
//! - An exec'd process enters the init's root, sets itself up and execs.

use std::os::fd::{AsFd, OwnedFd};

use guest_protocol::Namespace;

use super::channel::{Channel, Msg};
use super::paths;
use super::plan::ContainerPlan;
use super::process_plan::ProcessPlan;
use super::rootfs;
use super::setup;
use crate::error::{Context, Error};
use crate::sys::{self, fd, fs, process, signal};

/// Where an exec'd process goes: the namespaces and root of the running init.
#[derive(Clone, Debug)]
pub struct ExecTarget {
    /// The init's pid in the agent's pid namespace.
    pub init_pid: i32,
    /// The namespaces the init was created with (its mount namespace is always joined).
    pub namespaces: Vec<Namespace>,
}

/// What the helper creates.
pub enum Job<'a> {
    Init(&'a ContainerPlan),
    Exec {
        target: &'a ExecTarget,
        process: &'a ProcessPlan,
    },
}

impl Job<'_> {
    fn process(&self) -> &ProcessPlan {
        match self {
            Job::Init(plan) => &plan.process,
            Job::Exec { process, .. } => process,
        }
    }
}

/// The stdio of the new process: the child ends of its pipes, or a terminal it makes itself.
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal,
}

/// The helper, right after fork. Never returns.
pub fn helper(job: &Job, stdio: ChildStdio, chan: Channel) -> ! {
    let code = match helper_steps(job, stdio, chan) {
        Ok(()) => 0,
        Err((e, chan)) => {
            if let Some(chan) = chan {
                let _ = chan.send(&Msg::error(&e));
            }
            1
        }
    };
    process::exit_now(code)
}

type HelperError = (Error, Option<Channel>);

fn helper_steps(job: &Job, stdio: ChildStdio, chan: Channel) -> Result<(), HelperError> {
    let _ = signal::reset_for_child();
    let (stdin, stdout, stderr) = match stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (stdin, stdout, stderr),
        ChildStdio::Terminal => {
            let a = fd::open_dev_null()
                .ctx(|| "open /dev/null")
                .map_err(|e| (e, None))?;
            let b = a
                .try_clone()
                .ctx(|| "dup /dev/null")
                .map_err(|e| (e, None))?;
            let c = a
                .try_clone()
                .ctx(|| "dup /dev/null")
                .map_err(|e| (e, None))?;
            (a, b, c)
        }
    };
    let chan = fd::arrange_child_fds(stdin, stdout, stderr, chan.into_fd())
        .map(Channel::from_fd)
        .map_err(|e| (Error::sys("set up the child's descriptors", e), None))?;
    match helper_namespaces_and_clone(job, &chan) {
        Ok(()) => Ok(()),
        Err(e) => Err((e, Some(chan))),
    }
}

fn helper_namespaces_and_clone(job: &Job, chan: &Channel) -> Result<(), Error> {
    setup::inherited(job.process())?;
    let exec_root = match job {
        Job::Init(plan) => {
            unshare_for(plan)?;
            None
        }
        Job::Exec { target, .. } => Some(join(target)?),
    };
    // SAFETY: the helper is single-threaded (a child of fork), and the new process ends in exec
    // or exit_now.
    match unsafe { process::clone_parent() }.ctx(|| "create the container process")? {
        process::Forked::Child => {
            let result = match job {
                Job::Init(plan) => init_steps(plan, chan),
                Job::Exec { process, .. } => match exec_root {
                    Some(root) => exec_steps(process, root, chan),
                    None => Err(Error::Invalid("exec without a root".into())),
                },
            };
            let (e, status) = match result {
                Ok(never) => match never {},
                Err(e) => {
                    let status = setup::failure_status(&e);
                    (e, status)
                }
            };
            let _ = chan.send(&Msg::error(&e));
            process::exit_now(status)
        }
        process::Forked::Parent(pid) => chan
            .send(&Msg::Pid(pid))
            .ctx(|| "report the container process's pid"),
    }
}

fn unshare_for(plan: &ContainerPlan) -> Result<(), Error> {
    let mut flags = libc::CLONE_NEWNS;
    for ns in &plan.namespaces {
        flags |= clone_flag(*ns);
    }
    process::unshare(flags)
        .ctx(|| format!("create the namespaces {:?} (and mount)", plan.namespaces))
}

fn clone_flag(ns: Namespace) -> libc::c_int {
    match ns {
        Namespace::Pid => libc::CLONE_NEWPID,
        Namespace::Mount => libc::CLONE_NEWNS,
        Namespace::Uts => libc::CLONE_NEWUTS,
        Namespace::Ipc => libc::CLONE_NEWIPC,
        Namespace::Cgroup => libc::CLONE_NEWCGROUP,
    }
}

fn ns_file(ns: Namespace) -> &'static str {
    match ns {
        Namespace::Pid => "pid",
        Namespace::Mount => "mnt",
        Namespace::Uts => "uts",
        Namespace::Ipc => "ipc",
        Namespace::Cgroup => "cgroup",
    }
}

/// Enters the init's namespaces (mount last: the /proc paths are the agent's until then) and
/// returns a descriptor of its root.
fn join(target: &ExecTarget) -> Result<OwnedFd, Error> {
    let proc_dir = format!("/proc/{}", target.init_pid);
    let open = |rel: &str, flags| {
        let path = format!("{proc_dir}/{rel}");
        sys::cstr(path.as_bytes())
            .and_then(|p| fs::open(&p, flags))
            .ctx(|| format!("open {path} (has the container's init exited?)"))
    };
    let root = open("root", libc::O_PATH | libc::O_DIRECTORY)?;
    let order = [
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Cgroup,
        Namespace::Pid,
        Namespace::Mount,
    ];
    let mut fds = Vec::new();
    for ns in order {
        if ns == Namespace::Mount || target.namespaces.contains(&ns) {
            fds.push((ns, open(&format!("ns/{}", ns_file(ns)), libc::O_RDONLY)?));
        }
    }
    for (ns, nsfd) in fds {
        process::setns(nsfd.as_fd(), clone_flag(ns))
            .ctx(|| format!("join the container's {} namespace", ns_file(ns)))?;
    }
    Ok(root)
}

/// The container's init, in its new namespaces. Returns only on failure.
fn init_steps(plan: &ContainerPlan, chan: &Channel) -> Result<std::convert::Infallible, Error> {
    process::setsid().ctx(|| "start a session")?;
    let pending = rootfs::prepare(plan)?;
    if let Some(h) = &plan.hostname {
        process::sethostname(h.as_bytes()).ctx(|| format!("set the hostname {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        process::setdomainname(d.as_bytes()).ctx(|| format!("set the domain name {d:?}"))?;
    }
    if plan.process.terminal {
        setup::terminal(&plan.process, chan, true)?;
    }
    paths::apply(plan)?;
    rootfs::finalize(plan, &pending)?;
    let cwd = plan.process.cwd.to_string_lossy().into_owned();
    std::fs::create_dir_all(&cwd).ctx(|| format!("create the cwd {cwd}"))?;
    let prepared = setup::identity_and_lookup(&plan.process)?;
    chan.send(&Msg::Ready).ctx(|| "report ready")?;
    if !chan.wait_start().ctx(|| "wait for the start")? {
        // the agent gave the container up before starting it
        process::exit_now(1);
    }
    Err(setup::exec(&prepared).0)
}

/// A process exec'd into the running container. Returns only on failure.
fn exec_steps(
    p: &ProcessPlan,
    root: OwnedFd,
    chan: &Channel,
) -> Result<std::convert::Infallible, Error> {
    process::setsid().ctx(|| "start a session")?;
    fs::fchdir(root.as_fd()).ctx(|| "enter the container's root")?;
    fs::chroot(c".").ctx(|| "chroot into the container's root")?;
    fs::chdir(c"/").ctx(|| "enter the container's /")?;
    drop(root);
    if p.terminal {
        setup::terminal(p, chan, false)?;
    }
    let prepared = setup::identity_and_lookup(p)?;
    Err(setup::exec(&prepared).0)
}
