//! One function per request. Each checks what the host sent and answers with a `Response`, or an
//! error that the connection answers as `Response::Error`; none can end the agent.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use guest_protocol::{
    ContainerSpec, ProcessSpec, Request, Response, Stream, WindowSize, INIT_ID, VERSION,
};

use super::ps::{self, Scope};
use super::stdio;
use super::table::{ContainerInfo, Phase, Proc, Slot};
use super::Agent;
use crate::container::{launch, ContainerPlan, ExecTarget, ProcessPlan};
use crate::error::{Context, Error};
use crate::sys::{process, pty};

/// The longest process id the host may give.
const MAX_ID: usize = 256;

/// What the connection does with a request.
pub enum Outcome {
    Reply(Response),
    /// Answer Ok, then relay this stream on the connection.
    Attach {
        id: String,
        stream: Stream,
        fd: OwnedFd,
        pending: Vec<u8>,
    },
}

pub fn handle(agent: &Arc<Agent>, req: Request) -> Result<Outcome, Error> {
    let reply = |r: Result<Response, Error>| r.map(Outcome::Reply);
    match req {
        Request::Hello { version } => reply(hello(version)),
        Request::CreateContainer { spec } => reply(create(agent, &spec)),
        Request::Start => reply(start(agent)),
        Request::Exec { id, process } => reply(exec(agent, &id, &process)),
        Request::Attach { id, stream } => {
            let (fd, pending) = agent.table.attach(&id, stream)?;
            Ok(Outcome::Attach {
                id,
                stream,
                fd,
                pending,
            })
        }
        Request::Wait { id } => reply(
            agent
                .table
                .wait_exit(&id)
                .map(|status| Response::Exited { status }),
        ),
        Request::Signal { id, signal, all } => reply(signal_request(agent, &id, signal, all)),
        Request::Resize { id, size } => reply(resize(agent, &id, size)),
        Request::Ps => reply(ps_request(agent)),
        Request::AddInterface {
            spare,
            interface,
            routes,
        } => reply(super::network::add(&spare, &interface, &routes).map(|()| Response::Ok)),
        Request::RemoveInterface { name, spare } => {
            reply(super::network::remove(&name, &spare).map(|()| Response::Ok))
        }
    }
}

fn hello(version: u16) -> Result<Response, Error> {
    if version != VERSION {
        return Err(Error::Invalid(format!(
            "protocol version {version} is not supported (the agent speaks {VERSION})"
        )));
    }
    Ok(Response::Hello {
        version: VERSION,
        agent: format!("vmctl-agent {}", env!("CARGO_PKG_VERSION")),
    })
}

fn create(agent: &Arc<Agent>, spec: &ContainerSpec) -> Result<Response, Error> {
    {
        let mut g = agent.table.lock();
        if !matches!(g.phase, Phase::Empty) {
            return Err(Error::ContainerState(
                "already exists (one container per VM)",
            ));
        }
        g.phase = Phase::Creating;
    }
    match create_steps(agent, spec) {
        Ok(pid) => {
            super::exit::watch_init(agent.clone());
            Ok(Response::Started { pid })
        }
        Err(e) => {
            agent.shares.unmount_all();
            agent.table.lock().phase = Phase::Empty;
            Err(e)
        }
    }
}

fn create_steps(agent: &Arc<Agent>, spec: &ContainerSpec) -> Result<i32, Error> {
    let shares = &agent.shares;
    let plan = ContainerPlan::new(spec, shares.root(), &|tag| shares.staging(tag))?;
    super::network::configure(&spec.interfaces, &spec.routes, &spec.spares)?;
    if let Some(server) = spec.dns_relay {
        super::dns::start(server)?;
    }
    shares.mount_root(&spec.root.share, spec.root.readonly)?;
    for tag in &plan.shares {
        shares.mount_share(tag)?;
    }
    let (child, host) = stdio::make(plan.process.terminal)?;
    let guard = agent.table.begin_launch();
    let launched = launch::create_init(&plan, child)?;
    let pid = launched.pid;
    let pidns = if plan.has(guest_protocol::Namespace::Pid) {
        ps::pidns_of(pid)
    } else {
        None
    };
    let mut proc = Proc::new(pid);
    proc.stdin = host.stdin;
    proc.stdout = host.stdout;
    proc.stderr = host.stderr;
    attach_pty(&mut proc, launched.pty)?;
    {
        let mut g = agent.table.lock();
        g.container = Some(ContainerInfo {
            init_pid: pid,
            namespaces: plan.namespaces.clone(),
            pidns,
        });
        g.phase = match launched.start {
            Some(chan) => Phase::Created(chan),
            None => Phase::Stopped,
        };
    }
    agent.table.register(INIT_ID, proc);
    drop(guard);
    Ok(pid)
}

