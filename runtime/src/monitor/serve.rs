//! The running monitor: what the control socket's requests do to the container, and how its
//! end becomes the monitor's exit status.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use guest_protocol::{self as proto, Request, Response, INIT_ID};

use super::agent::AgentConn;
use super::control::{ControlRequest, ControlResponse};
use super::launch::{Launch, Stdio};
use super::{console_log, pty, relay};
use crate::oci::sockets::SocketDir;
use crate::oci::{log, state};
use crate::Error;

/// How long the monitor waits, once the VM has stopped, for the last output to reach the host.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Monitor {
    root: PathBuf,
    dir: PathBuf,
    vsock: PathBuf,
    /// Keeps the state directory reachable by the socket paths (see `oci::sockets`).
    sockets: SocketDir,
    handle: vmm::VmHandle,
    stdio: Stdio,
    terminal: bool,
    inner: Mutex<Inner>,
}

struct Inner {
    record: state::Record,
    /// Signals sent while paused, delivered on resume.
    pending: Vec<(i32, bool)>,
    /// The status to exit with when the VM is stopped from the host (kill).
    kill_code: Option<u8>,
    outputs: Vec<JoinHandle<()>>,
    /// The slave of the `--console-socket` pty.
    console: Option<File>,
}

impl Monitor {
    pub fn new(
        launch: &Launch,
        dir: PathBuf,
        sockets: SocketDir,
        record: state::Record,
        handle: vmm::VmHandle,
    ) -> Monitor {
        Monitor {
            root: launch.root.clone(),
            vsock: sockets.join(state::VSOCK_SOCKET),
            sockets,
            dir,
            handle,
            stdio: launch.stdio.clone(),
            terminal: launch.vm.container.process.terminal,
            inner: Mutex::new(Inner {
                record,
                pending: Vec::new(),
                kill_code: None,
                outputs: Vec::new(),
                console: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the pty of `--console-socket` and sends its master (during create, as runc does).
    pub fn open_console(&self) -> Result<(), Error> {
        let Stdio::ConsoleSocket(path) = &self.stdio else {
            return Ok(());
        };
        if !self.terminal {
            return Ok(());
        }
        let p = pty::open()?;
        pty::send_fd(path, p.master.as_raw_fd())?;
        pty::make_controlling(p.slave.as_raw_fd());
        self.lock().console = Some(p.slave);
        Ok(())
    }

    fn set_status(&self, inner: &mut Inner, status: state::Status) {
        inner.record.status = status;
        if let Err(e) = state::save(&self.root, &inner.record) {
            log::warn(&format!("cannot record status {status}: {e}"));
        }
    }

    fn agent(&self) -> Result<AgentConn, Error> {
        AgentConn::connect(&self.vsock)
    }

    fn handle_request(&self, req: ControlRequest) -> Result<ControlResponse, Error> {
        match req {
            ControlRequest::Start => self.start().map(|_| ControlResponse::Ok),
            ControlRequest::Pause => self.pause().map(|_| ControlResponse::Ok),
            ControlRequest::Resume => self.resume().map(|_| ControlResponse::Ok),
            ControlRequest::Kill { signal, all } => {
                self.kill(signal, all).map(|_| ControlResponse::Ok)
            }
            ControlRequest::Ps => match self.agent()?.call(&Request::Ps)? {
                Response::Processes { processes } => Ok(ControlResponse::Processes { processes }),
                other => Err(Error::Agent(format!("unexpected answer to ps: {other:?}"))),
            },
            ControlRequest::Resize { rows, cols } => {
                self.resize(rows, cols).map(|_| ControlResponse::Ok)
            }
        }
    }

    fn start(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        let status = inner.record.status;
        if status != state::Status::Created {
            return Err(Error::State {
                id: inner.record.id.clone(),
                status: status.to_string(),
                action: "start",
            });
        }
        let attach = |stream| self.agent()?.attach(INIT_ID, stream);
        let io = |e| Error::io("cannot relay the container's stdio", e);
        if matches!(self.stdio, Stdio::Caller) {
            // `vmctl run` has attached the terminal itself.
        } else if self.terminal {
            let tty = attach(proto::Stream::Tty)?;
            let (input, output, size_fd) = match (&self.stdio, &inner.console) {
                (Stdio::ConsoleSocket(_), Some(slave)) => (
                    slave.try_clone().map_err(io)?,
                    slave.try_clone().map_err(io)?,
                    slave.as_raw_fd(),
                ),
                _ => {
                    let (i, o, _) = relay::std_files().map_err(io)?;
                    (i, o, 0)
                }
            };
            let size = pty::window_size(size_fd);
            let out = relay::terminal(tty, input, output).map_err(io)?;
            inner.outputs.push(out);
            if let Some((rows, cols)) = size {
                let _ = self.agent()?.call(&Request::Resize {
                    id: INIT_ID.into(),
                    size: proto::WindowSize { rows, cols },
                });
            }
        } else {
            let (stdin, stdout, stderr) = relay::std_files().map_err(io)?;
            let s_in = attach(proto::Stream::Stdin)?;
            let s_out = attach(proto::Stream::Stdout)?;
            let s_err = attach(proto::Stream::Stderr)?;
            relay::input(stdin, s_in).map_err(io)?;
            let o = relay::output(s_out, stdout).map_err(io)?;
            let e = relay::output(s_err, stderr).map_err(io)?;
            inner.outputs.extend([o, e]);
        }
        self.agent()?.call(&Request::Start)?;
        self.set_status(&mut inner, state::Status::Running);
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        if inner.record.status != state::Status::Running {
            return Err(self.wrong_state(&inner, "pause"));
        }
        self.handle.pause()?;
        self.set_status(&mut inner, state::Status::Paused);
        Ok(())
    }

    fn resume(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        if inner.record.status != state::Status::Paused {
            return Err(self.wrong_state(&inner, "resume"));
        }
        self.handle.resume()?;
        self.set_status(&mut inner, state::Status::Running);
        let pending = std::mem::take(&mut inner.pending);
        drop(inner);
        for (signal, all) in pending {
            self.signal_init(signal, all)?;
        }
        Ok(())
    }

    fn wrong_state(&self, inner: &Inner, action: &'static str) -> Error {
        Error::State {
            id: inner.record.id.clone(),
            status: inner.record.status.to_string(),
            action,
        }
    }

    /// Signals the container's init (or with `all` every process). SIGKILL, and any signal before
    /// the init started, ends the VM at once: nothing in it could outlive the signal anyway, and
    /// it works whatever state the guest is in.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), Error> {
        let mut inner = self.lock();
        let status = inner.record.status;
        if signal == 0 {
            return Ok(());
        }
        if signal == libc::SIGKILL || status == state::Status::Created {
            inner.kill_code = Some(128 + signal as u8);
            drop(inner);
            self.handle.stop(vmm::StopReason::UserQuit);
            return Ok(());
        }
        if status == state::Status::Paused {
            inner.pending.push((signal, all));
            return Ok(());
        }
        drop(inner);
        self.signal_init(signal, all)
    }

    fn signal_init(&self, signal: i32, all: bool) -> Result<(), Error> {
        self.agent()?.call(&Request::Signal {
            id: INIT_ID.into(),
            signal,
            all,
        })?;
        Ok(())
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), Error> {
        if !self.terminal || self.lock().record.status != state::Status::Running {
            return Ok(());
        }
        self.agent()?.call(&Request::Resize {
            id: INIT_ID.into(),
            size: proto::WindowSize { rows, cols },
        })?;
        Ok(())
    }

    /// The console's window size changed (SIGWINCH): pass it on.
    pub fn window_changed(&self) {
        let fd = match (&self.stdio, &self.lock().console) {
            (Stdio::ConsoleSocket(_), Some(slave)) => slave.as_raw_fd(),
            _ => 0,
        };
        if let Some((rows, cols)) = pty::window_size(fd) {
            let _ = self.resize(rows, cols);
        }
    }

    /// The VM has stopped: the exit status of the container, once its output is out.
    pub fn finish(&self, reason: Result<vmm::StopReason, vmm::Error>) -> u8 {
        let mut inner = self.lock();
        let console = || console_log::tail(&self.dir.join(state::CONSOLE_LOG), 5);
        let code = match reason {
            Ok(vmm::StopReason::ExitStatus(s)) => s,
            Ok(vmm::StopReason::UserQuit) => inner.kill_code.unwrap_or(128 + libc::SIGKILL as u8),
            Ok(vmm::StopReason::Failed(msg)) => {
                log::error(&format!("the container's VM failed: {msg}"));
                255
            }
            Ok(vmm::StopReason::Crashed(report)) => {
                log::error(&format!(
                    "the container's VM crashed: {report}\nguest console: {}",
                    console()
                ));
                255
            }
            Ok(other) => {
                log::error(&format!(
                    "the container's VM ended ({}) without its init's exit status; guest console: {}",
                    vmm::describe(&other),
                    console()
                ));
                255
            }
            Err(e) => {
                log::error(&format!("the container's VM failed: {e}"));
                255
            }
        };
        let outputs = std::mem::take(&mut inner.outputs);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for t in outputs {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.set_status(&mut inner, state::Status::Stopped);
        let _ = std::fs::remove_file(self.dir.join(state::CONTROL_SOCKET));
        code
    }
}

/// Serves the control socket from a thread of its own, one thread per connection.
pub fn control_server(monitor: Arc<Monitor>) -> Result<(), Error> {
    let path = monitor.sockets.join(state::CONTROL_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::io(format!("cannot listen on {}", path.display()), e))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let monitor = monitor.clone();
                let _ = std::thread::Builder::new()
                    .name("control-req".into())
                    .spawn(move || {
                        let resp = match proto::read_frame::<_, ControlRequest>(&mut conn) {
                            Ok(req) => match monitor.handle_request(req) {
                                Ok(r) => r,
                                Err(e) => ControlResponse::Error {
                                    message: e.to_string(),
                                    code: e.exit_code(),
                                },
                            },
                            Err(e) => ControlResponse::Error {
                                message: format!("bad control request: {e}"),
                                code: 1,
                            },
                        };
                        let _ = proto::write_frame(&mut conn, &resp);
                    });
            }
        })
        .map_err(|e| Error::io("cannot start the control thread", e))?;
    Ok(())
}
