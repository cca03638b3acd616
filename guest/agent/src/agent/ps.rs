//! The container's processes, from /proc: those in the init's pid namespace, or, when the
//! container shares the VM's, every process but the agent and the kernel's threads.

use std::os::unix::fs::MetadataExt;

use guest_protocol::ProcessInfo;

/// Which processes belong to the container.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    /// The inode of the container's pid namespace, when it has its own.
    pub pidns: Option<u64>,
    /// The agent's own pid (excluded).
    pub agent: i32,
}

/// PF_KTHREAD in /proc/PID/stat's flags.
const PF_KTHREAD: u64 = 0x0020_0000;
/// A Ps answer stays well under a frame's 1 MiB.
const MAX_ANSWER: usize = 768 * 1024;
const MAX_COMMAND: usize = 1024;

/// The inode of process `pid`'s pid namespace.
pub fn pidns_of(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// The fields of /proc/PID/stat after the command name: (ppid, flags, utime + stime).
pub fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let flags = f.get(6)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, flags, utime + stime))
}

fn all_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

fn in_scope(pid: i32, flags: u64, scope: Scope) -> bool {
    match scope.pidns {
        Some(ns) => pidns_of(pid) == Some(ns),
        None => pid != scope.agent && flags & PF_KTHREAD == 0,
    }
}

/// The container's pids (in the agent's pid namespace).
pub fn pids(scope: Scope) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            parse_stat(&stat).is_some_and(|(_, flags, _)| in_scope(pid, flags, scope))
        })
        .collect()
}

/// The container's processes, as `ps` shows them.
pub fn list(scope: Scope) -> Vec<ProcessInfo> {
    let mut out = Vec::new();
    let mut size = 0;
    for pid in all_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((ppid, flags, cpu_ticks)) = parse_stat(&stat) else {
            continue;
        };
        if !in_scope(pid, flags, scope) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut command = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if command.is_empty() {
            let comm = stat
                .find('(')
                .zip(stat.rfind(')'))
                .map_or("?", |(a, b)| &stat[a + 1..b]);
            command = format!("[{comm}]");
        }
        if command.len() > MAX_COMMAND {
            let mut cut = MAX_COMMAND;
            while !command.is_char_boundary(cut) {
                cut -= 1;
            }
            command.truncate(cut);
        }
        size += command.len() + 96;
        if size > MAX_ANSWER {
            break;
        }
        out.push(ProcessInfo {
            pid,
            ppid,
            uid,
            cpu_ticks,
            command,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat(stat), Some((7, 4194560, 8)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_listed_with_its_command() {
        let me = std::process::id() as i32;
        let scope = Scope {
            pidns: pidns_of(me),
            agent: -1,
        };
        let list = list(scope);
        let mine = list
            .iter()
            .find(|p| p.pid == me)
            .expect("this test process is listed");
        assert!(!mine.command.is_empty());
        assert!(pids(scope).contains(&me));
    }
}
