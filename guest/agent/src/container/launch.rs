//! The agent's side of creating a container process: fork the helper (see `child`), read what the
//! children report on the channel, and for the init, later, let it exec.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::channel::{Channel, Msg};
use super::child::{self, ChildStdio, ExecTarget, Job};
use super::plan::ContainerPlan;
use super::process_plan::ProcessPlan;
use crate::error::{Context, Error};
use crate::sys::process;

/// How long a child's set-up may take before the agent gives it up and kills it (mounting a
/// share's files through 9P is the slow part).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A process that was created.
#[derive(Debug)]
pub struct Launched {
    /// Its pid in the agent's pid namespace.
    pub pid: i32,
    /// Its terminal's master, when it has one.
    pub pty: Option<OwnedFd>,
    /// The init's channel, to let it exec ([`start`]); `None` for an exec'd process.
    pub start: Option<Channel>,
}

/// Creates the container's init, which waits for [`start`] once set up.
pub fn create_init(plan: &ContainerPlan, stdio: ChildStdio) -> Result<Launched, Error> {
    launch(&Job::Init(plan), stdio, true)
}

/// Creates a process in the running container of `target`; it execs at once.
pub fn exec(
    target: &ExecTarget,
    process: &ProcessPlan,
    stdio: ChildStdio,
) -> Result<Launched, Error> {
    launch(&Job::Exec { target, process }, stdio, false)
}

/// Lets the init exec: Ok once it did (its channel closed), or the error it reported.
pub fn start(chan: Channel) -> Result<(), Error> {
    chan.send_start()
        .ctx(|| "tell the container's init to start")?;
    match chan.recv() {
        Ok(None) => Ok(()),
        Ok(Some(Msg::Error { kind, message })) => Err(Error::Reported { kind, message }),
        Ok(Some(other)) => Err(Error::sys(
            "start the container's init",
            io::Error::other(format!("unexpected message {other:?}")),
        )),
        Err(e) => Err(Error::sys("wait for the container's init to exec", e)),
    }
}

fn launch(job: &Job, stdio: ChildStdio, init: bool) -> Result<Launched, Error> {
    let (agent_end, child_end) = Channel::pair().ctx(|| "create the channel to the child")?;
    // SAFETY: the child runs `child::helper`, which keeps to what a child of a multithreaded
    // process may do (system calls and allocation) and ends with exit_now.
    match unsafe { process::fork() }.ctx(|| "fork the helper")? {
        process::Forked::Child => {
            drop(agent_end);
            child::helper(job, stdio, child_end)
        }
        process::Forked::Parent(_helper) => {
            // the helper is reaped by the agent's reaper like any other child
            drop(child_end);
            drop(stdio);
            collect(agent_end, init)
        }
    }
}

/// Reads the children's reports until the process is ready (init), has exec'd (exec) or failed.
fn collect(chan: Channel, init: bool) -> Result<Launched, Error> {
    chan.set_timeout(SETUP_TIMEOUT)
        .ctx(|| "set the set-up timeout")?;
    let mut pid = None;
    let mut pty = None;
    let fail = |pid: Option<i32>, e: Error| {
        if let Some(p) = pid {
            let _ = process::kill(p, libc::SIGKILL);
        }
        Err(e)
    };
    loop {
        match chan.recv() {
            Ok(Some(Msg::Pid(p))) => pid = Some(p),
            Ok(Some(Msg::Pty(fd))) => pty = Some(fd),
            Ok(Some(Msg::Ready)) => match pid {
                Some(p) if init => {
                    return Ok(Launched {
                        pid: p,
                        pty,
                        start: Some(chan),
                    })
                }
                _ => return fail(pid, unexpected("ready")),
            },
            Ok(Some(Msg::Error { kind, message })) => {
                return fail(pid, Error::Reported { kind, message })
            }
            Ok(None) => {
                return match pid {
                    Some(p) if !init => Ok(Launched {
                        pid: p,
                        pty,
                        start: None,
                    }),
                    _ => fail(pid, unexpected("end of its channel")),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                return fail(
                    pid,
                    Error::sys(
                        format!(
                            "the container process's set-up took more than {} s; it was killed",
                            SETUP_TIMEOUT.as_secs()
                        ),
                        e,
                    ),
                )
            }
            Err(e) => return fail(pid, Error::sys("read the container process's set-up", e)),
        }
    }
}

fn unexpected(what: &str) -> Error {
    Error::sys(
        "create the container process",
        io::Error::other(format!(
            "it ended its set-up without reporting an error (unexpected {what})"
        )),
    )
}
