//! vmctl-init: PID 1 of the default initramfs, following docs/design.md ("`vmctl boot` and the
//! default init"):
//!
//! - writes boot marker 0x60 to port 0x80, mounts proc, sysfs, devtmpfs, devpts, /dev/shm, /tmp, /run;
//! - with `vmctl.cmd=` on the kernel command line: console in raw mode (cooked with `vmctl.tty=1`,
//!   when the host side is a terminal), runs the command on the
//!   console, reaps it, drains the console and reports the status (exit code, 128+N for signal N,
//!   127 when it cannot be run) with a 1-byte OUT to port 0x501; resets if that does not end the VM;
//! - without it: an interactive shell on /dev/ttyS0 (session leader, controlling tty); when it exits,
//!   or on halt/poweroff/reboot (SIGUSR1/SIGUSR2/SIGTERM to PID 1): sync and reset.
//!
//! With `vmctl.agent=1` it runs as the container agent instead (`crate::agent`), after the same
//! mounts.
//!
//! PID 1 must never exit or panic (that is a kernel panic): every error is one line on the console,
//! then a reset. Orphans are reaped all along.

mod base64url;
pub(crate) mod cmdline;

mod status;
pub(crate) mod sys;

use std::convert::Infallible;
use std::ffi::{c_int, CStr, OsString};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::Error;
use cmdline::BootArgs;
use sys::SignalSet;

/// Cloud Hypervisor's debug port: 1-byte boot markers, 0x60-0x7f for user space.
const MARKER_PORT: u16 = 0x80;
/// The marker written when vmctl-init starts.
const MARKER_INIT_START: u8 = 0x60;
/// vmctl's exit-status port (QEMU's isa-debug-exit sits there too).
const EXIT_PORT: u16 = 0x501;

const PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";
const HOME: &str = "/root";
const SHELL: &str = "/bin/sh";
const SERIAL_TTY: &str = "/dev/ttyS0";
/// The terminal type of the interactive shell when the command line gives none (the kernel's own).
const DEFAULT_TERM: &str = "linux";

/// Signals PID 1 takes synchronously: children ending, and busybox's halt (SIGUSR1), poweroff
/// (SIGUSR2) and reboot (SIGTERM).
const SIGNALS: [c_int; 4] = [libc::SIGCHLD, libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM];

/// Entry point of `vmctl-init`. Never returns.
pub fn run() -> ! {
    std::panic::set_hook(Box::new(|info| {
        say(format_args!("internal error: {info}"));
        reset()
    }));
    // A boot marker is best effort: a kernel without ioperm() only loses a timing point.
    let _ = sys::port_write(MARKER_PORT, MARKER_INIT_START);
    match start() {
        Ok(never) => match never {},
        Err(e) => {
            say(format_args!("{e}"));
            reset()
        }
    }
}

fn start() -> Result<Infallible, Error> {
    mount_all()?;
    reopen_console();
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(Error::Cmdline)?;
    let args = BootArgs::parse(&cmdline);
    if args.agent {
        return crate::agent::run();
    }
    let signals = SignalSet::block(&SIGNALS).map_err(Error::Signals)?;
    match args.argv() {
        Some(argv) => run_command(argv?, args.term, args.tty, &signals),
        None => run_shell(args.term, &signals),
    }
}

/// What vmctl-init mounts, in order: (file system, mount point, flags, options).
const MOUNTS: [(&CStr, &CStr, libc::c_ulong, Option<&CStr>); 7] = {
    const NOSUID: libc::c_ulong = libc::MS_NOSUID;
    const NODEV: libc::c_ulong = libc::MS_NODEV;
    const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;
    [
        (c"proc", c"/proc", NOSUID | NODEV | NOEXEC, None),
        (c"sysfs", c"/sys", NOSUID | NODEV | NOEXEC, None),
        (c"devtmpfs", c"/dev", NOSUID, Some(c"mode=0755")),
        (
            c"devpts",
            c"/dev/pts",
            NOSUID | NOEXEC,
            Some(c"mode=0620,ptmxmode=0666"),
        ),
        (c"tmpfs", c"/dev/shm", NOSUID | NODEV, Some(c"mode=1777")),
        (c"tmpfs", c"/tmp", NOSUID | NODEV, Some(c"mode=1777")),
        (c"tmpfs", c"/run", NOSUID | NODEV, Some(c"mode=0755")),
    ]
};

fn mount_all() -> Result<(), Error> {
    for (fstype, target, flags, data) in MOUNTS {
        let target_str = target.to_str().unwrap_or("?");
        let fstype_str = fstype.to_str().unwrap_or("?");
        sys::mkdir(target, 0o755).map_err(|source| Error::Mkdir {
            path: target_str,
            source,
        })?;
        match sys::mount(fstype, target, fstype, flags, data) {
            // already mounted (e.g. devtmpfs by CONFIG_DEVTMPFS_MOUNT on a disk root)
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            r => r.map_err(|source| Error::Mount {
                fstype: fstype_str,
                target: target_str,
                source,
            })?,
        }
    }
    Ok(())
}

