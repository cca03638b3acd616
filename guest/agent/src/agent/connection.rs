//! One host connection: a sequence of request frames, each answered by one response frame, until
//! the host closes it or an Attach turns it into a raw stream.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use guest_protocol::{read_frame, write_frame, ErrorKind, FrameError, Request, Response, INIT_ID};

use super::handlers::{self, Outcome};
use super::{stdio, Agent};

/// Serves `conn` until it ends.
pub fn serve(agent: &Arc<Agent>, conn: OwnedFd) {
    let mut conn = File::from(conn);
    loop {
        let req: Request = match read_frame(&mut conn) {
            Ok(req) => req,
            Err(FrameError::Closed) => return,
            Err(e) if e.recoverable() => {
                if write_frame(
                    &mut conn,
                    &Response::error(ErrorKind::Invalid, e.to_string()),
                )
                .is_err()
                {
                    return;
                }
                continue;
            }
            Err(e @ FrameError::TooLarge(_)) => {
                // the stream cannot be resynchronised: answer, then close
                let _ = write_frame(
                    &mut conn,
                    &Response::error(ErrorKind::Invalid, e.to_string()),
                );
                return;
            }
            Err(_) => return,
        };
        let waits_for_init = matches!(&req, Request::Wait { id } if id == INIT_ID);
        if waits_for_init {
            agent.table.lock().init_waiters += 1;
        }
        let outcome = handlers::handle(agent, req);
        let written = match &outcome {
            Ok(Outcome::Reply(r)) => write_frame(&mut conn, r),
            Ok(Outcome::Attach { .. }) => write_frame(&mut conn, &Response::Ok),
            Err(e) => write_frame(&mut conn, &Response::error(e.kind(), e.to_string())),
        };
        if waits_for_init {
            agent.table.lock().init_waiters -= 1;
            agent.table.notify();
        }
        if let Ok(Outcome::Attach {
            id,
            stream,
            fd,
            pending,
        }) = outcome
        {
            if written.is_err() {
                agent.table.release(&id, stream, fd, pending);
                return;
            }
            stdio::relay(agent.table.clone(), id, stream, fd, pending, conn.into());
            return;
        }
        if written.is_err() {
            return;
        }
    }
}
