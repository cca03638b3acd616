//! `vmctl run`: create + start. In the foreground it relays the container's stdio, forwards
//! the signals it receives, exits with the container's status and deletes it (unless --keep);
//! with --detach it returns once the container runs.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use clap::Args;

use crate::cmd::create::{self, CreateArgs};
use crate::cmd::{delete, lifecycle};
use crate::monitor::control::{self, ControlRequest};
use crate::monitor::process::{self, HostStdio};
use crate::monitor::signals;
use crate::oci::sockets::SocketDir;
use crate::oci::{log, state, Global};
use crate::terminal::RawMode;
use crate::Error;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground only)
    #[arg(long)]
    pub keep: bool,
    /// Accepted for runc compatibility; ignored
    #[arg(long = "no-subreaper", hide = true)]
    pub no_subreaper: bool,
}

pub fn run(g: &Global, a: RunArgs) -> Result<u8, Error> {
    if a.detach {
        create::create(g, &a.create, false)?;
        start(g, &a.create.id)?;
        return Ok(0);
    }
    // Blocked before any thread starts, so every thread inherits the mask and one takes them.
    let blocked = signals::block()?;
    let mut created = create::create(g, &a.create, true)?;
    let id = a.create.id.clone();
    let result = (|| {
        let record = state::load(&g.root, &id)?;
        let caller_terminal = a.create.console_socket.is_none()
            && record
                .process
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false);
        let sockets = SocketDir::open(&created.dir)?;
        let vsock = sockets.join(state::VSOCK_SOCKET);
        let mut raw = None;
        let attached = if caller_terminal {
            raw = RawMode::enter(0).map_err(Error::Console)?;
            Some(process::attach(
                &vsock,
                guest_protocol::INIT_ID,
                true,
                &HostStdio::Terminal,
            )?)
        } else {
            None
        };
        start(g, &id)?;
        let dir = created.dir.clone();
        let size_fd = attached.as_ref().and_then(|a| a.size_fd());
        signals::forward(blocked, move |sig| {
            if sig == libc::SIGWINCH {
                if let Some((rows, cols)) = size_fd.and_then(crate::monitor::pty::window_size) {
                    process::resize(&vsock, guest_protocol::INIT_ID, rows, cols);
                }
            } else if let Err(e) = control::call(
                &dir,
                &ControlRequest::Kill {
                    signal: sig,
                    all: false,
                },
            ) {
                log::warn(&format!("cannot forward signal {sig}: {e}"));
            }
        })?;
        let status = created
            .monitor
            .wait()
            .map_err(|e| Error::io("cannot wait for the container", e))?;
        if let Some(a) = attached {
            a.drain(Duration::from_secs(5));
        }
        drop(raw);
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => c as u8,
            (_, Some(s)) => 128 + s as u8,
            _ => 255,
        })
    })();
    if result.is_err() {
        let _ = created.monitor.kill();
        let _ = created.monitor.wait();
    }
    if !a.keep {
        if let Ok(record) = state::load(&g.root, &id) {
            if let Err(e) = delete::destroy(g, &record) {
                log::warn(&format!("cannot delete container {id}: {e}"));
            }
        }
    }
    result
}

fn start(g: &Global, id: &str) -> Result<(), Error> {
    control::call(&state::dir(&g.root, id), &ControlRequest::Start)?;
    if let Ok(record) = state::load(&g.root, id) {
        lifecycle::run_poststart(&record);
    }
    Ok(())
}
