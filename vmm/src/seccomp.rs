//! The vCPU threads' seccomp filter. They serve the guest's MMIO and port I/O exits, the guest's
//! most direct reach into the VMM, so they keep only the system calls that work needs: running the
//! vCPU and configuring KVM (ioctl), eventfds and the console (read/write), locks, memory for
//! their own allocations, signals for the kick, and ending the thread. Any other call fails with
//! EPERM rather than killing the VMM: a path missed here fails that one request, it does not take
//! down the VM, and a thread taken over by a guest still cannot open, exec or connect anything.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// System calls a vCPU thread may make (x86_64 numbers).
const VCPU_SYSCALLS: &[libc::c_long] = &[
    // the vCPU and the VM: KVM_RUN, register access, interrupt routes; the tap's offloads when a
    // virtio-net device is activated
    libc::SYS_ioctl,
    // eventfds (interrupts, queue kicks, stop), the console's output
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    // dropping the last handle of a device's eventfd or of guest memory after a reset
    libc::SYS_close,
    libc::SYS_munmap,
    // locks and the allocator
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    // the kick signal, and what a panic's abort needs to report itself
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    // time (normally the vDSO), yielding, std's hash seeds
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_restart_syscall,
    // the end of the thread
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The vCPU threads' filter, compiled once and installed by each thread for itself.
pub fn vcpu_filter() -> Result<BpfProgram, seccompiler::Error> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        VCPU_SYSCALLS.iter().map(|&nr| (nr, Vec::new())).collect();
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?
    .try_into()
    .map_err(seccompiler::Error::Backend)
}

/// Installs `filter` on the calling thread (only: other threads keep their own).
pub fn install(filter: &BpfProgram) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(filter)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_filtered_thread_keeps_its_work_and_loses_the_rest() {
        let filter = vcpu_filter().unwrap();
        let (mut reader, mut writer) = std::io::pipe().unwrap();

        let (wrote, opened) = std::thread::spawn(move || {
            install(&filter).unwrap();
            let wrote = writer.write_all(b"ok").is_ok();
            let opened = std::fs::File::open("/proc/self/status").map_err(|e| e.raw_os_error());
            (wrote, opened.map(|f| f.as_raw_fd()))
        })
        .join()
        .unwrap();

        assert!(wrote);
        let mut buf = [0u8; 2];
        std::io::Read::read_exact(&mut reader, &mut buf).unwrap();
        assert_eq!(&buf, b"ok");
        assert_eq!(opened, Err(Some(libc::EPERM)));
        // Threads that did not install it are unaffected.
        assert!(std::fs::File::open("/proc/self/status").is_ok());
    }
}