/// Points stdin, stdout and stderr at devtmpfs's /dev/console. The kernel opened them on the
/// initramfs's node, which devtmpfs now hides: ttyname() and /proc/self/fd/0 would lead nowhere.
/// Best effort: on failure the kernel's descriptors stay, and they work.
fn reopen_console() {
    if let Ok(console) = sys::open(c"/dev/console", libc::O_RDWR | libc::O_NOCTTY) {
        for fd in 0..3 {
            let _ = sys::dup2(console.as_raw_fd(), fd);
        }
    }
}

/// The environment of the command and of the shell.
fn environment(term: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![("PATH", PATH.to_owned()), ("HOME", HOME.to_owned())];
    if let Some(term) = term {
        env.push(("TERM", term.to_owned()));
    }
    env
}

fn run_command(
    argv: Vec<OsString>,
    term: Option<String>,
    tty: bool,
    signals: &SignalSet,
) -> Result<Infallible, Error> {
    if sys::isatty(0) && !tty {
        sys::make_raw(0).map_err(Error::RawMode)?;
    }
    // PID 1 leads the console's session and the command runs as its foreground process group.
    // Were the command the session leader, its exit would hang the console up, and the kernel
    // would throw away output still queued for the serial line.
    let _ = sys::set_ignored(libc::SIGTTOU, true);
    let _ = sys::setsid();
    let _ = sys::set_controlling_tty(0);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(environment(term.as_deref()))
        .current_dir("/")
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec; it only makes system calls.
    unsafe {
        cmd.pre_exec(|| {
            // Foreground before exec (the parent does it too, whoever runs first): reads from the
            // console must not stop it with SIGTTIN. SIGTTOU is ignored while doing so.
            let _ = sys::tcsetpgrp(0, sys::getpid());
            sys::set_ignored(libc::SIGTTOU, false)?;
            sys::unblock_all_signals()
        });
    }
    let status = match cmd.spawn() {
        Ok(child) => {
            let _ = sys::tcsetpgrp(0, child.id() as libc::pid_t);
            wait_for(child.id(), signals)?
        }
        Err(e) => {
            say(format_args!("cannot run {:?}: {e}", argv[0]));
            status::CANNOT_RUN
        }
    };
    // Back in the foreground (allowed: SIGTTOU is ignored) before draining the console.
    let _ = sys::tcsetpgrp(0, sys::getpid());
    let _ = sys::tcdrain(1);
    report(status)
}

fn run_shell(term: Option<String>, signals: &SignalSet) -> Result<Infallible, Error> {
    let tty = c"/dev/ttyS0";
    let open_err = |source| Error::OpenTty {
        path: SERIAL_TTY,
        source,
    };
    let fd = sys::open(tty, libc::O_RDWR | libc::O_NOCTTY).map_err(open_err)?;
    let stdout = fd.try_clone().map_err(open_err)?;
    let stderr = fd.try_clone().map_err(open_err)?;
    let mut cmd = Command::new(SHELL);
    cmd.arg0("-sh")
        .env_clear()
        .envs(environment(Some(term.as_deref().unwrap_or(DEFAULT_TERM))))
        .current_dir("/")
        .stdin(Stdio::from(fd))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // SAFETY: the closure runs in the forked child before exec; it only makes system calls.
    unsafe {
        cmd.pre_exec(|| {
            // a session leader with the serial line as its controlling terminal: job control works
            sys::setsid()?;
            sys::set_controlling_tty(0)?;
            sys::unblock_all_signals()
        });
    }
    let child = cmd.spawn().map_err(|source| Error::Shell {
        path: SHELL,
        source,
    })?;
    drop(cmd);
    wait_for(child.id(), signals)?;
    sys::sync();
    reset()
}

/// Reaps children until `pid` ends and returns its status. A halt/poweroff/reboot request ends the VM.
fn wait_for(pid: u32, signals: &SignalSet) -> Result<u8, Error> {
    loop {
        while let Some((reaped, wstatus)) = sys::reap_any().map_err(Error::Reap)? {
            if u32::try_from(reaped) == Ok(pid) {
                return Ok(status::from_wait_status(wstatus));
            }
        }
        match signals.wait().map_err(Error::SignalWait)? {
            libc::SIGCHLD => {}
            _ => {
                sys::sync();
                reset()
            }
        }
    }
}

/// Reports `status` on the exit-status port, which ends the VM; resets when it does not.
pub(crate) fn report(status: u8) -> ! {
    sys::sync();
    match sys::port_write(EXIT_PORT, status) {
        Ok(()) => say(format_args!(
            "exit status {status} written to port {EXIT_PORT:#x}, but the VM went on; resetting"
        )),
        Err(e) => say(format_args!(
            "cannot write exit status {status} to port {EXIT_PORT:#x}: {e}; resetting"
        )),
    }
    reset()
}

/// Resets the machine (reboot=k: the i8042 reset line). Never returns.
fn reset() -> ! {
    sys::sync();
    let e = sys::reboot();
    say(format_args!(
        "reboot failed: {e}; exiting PID 1 so that the kernel panics"
    ));
    sys::exit_now(1)
}

/// Prints one line `vmctl-init: MSG` on the console and waits until it is out.
fn say(msg: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "vmctl-init: {msg}");
    let _ = err.flush();
    let _ = sys::tcdrain(2);
}
