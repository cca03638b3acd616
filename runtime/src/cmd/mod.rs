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
