//! `vmctl`: the command line. Each subcommand lives in its own module; this file parses flags,
//! dispatches, and turns every failure into one line on stderr and a non-zero exit.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

mod boot;
mod error;
mod signals;
mod terminal;

pub use error::Error;

#[derive(Parser)]
#[command(
    name = "vmctl",
    version,
    about = "KVM microVMs: boot kernels, run containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a kernel straight into a microVM and run a command or a shell in it.
    Boot(boot::BootArgs),
}

fn main() -> ExitCode {
    let start = Instant::now();
    raise_fd_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Boot(args) => boot::run(args, start),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
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
    eprintln!("vmctl: {}", first.trim_start_matches("error: "));
    ExitCode::from(2)
}
