//! The container commands, runc's command line: one module per command (small ones share
//! `lifecycle`).

pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod lifecycle;
pub mod list;
pub mod ps;
pub mod run;
pub mod spec;
pub mod update;

use crate::oci::state;
use crate::Error;

/// The container's record and its status now.
pub fn load(root: &std::path::Path, id: &str) -> Result<(state::Record, state::Status), Error> {
    crate::oci::id::validate(id)?;
    let record = state::load(root, id)?;
    let status = state::status(&record);
    Ok((record, status))
}

/// Prints `text` and a newline on stdout. A reader that went away (`vmctl state X | grep -q`)
/// is not an error of ours: the rest is dropped, where `println!` would panic.
pub fn print_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
