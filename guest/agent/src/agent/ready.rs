//! Tells the host the agent listens: one Hello on a connection to the host's READY_PORT.

use std::time::Duration;

use guest_protocol::{read_frame, write_frame, Request, Response, HOST_CID, READY_PORT, VERSION};

use crate::sys::{fd, vsock};

/// Attempts, 100 ms apart, while the host is not listening yet.
const ATTEMPTS: u32 = 300;

pub fn announce() {
    for attempt in 0..ATTEMPTS {
        match vsock::connect(HOST_CID, READY_PORT) {
            Ok(sock) => {
                let _ =
                    fd::set_recv_timeout(std::os::fd::AsFd::as_fd(&sock), Duration::from_secs(30));
                let mut conn = std::fs::File::from(sock);
                if let Err(e) = write_frame(&mut conn, &Request::Hello { version: VERSION }) {
                    crate::log!("cannot send hello to the host: {e}");
                    return;
                }
                match read_frame::<_, Response>(&mut conn) {
                    Ok(Response::Hello { version, .. }) if version == VERSION => {}
                    Ok(Response::Hello { version, agent }) => crate::log!(
                        "the host ({agent}) speaks protocol version {version}, the agent {VERSION}"
                    ),
                    Ok(other) => crate::log!("the host answered hello with {other:?}"),
                    Err(e) => crate::log!("no hello from the host: {e}"),
                }
                return;
            }
            Err(e) if attempt + 1 == ATTEMPTS => {
                crate::log!("cannot reach the host on vsock port {READY_PORT}: {e}; requests are served anyway");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
