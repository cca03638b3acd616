//! Putting the container's monitor (the pid-file process, hence every VMM thread) into the
//! spec's `linux.cgroupsPath`, on cgroup v2, v1 and hybrid hosts, and removing what was made.
//! Docker and containerd read the container's CPU and memory use (`docker stats`) there.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;

const ROOT: &str = "/sys/fs/cgroup";
/// Controllers enabled down the v2 tree, each only where the parent offers it.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "memory", "pids", "io", "cpuset"];

/// The cgroup path to use: the spec's, with systemd's `slice:prefix:name` form mapped to its
/// cgroupfs path, or `/vmctl/<id>` when the spec has none. A relative path is taken from the
/// caller's own cgroup, as runc does.
pub fn resolve(spec_path: Option<&str>, id: &str, systemd: bool) -> String {
    let raw = match spec_path {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!("/vmctl/{id}"),
    };
    if systemd || (raw.matches(':').count() == 2 && !raw.starts_with('/')) {
        if let Some(p) = systemd_to_path(&raw) {
            return p;
        }
    }
    if raw.starts_with('/') {
        raw
    } else {
        format!("{}/{raw}", own_v2_path().trim_end_matches('/'))
    }
}

/// `system.slice:docker:ID` -> `/system.slice/docker-ID.scope`; `a-b.slice` expands to
/// `a.slice/a-b.slice` as systemd lays slices out.
fn systemd_to_path(raw: &str) -> Option<String> {
    let mut parts = raw.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let mut path = String::new();
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    if slice != "-.slice" {
        let stem = slice.strip_suffix(".slice")?;
        let mut acc = String::new();
        for (i, piece) in stem.split('-').enumerate() {
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(piece);
            path.push('/');
            path.push_str(&acc);
            path.push_str(".slice");
        }
    }
    let unit = if name.ends_with(".slice") || name.ends_with(".scope") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{path}/{unit}"))
}

/// This process's v2 cgroup (the `0::` line), or `/`.
fn own_v2_path() -> String {
    fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_else(|| "/".into())
}

/// The cgroup hierarchies mounted on this host: (mount point, is v2).
fn hierarchies() -> Vec<(PathBuf, bool)> {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in mounts.lines() {
        // fields: id parent maj:min root mountpoint options [optional...] - fstype source super
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or("");
        let mountpoint = left.split(' ').nth(4).unwrap_or("");
        if !mountpoint.starts_with(ROOT) {
            continue;
        }
        match fstype {
            "cgroup2" => out.push((PathBuf::from(mountpoint), true)),
            "cgroup" => out.push((PathBuf::from(mountpoint), false)),
            _ => {}
        }
    }
    out
}

/// Creates `path` in every hierarchy and moves process `pid` into it. Returns the directories
/// created (for [`remove`]), deepest last.
pub fn join(path: &str, pid: u32) -> Result<Vec<PathBuf>, Error> {
    let rel = path.trim_start_matches('/');
    let mut created = Vec::new();
    for (mount, v2) in hierarchies() {
        let target = mount.join(rel);
        if v2 {
            enable_v2_controllers(&mount, rel);
        }
        make_dirs(&mount, rel, &mut created)
            .map_err(|e| Error::io(format!("cannot create cgroup {}", target.display()), e))?;
        let procs = target.join("cgroup.procs");
        if let Err(e) = fs::write(&procs, pid.to_string()) {
            // A v1 hierarchy that cannot take processes (e.g. a named one) is not fatal; v2 is.
            if v2 {
                return Err(Error::io(
                    format!("cannot join cgroup {}", target.display()),
                    e,
                ));
            }
        }
    }
    Ok(created)
}

fn make_dirs(mount: &Path, rel: &str, created: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut dir = mount.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Enables the controllers the container's cgroup needs in each ancestor, best effort.
fn enable_v2_controllers(mount: &Path, rel: &str) {
    let mut dir = mount.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| offered.split_whitespace().any(|o| o == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !wanted.is_empty() {
            let _ = fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "));
        }
        dir.push(part);
        if i + 1 < parts.len() {
            let _ = fs::create_dir(&dir);
        }
    }
}

/// Limits the monitor's CPU to the spec's quota (the VM's vCPUs and the VMM's own threads
/// together), where the hierarchy allows.
pub fn apply_cpu(path: &str, quota: Option<i64>, period: Option<u64>) {
    let rel = path.trim_start_matches('/');
    let (Some(quota), period) = (quota.filter(|q| *q > 0), period.unwrap_or(100_000)) else {
        return;
    };
    for (mount, v2) in hierarchies() {
        let dir = mount.join(rel);
        if v2 {
            let _ = fs::write(dir.join("cpu.max"), format!("{quota} {period}"));
        } else if dir.join("cpu.cfs_quota_us").exists() {
            let _ = fs::write(dir.join("cpu.cfs_period_us"), period.to_string());
            let _ = fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string());
        }
    }
}

