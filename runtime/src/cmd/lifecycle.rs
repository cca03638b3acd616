//! `start`, `state`, `kill`, `pause` and `resume`.

use clap::Args;

use crate::cmd::load;
use crate::monitor::control::{self, ControlRequest};
use crate::oci::{self, hooks, log, signal, state, Global};
use crate::Error;

#[derive(Args, Debug)]
pub struct IdArg {
    /// The container's id
    pub id: String,
}

pub fn start(g: &Global, a: IdArg) -> Result<u8, Error> {
    let (record, status) = load(&g.root, &a.id)?;
    if status != state::Status::Created {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action: "start",
        });
    }
    control::call(&state::dir(&g.root, &a.id), &ControlRequest::Start)?;
    run_poststart(&record);
    Ok(0)
}

/// Poststart hooks: a failure is logged, the container goes on (OCI runtime spec).
pub fn run_poststart(record: &state::Record) {
    let hooks = record
        .hooks
        .as_ref()
        .and_then(|h| h.poststart().clone())
        .unwrap_or_default();
    if hooks.is_empty() {
        return;
    }
    let state = oci::state_json(record, state::Status::Running).to_string();
    if let Err(e) = hooks::run_all("poststart", &hooks, &state) {
        log::warn(&e.to_string());
        eprintln!("vmctl: warning: {e}");
    }
}

pub fn state(g: &Global, a: IdArg) -> Result<u8, Error> {
    let (record, status) = load(&g.root, &a.id)?;
    let json = oci::state_json(&record, status);
    crate::cmd::print_line(&serde_json::to_string_pretty(&json).unwrap_or_default());
    Ok(0)
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init
    #[arg(long, short = 'a')]
    pub all: bool,
    /// The container's id
    pub id: String,
    /// The signal, by name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn kill(g: &Global, a: KillArgs) -> Result<u8, Error> {
    let sig = signal::parse(&a.signal)?;
    let (_, status) = load(&g.root, &a.id)?;
    if matches!(status, state::Status::Stopped | state::Status::Creating) {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action: "signal",
        });
    }
    control::call(
        &state::dir(&g.root, &a.id),
        &ControlRequest::Kill {
            signal: sig,
            all: a.all,
        },
    )?;
    Ok(0)
}

pub fn pause(g: &Global, a: IdArg) -> Result<u8, Error> {
    pause_or_resume(g, a, ControlRequest::Pause, state::Status::Running, "pause")
}

pub fn resume(g: &Global, a: IdArg) -> Result<u8, Error> {
    pause_or_resume(
        g,
        a,
        ControlRequest::Resume,
        state::Status::Paused,
        "resume",
    )
}

fn pause_or_resume(
    g: &Global,
    a: IdArg,
    req: ControlRequest,
    wanted: state::Status,
    action: &'static str,
) -> Result<u8, Error> {
    let (_, status) = load(&g.root, &a.id)?;
    if status != wanted {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action,
        });
    }
    control::call(&state::dir(&g.root, &a.id), &req)?;
    Ok(0)
}
