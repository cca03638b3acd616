//! `vmctl update`: applies the resource changes a running VM can take (its CPU quota, on the
//! host cgroup of the VMM) and refuses, by name, those it cannot (guest RAM and vCPUs are fixed
//! when the VM boots).

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use oci_spec::runtime::LinuxResources;

use crate::cmd::load;
use crate::oci::{cgroup, state, Global};
use crate::Error;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// A JSON file with the new linux.resources ("-" reads standard input)
    #[arg(long, short = 'r', value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// CPU CFS period (microseconds)
    #[arg(long = "cpu-period", value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds)
    #[arg(long = "cpu-quota", value_name = "US")]
    pub cpu_quota: Option<i64>,
    /// Memory limit in bytes: guest RAM cannot change while the VM runs
    #[arg(long, short = 'm', value_name = "BYTES")]
    pub memory: Option<String>,
    /// Maximum number of processes
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// The container's id
    pub id: String,
}

pub fn run(g: &Global, a: UpdateArgs) -> Result<u8, Error> {
    let (record, status) = load(&g.root, &a.id)?;
    if matches!(status, state::Status::Stopped) {
        return Err(Error::State {
            id: a.id,
            status: status.to_string(),
            action: "update",
        });
    }
    let mut quota = a.cpu_quota;
    let mut period = a.cpu_period;
    let mut refused = Vec::new();
    if a.memory.is_some() {
        refused.push("memory");
    }
    if a.pids_limit.is_some() {
        refused.push("pids");
    }
    if let Some(path) = &a.resources {
        let text = read_resources(path)?;
        let r: LinuxResources = serde_json::from_str(&text).map_err(|e| {
            Error::Spec(format!(
                "{} is not valid linux.resources JSON: {e}",
                path.display()
            ))
        })?;
        if let Some(cpu) = r.cpu() {
            quota = quota.or(cpu.quota().filter(|q| *q != 0));
            period = period.or(cpu.period().filter(|p| *p != 0));
        }
        if r.memory()
            .as_ref()
            .is_some_and(|m| m.limit().is_some_and(|l| l > 0))
        {
            refused.push("memory");
        }
        if r.pids().as_ref().is_some_and(|p| p.limit() > 0) {
            refused.push("pids");
        }
        if r.block_io()
            .as_ref()
            .is_some_and(|b| b.weight().is_some_and(|w| w > 0))
        {
            refused.push("blockIO");
        }
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            refused.push("hugepageLimits");
        }
    }
    if !refused.is_empty() {
        refused.dedup();
        return Err(Error::Unsupported(format!(
            "updating {} of a running container: its VM's RAM and processes are fixed when it boots (only the CPU quota can change)",
            refused.join(", ")
        )));
    }
    cgroup::apply_cpu(&record.cgroup_path, quota, period);
    Ok(0)
}

fn read_resources(path: &PathBuf) -> Result<String, Error> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut s)
            .map_err(|e| Error::io("cannot read the resources from stdin", e))?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}
