//! `vmctl`: the command line. Each subcommand lives in its own module; this file parses flags,
//! dispatches, and turns every failure into one line on stderr (and, with `--log`, a log line in
//! runc's format) and a non-zero exit.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

mod boot;
mod cmd;
mod error;
mod monitor;
mod oci;
mod signals;
mod terminal;

pub use error::Error;

#[derive(Parser)]
#[command(
    name = "vmctl",
    version,
    about = "KVM microVMs: boot kernels, run containers (a runc-compatible OCI runtime)"
)]
struct Cli {
    #[command(flatten)]
    global: oci::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a kernel straight into a microVM and run a command or a shell in it.
    Boot(boot::BootArgs),
    /// Create a container: boot its VM up to a ready agent (its process waits for `start`).
    Create(cmd::create::CreateArgs),
    /// Start a created container's process.
    Start(cmd::lifecycle::IdArg),
    /// Print a container's OCI state.
    State(cmd::lifecycle::IdArg),
    /// Send a signal to a container's init (or every process with --all).
    Kill(cmd::lifecycle::KillArgs),
    /// Delete a container (--force: even a running one).
    Delete(cmd::delete::DeleteArgs),
    /// Create and start a container; in the foreground, wait for it and exit with its status.
    Run(cmd::run::RunArgs),
    /// Run another process in a running container.
    Exec(cmd::exec::ExecArgs),
    /// List a container's processes.
    Ps(cmd::ps::PsArgs),
    /// List the containers.
    List(cmd::list::ListArgs),
    /// Pause a container: its VM's vCPUs stop.
    Pause(cmd::lifecycle::IdArg),
    /// Resume a paused container.
    Resume(cmd::lifecycle::IdArg),
    /// Change a container's resources (what a running VM can change).
    Update(cmd::update::UpdateArgs),
    /// Print what this runtime supports (OCI features JSON).
    Features,
    /// Write a default config.json.
    Spec(cmd::spec::SpecArgs),
    /// The container's monitor (started by `create`; not for direct use).
    #[command(hide = true)]
    Monitor {
        /// The container's id (for ps listings; the real input comes on fd 3)
        id: String,
    },
}

fn main() -> ExitCode {
    let start = Instant::now();
    raise_fd_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let g = cli.global;
    if !matches!(cli.command, Command::Boot(_) | Command::Monitor { .. }) {
        if let Some(path) = &g.log {
            oci::log::init(path, g.log_format, g.debug);
        }
    }
    let result = match cli.command {
        Command::Boot(args) => boot::run(args, start),
        Command::Monitor { .. } => return monitor::main(),
        Command::Create(a) => cmd::create::run(&g, a),
        Command::Start(a) => cmd::lifecycle::start(&g, a),
        Command::State(a) => cmd::lifecycle::state(&g, a),
        Command::Kill(a) => cmd::lifecycle::kill(&g, a),
        Command::Delete(a) => cmd::delete::run(&g, a),
        Command::Run(a) => cmd::run::run(&g, a),
        Command::Exec(a) => cmd::exec::run(&g, a),
        Command::Ps(a) => cmd::ps::run(&g, a),
        Command::List(a) => cmd::list::run(&g, a),
        Command::Pause(a) => cmd::lifecycle::pause(&g, a),
        Command::Resume(a) => cmd::lifecycle::resume(&g, a),
        Command::Update(a) => cmd::update::run(&g, a),
        Command::Features => cmd::features::run(),
        Command::Spec(a) => cmd::spec::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            oci::log::error(&e.to_string());
            eprintln!("vmctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Devices hold a descriptor per connection (vsock allows 1024 at once): lift the soft limit on
/// open files to the hard one. Best effort: the limit only bounds how many connections fit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// clap's usage errors, reduced to one line (help and version print as usual).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let line = first.trim_start_matches("error: ");
    eprintln!("vmctl: {line}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn flag_definitions_are_consistent() {
        // Act + assert: clap checks every definition against every access.
        Cli::command().debug_assert();
    }

    #[test]
    fn runc_style_lines_parse() {
        // Arrange: lines as containerd's go-runc and Docker write them.
        let lines: &[&[&str]] = &[
            &[
                "vmctl",
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/p",
                "--console-socket",
                "/s",
                "id1",
            ],
            &[
                "vmctl",
                "--rootless=false",
                "--systemd-cgroup",
                "start",
                "id1",
            ],
            &["vmctl", "spec", "--rootless"],
            &["vmctl", "kill", "--all", "id1", "KILL"],
            &["vmctl", "delete", "--force", "id1"],
            &[
                "vmctl",
                "exec",
                "--process",
                "/p.json",
                "--detach",
                "--pid-file",
                "/p",
                "id1",
            ],
        ];
        for line in lines {
            // Act
            let parsed = Cli::try_parse_from(line.iter());
            // Assert
            assert!(parsed.is_ok(), "{line:?}: {:?}", parsed.err());
        }
        let spec = Cli::try_parse_from(["vmctl", "spec", "--rootless"]).unwrap();
        assert!(matches!(spec.command, Command::Spec(_)));
        assert_eq!(spec.global.rootless.as_deref(), Some("true"));
    }
}
