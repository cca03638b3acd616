//! `vmctl ps`: with `--format json` the host pids of the container (its monitor and its exec
//! processes: what `docker top` filters the host's `ps` by); as a table the processes inside
//! the VM, as its own kernel sees them.

use clap::Args;

use crate::cmd::list::print_table;
use crate::cmd::{list::Format, load};
use crate::monitor::control::{self, ControlRequest, ControlResponse};
use crate::oci::{state, Global};
use crate::Error;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// The container's id
    pub id: String,
    /// ps(1) options: not supported (the processes live in the VM)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub ps_args: Vec<String>,
}

pub fn run(g: &Global, a: PsArgs) -> Result<u8, Error> {
    let (record, status) = load(&g.root, &a.id)?;
    if !a.ps_args.is_empty() {
        return Err(Error::Unsupported(
            "ps options: the container's processes are listed from inside its VM".into(),
        ));
    }
    if matches!(status, state::Status::Stopped) {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action: "list the processes of",
        });
    }
    let dir = state::dir(&g.root, &a.id);
    match a.format {
        Format::Json => {
            let mut pids = vec![record.pid];
            pids.extend(exec_pids(&dir));
            crate::cmd::print_line(&serde_json::to_string(&pids).unwrap_or_default());
        }
        Format::Table => {
            let ControlResponse::Processes { processes } =
                control::call(&dir, &ControlRequest::Ps)?
            else {
                return Err(Error::Internal("unexpected answer to ps".into()));
            };
            // SAFETY: sysconf has no side effects.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            let mut table = vec![[
                "UID".to_string(),
                "PID".into(),
                "PPID".into(),
                "TIME".into(),
                "CMD".into(),
            ]];
            for p in processes {
                let secs = p.cpu_ticks / hz;
                table.push([
                    p.uid.to_string(),
                    p.pid.to_string(),
                    p.ppid.to_string(),
                    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                    p.command,
                ]);
            }
            print_table(&table);
        }
    }
    Ok(0)
}

/// The live exec processes of the container (their pid files in `execs/`).
pub fn exec_pids(dir: &std::path::Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir.join(state::EXECS_DIR)) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            let mut it = t.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let start = it.next()?.parse().ok()?;
            state::process_alive(pid, start).then_some(pid)
        })
        .collect();
    pids.sort();
    pids
}