fn attach_pty(proc: &mut Proc, master: Option<OwnedFd>) -> Result<(), Error> {
    if let Some(master) = master {
        let copy = master.try_clone().ctx(|| "copy the terminal's master")?;
        proc.tty = Slot::Ready(copy, Vec::new());
        proc.master = Some(Arc::new(master));
    }
    Ok(())
}

fn start(agent: &Arc<Agent>) -> Result<Response, Error> {
    let chan = {
        let mut g = agent.table.lock();
        match std::mem::replace(&mut g.phase, Phase::Starting) {
            Phase::Created(chan) => chan,
            other => {
                let why = match other {
                    Phase::Empty | Phase::Creating => {
                        "has not been created (send create_container first)"
                    }
                    Phase::Starting | Phase::Running => "has already been started",
                    _ => "has stopped",
                };
                g.phase = other;
                return Err(Error::ContainerState(why));
            }
        }
    };
    let result = launch::start(chan);
    {
        let mut g = agent.table.lock();
        if matches!(g.phase, Phase::Starting) {
            g.phase = if result.is_ok() {
                Phase::Running
            } else {
                Phase::Stopped
            };
        }
    }
    result.map(|()| Response::Ok)
}

/// The running container, for an exec.
fn running(agent: &Agent) -> Result<ContainerInfo, Error> {
    let g = agent.table.lock();
    match (&g.phase, &g.container) {
        (Phase::Created(_) | Phase::Starting | Phase::Running, Some(c)) => Ok(c.clone()),
        (Phase::Stopped, _) => Err(Error::ContainerState("has stopped")),
        _ => Err(Error::ContainerState(
            "has not been created (send create_container first)",
        )),
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "process id {id:?} must be 1-{MAX_ID} characters without control characters"
        )));
    }
    Ok(())
}

fn exec(agent: &Arc<Agent>, id: &str, spec: &ProcessSpec) -> Result<Response, Error> {
    check_id(id)?;
    let info = running(agent)?;
    let plan = ProcessPlan::new(spec)?;
    agent.table.reserve(id)?;
    let result = exec_steps(agent, id, &info, &plan);
    if result.is_err() {
        agent.table.unreserve(id);
    }
    result
}

fn exec_steps(
    agent: &Arc<Agent>,
    id: &str,
    info: &ContainerInfo,
    plan: &ProcessPlan,
) -> Result<Response, Error> {
    let (child, host) = stdio::make(plan.terminal)?;
    let target = ExecTarget {
        init_pid: info.init_pid,
        namespaces: info.namespaces.clone(),
    };
    let guard = agent.table.begin_launch();
    let launched = launch::exec(&target, plan, child)?;
    let mut proc = Proc::new(launched.pid);
    proc.stdin = host.stdin;
    proc.stdout = host.stdout;
    proc.stderr = host.stderr;
    attach_pty(&mut proc, launched.pty)?;
    agent.table.register(id, proc);
    drop(guard);
    Ok(Response::Started { pid: launched.pid })
}

fn scope(agent: &Agent) -> Result<Scope, Error> {
    let g = agent.table.lock();
    let c = g.container.as_ref().ok_or(Error::ContainerState(
        "has not been created (send create_container first)",
    ))?;
    Ok(Scope {
        pidns: c.pidns,
        agent: process::getpid(),
    })
}

fn signal_request(agent: &Arc<Agent>, id: &str, signal: i32, all: bool) -> Result<Response, Error> {
    if !(0..=64).contains(&signal) {
        return Err(Error::Invalid(format!("signal {signal} is not 0..=64")));
    }
    if all {
        let scope = scope(agent)?;
        if !agent.table.lock().procs.contains_key(id) {
            return Err(Error::UnknownProcess(id.to_owned()));
        }
        for pid in ps::pids(scope) {
            let _ = process::kill(pid, signal);
        }
        return Ok(Response::Ok);
    }
    // under the lock: the pid cannot be reaped (and reused) meanwhile
    let g = agent.table.lock();
    let p = g
        .procs
        .get(id)
        .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?;
    if p.status.is_some() {
        return Err(Error::Exited(id.to_owned()));
    }
    process::kill(p.pid, signal).ctx(|| format!("send signal {signal} to {id} (pid {})", p.pid))?;
    Ok(Response::Ok)
}

fn resize(agent: &Arc<Agent>, id: &str, size: WindowSize) -> Result<Response, Error> {
    let master = {
        let g = agent.table.lock();
        let p = g
            .procs
            .get(id)
            .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?;
        p.master
            .clone()
            .ok_or_else(|| Error::NoTerminal(id.to_owned()))?
    };
    pty::set_window_size(master.as_fd(), size.rows, size.cols)
        .ctx(|| format!("resize the terminal of {id}"))?;
    Ok(Response::Ok)
}

fn ps_request(agent: &Arc<Agent>) -> Result<Response, Error> {
    let scope = scope(agent)?;
    Ok(Response::Processes {
        processes: ps::list(scope),
    })
}
