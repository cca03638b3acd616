//! The container agent: `vmctl-init` with `vmctl.agent=1`, PID 1 of a container VM.
//!
//! It listens on vsock port AGENT_PORT, says Hello to the host on READY_PORT, and serves the
//! host's requests (guest-protocol), one thread per connection (`server`, `connection`,
//! `handlers`): it creates the container (`crate::container`) on shares mounted over 9P (`shares`),
//! relays stdio (`stdio`), reaps every process (`reaper`) into its table (`table`), and when the
//! container's init ends, reports its status on the exit-status port, which ends the VM (`exit`).

pub mod connection;
pub mod dns;
pub mod exit;
pub mod handlers;
pub mod log;
pub mod network;
pub mod ps;
pub mod ready;
pub mod reaper;
pub mod server;
pub mod shares;
pub mod stdio;
pub mod table;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use guest_protocol::{ExitStatus, AGENT_PORT};

use crate::error::Error;
use crate::sys::{signal, vsock};
use shares::Shares;
use table::Table;

/// The agent's state and what it does with the outside world.
pub struct Agent {
    pub table: Arc<Table>,
    pub shares: Box<dyn Shares>,
    /// Called once the container's init ended and its output was delivered.
    pub on_init_exit: Box<dyn Fn(ExitStatus) + Send + Sync>,
}

impl Agent {
    /// An agent whose children are reaped by the reaper thread (polling every `poll` besides
    /// SIGCHLD).
    pub fn new(
        shares: Box<dyn Shares>,
        on_init_exit: Box<dyn Fn(ExitStatus) + Send + Sync>,
        poll: Duration,
    ) -> Result<Arc<Agent>, Error> {
        let table = Arc::new(Table::new());
        reaper::watch(&table, poll)?;
        Ok(Arc::new(Agent {
            table,
            shares,
            on_init_exit,
        }))
    }
}

/// The agent's life as PID 1 (after the init's mounts). Returns only on a fatal start-up error.
pub fn run() -> Result<Infallible, Error> {
    signal::block(&[libc::SIGCHLD]).map_err(Error::Signals)?;
    let listener = vsock::listen(AGENT_PORT, 16).map_err(|source| Error::Listen {
        port: AGENT_PORT,
        source,
    })?;
    let agent = Agent::new(
        Box::new(shares::VsockShares::default()),
        Box::new(|status: ExitStatus| {
            crate::log!("the container's init ended: {status:?}");
            crate::init::report(status.shell_status())
        }),
        Duration::from_secs(1),
    )?;
    std::thread::Builder::new()
        .name("ready".into())
        .spawn(ready::announce)
        .map_err(|source| Error::Thread {
            what: "say hello to the host",
            source,
        })?;
    crate::log!("listening on vsock port {AGENT_PORT}");
    server::serve(agent, server::vsock_accept(listener))
}
