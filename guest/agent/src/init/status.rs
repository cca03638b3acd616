//! The 1-byte exit status vmctl-init reports on the exit-status port.

use std::ffi::c_int;

/// The status reported when the command cannot be found or executed (as a shell does).
pub const CANNOT_RUN: u8 = 127;

/// Maps a `waitpid` status to the reported status: the exit code, or 128+N for a death by signal N.
pub fn from_wait_status(status: c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)).clamp(0, 255) as u8
    } else {
        // stopped or continued: not requested from waitpid, so not expected
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: c_int) -> c_int {
        (code & 0xff) << 8
    }

    fn signaled(sig: c_int, core: bool) -> c_int {
        sig | if core { 0x80 } else { 0 }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(from_wait_status(exited(0)), 0);
        assert_eq!(from_wait_status(exited(3)), 3);
        assert_eq!(from_wait_status(exited(255)), 255);
    }

    #[test]
    fn signals() {
        assert_eq!(from_wait_status(signaled(libc::SIGKILL, false)), 137);
        assert_eq!(from_wait_status(signaled(libc::SIGTERM, false)), 143);
        assert_eq!(from_wait_status(signaled(libc::SIGSEGV, true)), 139);
        assert_eq!(from_wait_status(signaled(64, false)), 192);
    }

    #[test]
    fn stopped_is_not_success() {
        assert_eq!(from_wait_status(0x137f), 1); // stopped by SIGSTOP
    }
}
