//! The container's end: when its init ends, the agent lets its output reach the host (bounded),
//! then hands the status on (in the VM: sync and report it on the exit-status port, ending the VM).

use std::sync::Arc;
use std::time::Duration;

use guest_protocol::{ExitStatus, INIT_ID};

use super::table::Proc;
use super::Agent;

/// How long the init's output may stay unattached after its end.
const GRACE: Duration = Duration::from_secs(10);
/// How long delivering the init's output may take in all.
const LIMIT: Duration = Duration::from_secs(60);

/// Starts the thread that waits for the init's end.
pub fn watch_init(agent: Arc<Agent>) {
    let spawned = std::thread::Builder::new()
        .name("init-exit".into())
        .spawn(move || {
            let status = wait_init(&agent);
            agent.table.wait_init_delivered(GRACE, LIMIT);
            (agent.on_init_exit)(status);
        });
    if let Err(e) = spawned {
        crate::log!("cannot watch the container's init ({e}); its end will not end the VM");
    }
}

fn wait_init(agent: &Agent) -> ExitStatus {
    let mut g = agent.table.lock();
    loop {
        if let Some(Proc {
            status: Some(s), ..
        }) = g.procs.get(INIT_ID)
        {
            return *s;
        }
        g = agent.table.wait(g, Duration::from_secs(1));
    }
}
