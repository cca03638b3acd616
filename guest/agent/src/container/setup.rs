//! A container process's own set-up, in the process itself just before exec (the init's and an
//! exec'd process's alike): terminal, privileges, identity, capabilities, cwd, umask, the
//! program's lookup, exec. Limits and oom_score_adj are set by the helper before it creates the
//! process (they are inherited).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::caps;
use super::channel::{Channel, Msg};
use super::lookpath;
use super::process_plan::ProcessPlan;
use crate::error::{Context, Error};
use crate::sys::{self, creds, fd, fs, pty};

/// What exec needs, found before the init reports it is ready.
pub struct Prepared {
    path: CString,
    program: String,
    argv: Vec<CString>,
    env: Vec<CString>,
}

/// Limits and oom_score_adj, for the helper to set before it creates the process.
pub fn inherited(p: &ProcessPlan) -> Result<(), Error> {
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("set oom_score_adj to {adj}"))?;
    }
    for &(resource, soft, hard) in &p.rlimits {
        creds::setrlimit(resource, soft, hard)
            .ctx(|| format!("set resource limit {resource} to {soft}/{hard}"))?;
    }
    Ok(())
}

/// A new pty from the container's /dev/ptmx: the master goes to the agent, the slave becomes the
/// controlling terminal and stdin/stdout/stderr; with `console`, it is bind-mounted on
/// /dev/console too (the init's, as runc does).
pub fn terminal(p: &ProcessPlan, chan: &Channel, console: bool) -> Result<(), Error> {
    let (master, slave, number) = pty::open_pair().ctx(|| {
        "create the terminal from /dev/ptmx (does the container mount devpts on /dev/pts?)"
    })?;
    if let Some(size) = p.console_size {
        pty::set_window_size(master.as_fd(), size.rows, size.cols)
            .ctx(|| "set the terminal's size")?;
    }
    chan.send(&Msg::Pty(master))
        .ctx(|| "pass the terminal to the agent")?;
    pty::set_controlling(slave.as_fd()).ctx(|| "make the terminal the controlling terminal")?;
    for target in 0..3 {
        fd::dup2(slave.as_raw_fd(), target).ctx(|| "put the terminal on stdio")?;
    }
    if console {
        let slave_path = format!("/dev/pts/{number}");
        let what = || format!("bind-mount {slave_path} on /dev/console");
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open("/dev/console")
        {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::ENXIO)
                    || e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => return Err(Error::sys(what(), e)),
        }
        let source = sys::cstr(slave_path.as_bytes()).ctx(what)?;
        fs::mount(Some(&source), c"/dev/console", None, libc::MS_BIND, None).ctx(what)?;
    }
    Ok(())
}

/// Privileges, identity, capabilities, cwd, umask and the program's lookup (as the process's
/// user, from its cwd).
pub fn identity_and_lookup(p: &ProcessPlan) -> Result<Prepared, Error> {
    if p.no_new_privileges {
        creds::set_no_new_privs().ctx(|| "set no_new_privs")?;
    }
    // Like runc: chdir before the user change when it works (root may reach what the user may
    // not), else again after it.
    let cwd_early = match fs::chdir(&p.cwd) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => false,
        Err(e) => return Err(cwd_error(p, e)),
    };
    user_and_caps(p)?;
    if !cwd_early {
        fs::chdir(&p.cwd).map_err(|e| cwd_error(p, e))?;
    }
    sys::process::umask(p.umask as libc::mode_t);
    let path = lookpath::look_path(&p.program, p.path_env.as_deref())?;
    Ok(Prepared {
        path: sys::cpath(&path).ctx(|| "program path")?,
        program: p.program.clone(),
        argv: p.argv.clone(),
        env: p.env.clone(),
    })
}

fn cwd_error(p: &ProcessPlan, e: io::Error) -> Error {
    Error::sys(
        format!(
            "chdir to cwd ({:?}) set in the spec",
            p.cwd.to_string_lossy()
        ),
        e,
    )
}

/// runc's order: bounding set first (needs CAP_SETPCAP), keep the permitted set across the uid
/// change, groups, gid, uid, then the requested sets and the ambient ones.
fn user_and_caps(p: &ProcessPlan) -> Result<(), Error> {
    if let Some(c) = &p.caps {
        for cap in 0..=caps::last_cap() {
            if c.bounding & (1u64 << cap) == 0 {
                match creds::drop_bounding(cap) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    r => r.ctx(|| format!("drop capability {cap} from the bounding set"))?,
                }
            }
        }
        creds::set_keepcaps(true).ctx(|| "keep capabilities across the uid change")?;
    }
    creds::setgroups(&p.additional_gids)
        .ctx(|| format!("set additional groups {:?}", p.additional_gids))?;
    creds::set_gid(p.gid).ctx(|| format!("set gid {}", p.gid))?;
    creds::set_uid(p.uid).ctx(|| format!("set uid {}", p.uid))?;
    if let Some(c) = &p.caps {
        creds::set_keepcaps(false).ctx(|| "clear keepcaps")?;
        creds::capset(creds::CapSets {
            effective: c.effective,
            permitted: c.permitted,
            inheritable: c.inheritable,
        })
        .ctx(|| "set the capabilities (effective, permitted, inheritable)")?;
        // As runc: a capability that cannot be raised ambient (not inheritable, as in runc's
        // default spec) is skipped, not an error.
        let _ = creds::clear_ambient();
        for cap in 0..64u32 {
            if c.ambient & (1u64 << cap) != 0 {
                let _ = creds::raise_ambient(cap);
            }
        }
    }
    Ok(())
}

/// Executes the program. Returns only on failure, with the error to report and the process's
/// exit status (127 when the program is missing, 126 when it cannot be executed, as a shell).
pub fn exec(prep: &Prepared) -> (Error, i32) {
    let e = sys::process::execve(&prep.path, &prep.argv, &prep.env);
    let reason = e.to_string();
    let reason = reason
        .split(" (os error")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match e.raw_os_error() {
        Some(libc::ENOENT) => (
            Error::NotFound {
                program: prep.program.clone(),
                reason,
            },
            127,
        ),
        Some(libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY) => (
            Error::NotExecutable {
                program: prep.program.clone(),
                reason,
            },
            126,
        ),
        _ => (Error::sys(format!("exec {:?}", prep.program), e), 126),
    }
}

/// The exit status of a process that failed its set-up with `e`.
pub fn failure_status(e: &Error) -> i32 {
    match e.kind() {
        guest_protocol::ErrorKind::NotFound => 127,
        guest_protocol::ErrorKind::NotExecutable => 126,
        _ => 1,
    }
}
