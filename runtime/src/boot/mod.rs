//! `vmctl boot`: boot a kernel in a microVM; run a command in it or get a shell.

pub mod assets;
mod cmdline;
mod devices;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use vmm::{ConsoleConfig, StopReason, StopSignal, Timeline, VmConfig};

use crate::terminal::{is_tty, RawMode};
use crate::{signals, Error};

/// Ctrl-] ends an interactive console session.
const ESCAPE_KEY: u8 = 0x1d;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: the COMMAND's status (the byte a guest writes to port 0x501); \
0 when the guest resets or shuts down without a COMMAND; 123 when the guest crashes (a triple \
fault: the vCPU's registers are printed on stderr); 125 when vmctl itself fails; 2 for a \
malformed flag."
)]
pub struct BootArgs {
    /// Kernel to boot: vmlinux (ELF, 64-bit or PVH entry) or bzImage [default: the project's]
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk [default: the project's, unless --kernel is given without a COMMAND]
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line, replacing the default whole (vmctl adds only device entries and
    /// the COMMAND)
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Number of vCPUs
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u32,
    /// Guest memory in MiB
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    memory: u64,
    /// Print the boot timeline (ms since vmctl started) on stderr
    #[arg(long)]
    timings: bool,
    /// Attach a raw disk image as virtio-blk (repeatable)
    #[arg(long, value_name = "PATH[,ro][,serial=ID]", value_parser = devices::parse_disk)]
    disk: Vec<vmm::BlockConfig>,
    /// Map a file into guest memory as virtio-pmem, for DAX (repeatable)
    #[arg(long, value_name = "PATH[,ro]", value_parser = devices::parse_pmem)]
    pmem: Vec<vmm::PmemConfig>,
    /// Attach a virtio-net interface on a TAP device (created, and removed, if it does not exist)
    #[arg(long, value_name = "tap=NAME[,mac=MAC]", value_parser = devices::parse_net)]
    net: Option<vmm::NetConfig>,
    /// Attach virtio-vsock with a Firecracker-style hybrid Unix socket on the host
    #[arg(long, value_name = "cid=N,socket=PATH", value_parser = devices::parse_vsock)]
    vsock: Option<vmm::VsockConfig>,
    /// Command to run in the guest; vmctl exits with its status
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub fn run(args: BootArgs, start: Instant) -> Result<u8, Error> {
    let has_command = !args.command.is_empty();
    let kernel = match args.kernel.clone() {
        Some(k) => k,
        None => assets::default_kernel()?,
    };
    let initrd = match (&args.initrd, &args.kernel) {
        (Some(rd), _) => Some(rd.clone()),
        (None, None) => Some(assets::default_initrd()?),
        (None, Some(_)) if has_command => Some(assets::default_initrd()?),
        (None, Some(_)) => None,
    };
    // A terminal on stdin makes the session interactive: raw host terminal, keystrokes forwarded,
    // Ctrl-] to quit, and (with a COMMAND) a cooked guest console. Without one, a COMMAND gets a
    // raw console that passes its output byte for byte, and no input: a serial line cannot carry
    // an end of file, so piped input would leave the command waiting.
    let interactive = is_tty(0);
    let terminal = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
    let cmdline = cmdline::build(
        args.cmdline.as_deref(),
        &args.command,
        interactive.then_some(terminal.as_str()),
    );

    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(Error::Console)?;
    let stdin = std::io::stdin();
    let input = (interactive || !has_command).then(|| std::os::fd::AsRawFd::as_raw_fd(&stdin));
    let stop = Arc::new(StopSignal::new().map_err(Error::Console)?);
    let timeline = Arc::new(Timeline::new(start, args.timings));
    let config = VmConfig {
        kernel,
        // a kernel developer rebuilds the kernel in place: copy it
        share_kernel_pages: false,
        initrd,
        cmdline,
        vcpus: args.cpus,
        memory_mib: args.memory,
        console: ConsoleConfig {
            output: Box::new(std::fs::File::from(stdout)),
            input,
            escape: interactive.then_some(ESCAPE_KEY),
        },
        devices: devices::collect(args.disk, args.pmem, args.net, args.vsock),
        timeline: timeline.clone(),
        stop: stop.clone(),
    };
    vmm::validate(&config)?;
    signals::route_to(&stop);
    let raw = if interactive {
        eprintln!("vmctl: console attached; Ctrl-] quits");
        RawMode::enter(0).map_err(Error::Console)?
    } else {
        None
    };
    let outcome = vmm::Vm::build(config)
        .and_then(vmm::Vm::start)
        .and_then(|vm| {
            let handle = vm.handle();
            let reason = vm.wait()?;
            Ok((reason, handle.stats().console_dropped))
        });
    drop(raw);
    let outcome = outcome.map(|(reason, dropped)| {
        if dropped > 0 {
            eprintln!(
                "vmctl: {dropped} bytes of console output were dropped: its reader did not keep up"
            );
        }
        reason
    });
    if args.timings {
        let _ = std::io::stderr().write_all(timeline.render().as_bytes());
    }
    exit_status(outcome?, has_command)
}

/// vmctl's exit status for how the VM ended.
fn exit_status(reason: StopReason, has_command: bool) -> Result<u8, Error> {
    match reason {
        StopReason::ExitStatus(status) => Ok(status),
        StopReason::Reset | StopReason::Shutdown if has_command => Err(Error::Guest(format!(
            "the guest ended ({}) without reporting the command's exit status",
            vmm::describe(&reason)
        ))),
        StopReason::Reset | StopReason::Shutdown => Ok(0),
        StopReason::UserQuit => Ok(signals::caught().map_or(0, |sig| 128 + sig as u8)),
        StopReason::Crashed(report) => Err(Error::GuestCrashed(report)),
        StopReason::Failed(msg) => Err(Error::Guest(msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_exits_123_with_its_report_and_a_reset_exits_0() {
        let crash = StopReason::Crashed("the guest crashed: triple fault on vcpu 0".into());

        let crashed = exit_status(crash, false).unwrap_err();
        let reset = exit_status(StopReason::Reset, false).unwrap();

        assert_eq!(crashed.exit_code(), 123);
        assert_eq!(
            crashed.to_string(),
            "the guest crashed: triple fault on vcpu 0"
        );
        assert_eq!(reset, 0);
    }

    #[test]
    fn a_crash_with_a_command_is_still_a_crash() {
        let crash = StopReason::Crashed("triple fault".into());

        let err = exit_status(crash, true).unwrap_err();

        assert_eq!(err.exit_code(), 123);
    }
}
