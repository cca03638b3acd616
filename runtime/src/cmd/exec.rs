//! `vmctl exec`: another process in a running container. The process that writes
//! `--pid-file` (this one, or with `--detach` a child left behind) lives exactly as long as the
//! process in the guest, relays its stdio, forwards the signals it receives into the VM and
//! exits with its status, as runc's exec'd process does for containerd's shim.

use std::io::{BufRead, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use guest_protocol::{Request, Response};
use oci_spec::runtime::Process;

use crate::cmd::load;
use crate::monitor::agent::AgentConn;
use crate::monitor::process::{self, HostStdio};
use crate::monitor::signals;
use crate::oci::sockets::SocketDir;
use crate::oci::{cgroup, spec, state, translate, Global};
use crate::terminal::RawMode;
use crate::Error;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// A Unix socket that receives the master of the process's pty
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Add an environment variable (NAME=VALUE)
    #[arg(long, short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Allocate a terminal
    #[arg(long, short = 't')]
    pub tty: bool,
    /// UID[:GID] to run as
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// An additional group id
    #[arg(long = "additional-gids", short = 'g', value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// The process as OCI process JSON (instead of COMMAND and the flags)
    #[arg(long, short = 'p', value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process runs, leaving its pid-file process behind
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the pid of the process's host side here
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Set no_new_privileges
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability
    #[arg(long, short = 'c', value_name = "CAP")]
    pub cap: Vec<String>,
    /// Accepted for runc compatibility (only 0 is possible)
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility; ignored
    #[arg(long = "process-label", value_name = "LABEL", hide = true)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility; ignored
    #[arg(long, value_name = "PROFILE", hide = true)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility; ignored
    #[arg(long = "ignore-paused", hide = true)]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility; ignored
    #[arg(long, value_name = "PATH", hide = true)]
    pub cgroup: Option<String>,
    /// The container's id
    pub id: String,
    /// The command and its arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(g: &Global, a: ExecArgs) -> Result<u8, Error> {
    let (record, status) = load(&g.root, &a.id)?;
    if status != state::Status::Running {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action: "exec in",
        });
    }
    if a.preserve_fds > 0 {
        return Err(Error::Unsupported(
            "--preserve-fds: descriptors cannot be passed into a VM".into(),
        ));
    }
    let process = build_process(&a, &record)?;
    spec::validate_process(&process, "process")?;
    let terminal = process.terminal().unwrap_or(false);
    let stdio = match (&a.console_socket, terminal) {
        (Some(_), false) => {
            return Err(Error::Usage(
                "--console-socket needs a terminal (--tty or process.terminal)".into(),
            ))
        }
        (Some(s), true) => HostStdio::ConsoleSocket(s.clone()),
        (None, true) if a.detach => {
            return Err(Error::Usage(
                "a detached exec with a terminal needs --console-socket".into(),
            ))
        }
        (None, true) => HostStdio::Terminal,
        (None, false) => HostStdio::Inherited,
    };
    let exec = Exec {
        dir: state::dir(&g.root, &a.id),
        id: exec_id(),
        process: translate::process_spec(&process)?,
        cgroup: record.cgroup_path.clone(),
    };
    if a.detach {
        detached(exec, stdio, a.pid_file.as_deref())
    } else {
        let _raw = match stdio {
            HostStdio::Terminal => RawMode::enter(0).map_err(Error::Console)?,
            _ => None,
        };
        let pid_file = a.pid_file.clone();
        exec.relay(&stdio, &mut |started: Result<(), (String, u8)>| {
            if started.is_ok() {
                if let Some(p) = &pid_file {
                    let _ =
                        state::write_atomic(p, std::process::id().to_string().as_bytes(), 0o644);
                }
            }
        })
    }
}

/// The process to run: `--process`, or the container's own process with COMMAND and the
/// flags applied, as runc does.
fn build_process(a: &ExecArgs, record: &state::Record) -> Result<Process, Error> {
    if let Some(path) = &a.process {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        return serde_json::from_str(&text).map_err(|e| {
            Error::Spec(format!(
                "{} is not a valid OCI process: {e}",
                path.display()
            ))
        });
    }
    if a.command.is_empty() {
        return Err(Error::Usage(
            "exec needs a COMMAND or --process FILE".into(),
        ));
    }
    let mut p = record.process.clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(user) = &a.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::Usage(format!("--user {user}: numeric UID[:GID] expected")))
        };
        let mut u = p.user().clone();
        u.set_uid(num(uid)?);
        u.set_gid(gid.map(num).transpose()?.unwrap_or(0));
        p.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = serde_json::to_value(p.capabilities()).unwrap_or_default();
        if caps.is_null() {
            caps = serde_json::json!({});
        }
        for set in ["bounding", "effective", "permitted", "ambient"] {
            let list = caps[set].as_array().cloned().unwrap_or_default();
            let mut list: Vec<serde_json::Value> = list;
            for c in &a.cap {
                list.push(serde_json::Value::String(c.clone()));
            }
            caps[set] = serde_json::Value::Array(list);
        }
        p.set_capabilities(Some(
            serde_json::from_value(caps).map_err(|e| Error::Usage(format!("--cap: {e}")))?,
        ));
    }
    Ok(p)
}

