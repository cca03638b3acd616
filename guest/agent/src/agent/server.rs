//! The listener: accepts host connections on the agent's vsock port, one thread each, at most
//! [`MAX_CONNECTIONS`] at once (one more is answered with an error and closed).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guest_protocol::{write_frame, ErrorKind, Response};

use super::{connection, Agent};
use crate::sys::vsock;

pub const MAX_CONNECTIONS: usize = 64;

/// Counts a connection while it lives.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves connections accepted by `accept` forever.
pub fn serve(agent: Arc<Agent>, mut accept: impl FnMut() -> std::io::Result<OwnedFd>) -> ! {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match accept() {
            Ok(c) => c,
            Err(e) => {
                crate::log!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let msg = format!("too many connections (at most {MAX_CONNECTIONS}): close some first");
            let _ = write_frame(
                &mut std::fs::File::from(conn),
                &Response::error(ErrorKind::State, msg),
            );
            continue;
        }
        let guard = Active(active.clone());
        let agent = agent.clone();
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let _guard = guard;
                connection::serve(&agent, conn);
            });
        if let Err(e) = spawned {
            crate::log!("cannot start a thread for a connection: {e}");
        }
    }
}

/// The VM's listener's accept.
pub fn vsock_accept(listener: OwnedFd) -> impl FnMut() -> std::io::Result<OwnedFd> {
    move || vsock::accept(listener.as_fd())
}
