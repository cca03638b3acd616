//! The central reaper: one thread reaps every child and orphan (waitpid(-1)) when SIGCHLD arrives
//! (blocked in every thread, taken with sigtimedwait) and, as a safety net, every `poll`; it
//! records the statuses in the tables that track those processes.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::table::Table;
use crate::error::Error;
use crate::sys::{process, signal};

struct Reaper {
    tables: Mutex<Vec<Weak<Table>>>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// Records the statuses of this process's children in `table` from now on; starts the reaper
/// thread the first time. The caller blocked SIGCHLD before starting its threads (else the poll
/// interval bounds the delay).
pub fn watch(table: &Arc<Table>, poll: Duration) -> Result<(), Error> {
    let mut started = false;
    let reaper = REAPER.get_or_init(|| {
        started = true;
        Reaper {
            tables: Mutex::new(Vec::new()),
        }
    });
    reaper
        .tables
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(table));
    if started {
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || run(reaper, poll))
            .map_err(|source| Error::Thread {
                what: "reap child processes",
                source,
            })?;
    }
    Ok(())
}

fn run(reaper: &'static Reaper, poll: Duration) -> ! {
    loop {
        let _ = signal::wait_for(&[libc::SIGCHLD], poll);
        while let Ok(Some((pid, status))) = process::reap_any() {
            let tables: Vec<Arc<Table>> = {
                let mut list = reaper.tables.lock().unwrap_or_else(|e| e.into_inner());
                list.retain(|t| t.strong_count() > 0);
                list.iter().filter_map(Weak::upgrade).collect()
            };
            for t in tables {
                if t.record(pid, status) {
                    break;
                }
            }
        }
    }
}
