//! `vmctl list`: every container under --root.

use clap::Args;

use crate::oci::{self, state, Global};
use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// Only the ids
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(g: &Global, a: ListArgs) -> Result<u8, Error> {
    let mut rows = Vec::new();
    for id in state::ids(&g.root)? {
        // A container deleted while we list is simply not listed.
        if let Ok(record) = state::load(&g.root, &id) {
            let status = state::status(&record);
            rows.push((record, status));
        }
    }
    if a.quiet {
        for (r, _) in &rows {
            crate::cmd::print_line(&r.id);
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            let all: Vec<serde_json::Value> =
                rows.iter().map(|(r, s)| oci::state_json(r, *s)).collect();
            crate::cmd::print_line(&serde_json::Value::Array(all).to_string());
        }
        Format::Table => {
            let mut table = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for (r, s) in &rows {
                let pid = if *s == state::Status::Stopped {
                    0
                } else {
                    r.pid
                };
                table.push([
                    r.id.clone(),
                    pid.to_string(),
                    s.to_string(),
                    r.bundle.display().to_string(),
                    r.created.clone(),
                    if r.owner.is_empty() {
                        "root".into()
                    } else {
                        r.owner.clone()
                    },
                ]);
            }
            print_table(&table);
        }
    }
    Ok(0)
}

/// Columns padded to their widest cell plus three spaces, as runc's tabwriter does.
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        crate::cmd::print_line(line.trim_end());
    }
}