/// How long the OOM report's helper may take to be killed.
const OOM_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes the container's memory cgroup record an OOM kill, once its VM has ended because the
/// guest kernel killed for want of memory: Docker (`State.OOMKilled`) and containerd learn of
/// OOM only from the cgroup's own events, and the guest's RAM, not the host cgroup, is what
/// the container ran out of. The cgroup's limit is lowered to what it uses now, and a helper
/// with `oom_score_adj` 1000 allocates until the kernel's memcg OOM killer ends it; the limit is
/// then put back. Best effort: a host without a memory hierarchy reports nothing, nor one whose
/// swap takes the helper's pages (no more than the cgroup's limit of them).
pub fn report_oom(path: &str) {
    let rel = path.trim_start_matches('/');
    for (mount, v2) in hierarchies() {
        let dir = mount.join(rel);
        let (limit, usage) = if v2 {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        let (Ok(old), Ok(used)) = (
            fs::read_to_string(dir.join(limit)),
            fs::read_to_string(dir.join(usage)),
        ) else {
            continue;
        };
        let Ok(used) = used.trim().parse::<u64>() else {
            continue;
        };
        let tight = (used + (8 << 20)).next_multiple_of(4096);
        if fs::write(dir.join(limit), tight.to_string()).is_ok() {
            run_oom_helper(tight);
            // The shim reads the event asynchronously: let it land before the container's exit.
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::write(dir.join(limit), old.trim());
        return;
    }
}

/// Forks a child that allocates `limit` bytes, more than the cgroup can hold even with all its
/// page cache reclaimed, so the OOM killer takes it; waits for its end.
fn run_oom_helper(limit: u64) {
    const CHUNK: usize = 4 << 20;
    let chunks = limit.div_ceil(CHUNK as u64) + 1;
    // SAFETY: the child only makes system calls (open, write, mmap, _exit) before it dies: no
    // allocation or lock of the parent's threads is touched after fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls on a NUL-terminated path and a local buffer.
        unsafe {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
            }
            // Bounded by the limit: where swap takes the pages instead of the OOM killer, the
            // helper ends with nothing reported and no more swapped than the cgroup held.
            for _ in 0..chunks {
                libc::mmap(
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                    -1,
                    0,
                );
            }
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return;
    }
    let deadline = Instant::now() + OOM_REPORT_TIMEOUT;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, with a local status word.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != 0 {
            break;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) and waitpid(2) on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes the directories [`join`] created, deepest first. Processes still in one (a killed
/// monitor's threads tearing down its VM, an exec's host side) are killed, as runc's delete
/// kills what is left in the container's cgroup; one that cannot be emptied is reported.
pub fn remove(created: &[PathBuf]) -> Result<(), Error> {
    let mut result = Ok(());
    for dir in created.iter().rev() {
        if let Err(e) = remove_one(dir) {
            if result.is_ok() {
                result = Err(Error::io(
                    format!("cannot remove cgroup {}", dir.display()),
                    e,
                ));
            }
        }
    }
    result
}

/// How long a cgroup's last processes may take to leave it.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);

fn remove_one(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + EMPTY_TIMEOUT;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                kill_members(dir);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// SIGKILL to every process in the cgroup `dir` (and its children).
fn kill_members(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: kill(2) on a pid listed in a cgroup vmctl created for this container.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_map_to_cgroupfs() {
        assert_eq!(
            systemd_to_path("system.slice:docker:abc").unwrap(),
            "/system.slice/docker-abc.scope"
        );
        assert_eq!(
            systemd_to_path("a-b.slice:p:n").unwrap(),
            "/a.slice/a-b.slice/p-n.scope"
        );
    }

    #[test]
    fn defaults_and_absolute_paths() {
        assert_eq!(resolve(None, "c1", false), "/vmctl/c1");
        assert_eq!(resolve(Some("/docker/x"), "c1", false), "/docker/x");
    }
}
