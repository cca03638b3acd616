//! `vmctl delete [--force]`: remove a stopped container (a running one with --force), running
//! its poststop hooks, removing its cgroups and state.

use std::time::{Duration, Instant};

use clap::Args;

use crate::oci::{self, cgroup, hooks, id, log, state, Global};
use crate::Error;

/// How long a killed monitor may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill the container first if it still runs
    #[arg(long, short = 'f')]
    pub force: bool,
    /// The container's id
    pub id: String,
}

pub fn run(g: &Global, a: DeleteArgs) -> Result<u8, Error> {
    id::validate(&a.id)?;
    let dir = state::dir(&g.root, &a.id);
    let record = match state::load(&g.root, &a.id) {
        Ok(r) => r,
        Err(Error::NotFound(_)) => {
            // A create that died half-way leaves a directory without a state file.
            let existed = dir.exists();
            if existed {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
            }
            return if a.force || existed {
                Ok(0)
            } else {
                Err(Error::NotFound(a.id))
            };
        }
        Err(e) => return Err(e),
    };
    let status = state::status(&record);
    match status {
        state::Status::Stopped => {}
        state::Status::Created => kill_monitor(&record)?,
        _ if a.force => kill_monitor(&record)?,
        _ => {
            return Err(Error::State {
                id: a.id,
                status: status.to_string(),
                action: "delete (use --force)",
            })
        }
    }
    destroy(g, &record)?;
    Ok(0)
}

/// Ends the container at once: SIGKILL to its monitor ends its VM with it.
pub fn kill_monitor(record: &state::Record) -> Result<(), Error> {
    if !state::process_alive(record.pid, record.pid_start) {
        return Ok(());
    }
    // SAFETY: kill(2) on the monitor's pid, checked above against its start time.
    unsafe { libc::kill(record.pid, libc::SIGKILL) };
    let deadline = Instant::now() + KILL_TIMEOUT;
    while state::process_alive(record.pid, record.pid_start) {
        if Instant::now() >= deadline {
            return Err(Error::Internal(format!(
                "the container's monitor (pid {}) did not die",
                record.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Poststop hooks, cgroups, state directory.
pub fn destroy(g: &Global, record: &state::Record) -> Result<(), Error> {
    let dir = state::dir(&g.root, &record.id);
    let poststop = record
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().clone())
        .unwrap_or_default();
    if !poststop.is_empty() {
        let state = oci::state_json(record, state::Status::Stopped).to_string();
        if let Err(e) = hooks::run_all("poststop", &poststop, &state) {
            log::warn(&e.to_string());
        }
    }
    let cgroups = cgroup::remove(&record.cgroups);
    std::fs::remove_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
    cgroups
}