fn exec_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("exec-{}-{nanos:x}", std::process::id())
}

struct Exec {
    dir: PathBuf,
    id: String,
    process: guest_protocol::ProcessSpec,
    cgroup: String,
}

impl Exec {
    /// Starts the process in the guest, relays it until it ends, returns its shell status.
    /// `started` is told once whether it runs.
    fn relay(
        &self,
        stdio: &HostStdio,
        started: &mut dyn FnMut(Result<(), (String, u8)>),
    ) -> Result<u8, Error> {
        let sockets = SocketDir::open(&self.dir)?;
        let vsock = sockets.join(state::VSOCK_SOCKET);
        let blocked = signals::block()?;
        let result = (|| {
            let mut agent = AgentConn::connect(&vsock)?;
            match agent.call(&Request::Exec {
                id: self.id.clone(),
                process: Box::new(self.process.clone()),
            })? {
                Response::Started { .. } => {}
                other => {
                    return Err(Error::Agent(format!(
                        "unexpected answer to exec: {other:?}"
                    )))
                }
            }
            process::attach(&vsock, &self.id, self.process.terminal, stdio)
        })();
        let attached = match result {
            Ok(a) => a,
            Err(e) => {
                started(Err((e.to_string(), e.exit_code())));
                return Err(e);
            }
        };
        let pid_record = self.dir.join(state::EXECS_DIR).join(&self.id);
        let me = std::process::id() as i32;
        let _ = std::fs::create_dir_all(self.dir.join(state::EXECS_DIR));
        let _ = std::fs::write(
            &pid_record,
            format!("{me} {}", state::start_time(me).unwrap_or_default()),
        );
        let (v, id) = (vsock.clone(), self.id.clone());
        let size_fd = attached.size_fd();
        signals::forward(blocked, move |sig| {
            if sig == libc::SIGWINCH {
                if let Some((rows, cols)) = size_fd.and_then(crate::monitor::pty::window_size) {
                    process::resize(&v, &id, rows, cols);
                }
            } else if let Ok(mut a) = AgentConn::connect(&v) {
                let _ = a.call(&Request::Signal {
                    id: id.clone(),
                    signal: sig,
                    all: false,
                });
            }
        })?;
        started(Ok(()));
        let status = process::wait(&vsock, &self.id);
        attached.drain(Duration::from_secs(5));
        let _ = std::fs::remove_file(&pid_record);
        Ok(status?.shell_status())
    }
}

/// `--detach`: a child of ours becomes the process's host side; we return once it runs.
fn detached(exec: Exec, stdio: HostStdio, pid_file: Option<&Path>) -> Result<u8, Error> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io(
            "cannot create a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: this process is single-threaded here (no thread has been started), so the child
    // may run any code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("cannot fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(read_end);
        let mut report = std::fs::File::from(write_end);
        // SAFETY: setsid only changes this new process's session.
        unsafe { libc::setsid() };
        let _ = cgroup::join(&exec.cgroup, std::process::id());
        let mut tell = |r: Result<(), (String, u8)>| {
            let line = match r {
                Ok(()) => "ok\n".to_string(),
                Err((msg, code)) => format!("{code} {msg}\n"),
            };
            let _ = report.write_all(line.as_bytes());
        };
        let code = match exec.relay(&stdio, &mut tell) {
            Ok(c) => c,
            Err(e) => {
                crate::oci::log::error(&e.to_string());
                255
            }
        };
        std::process::exit(i32::from(code));
    }
    drop(write_end);
    // One line: the child keeps the pipe open for as long as the process runs.
    let mut answer = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(read_end).take(64 << 10))
        .read_line(&mut answer);
    let answer = answer.trim_end();
    if answer == "ok" {
        if let Some(p) = pid_file {
            state::write_atomic(p, pid.to_string().as_bytes(), 0o644)?;
        }
        return Ok(0);
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let (code, msg) = answer
        .split_once(' ')
        .map(|(c, m)| (c.parse::<u8>().unwrap_or(1), m.to_string()))
        .unwrap_or((
            1,
            "the exec process ended before the process started".into(),
        ));
    Err(if code == 126 || code == 127 {
        Error::NotExecutable { message: msg, code }
    } else {
        Error::Agent(msg)
    })
}
