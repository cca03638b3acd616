//! The guest's serial console of a container VM: a debugging log in the state directory,
//! bounded so a chatty guest cannot fill the host's disk. It also watches for the guest
//! kernel's OOM-kill line (printed at KERN_ERR, so `quiet` keeps it), which is how the
//! monitor learns that the container went over its memory.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// At most this much of the console is kept; the rest is counted and dropped.
pub const MAX_BYTES: u64 = 4 << 20;
/// The end of the guest kernel's "Out of memory: Killed process N" (and its memcg variant).
const OOM_KILL: &[u8] = b"ut of memory: Killed process";
/// The bytes of a cut OOM line that one write can end with.
const CARRY: usize = OOM_KILL.len() - 1;

pub struct ConsoleLog {
    file: File,
    written: u64,
    dropped: u64,
    /// The last bytes seen, so that the OOM line is found across writes.
    carry: [u8; CARRY],
    carry_len: usize,
    oom_killed: Arc<AtomicBool>,
}

impl ConsoleLog {
    pub fn create(path: &Path, oom_killed: Arc<AtomicBool>) -> io::Result<ConsoleLog> {
        Ok(ConsoleLog {
            file: File::create(path)?,
            written: 0,
            dropped: 0,
            carry: [0; CARRY],
            carry_len: 0,
            oom_killed,
        })
    }

    /// Looks for the OOM line without allocating: it sees every byte of the console.
    fn watch(&mut self, buf: &[u8]) {
        if self.oom_killed.load(Ordering::Relaxed) {
            return;
        }
        // The carried tail joined to the new bytes' head holds a line cut between writes.
        let head = &buf[..buf.len().min(CARRY)];
        let mut joint = [0u8; 2 * CARRY];
        joint[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
        let joint_len = self.carry_len + head.len();
        joint[self.carry_len..joint_len].copy_from_slice(head);
        if contains(&joint[..joint_len], OOM_KILL) || contains(buf, OOM_KILL) {
            self.oom_killed.store(true, Ordering::Relaxed);
        }
        let tail = if buf.len() >= CARRY {
            &buf[buf.len() - CARRY..]
        } else {
            &joint[joint_len.saturating_sub(CARRY)..joint_len]
        };
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.watch(buf);
        let room = MAX_BYTES.saturating_sub(self.written) as usize;
        let keep = room.min(buf.len());
        if keep > 0 {
            self.file.write_all(&buf[..keep])?;
            self.written += keep as u64;
        }
        if keep < buf.len() {
            if self.dropped == 0 {
                let _ = self
                    .file
                    .write_all(b"\n[vmctl: console log full, the rest is dropped]\n");
            }
            self.dropped += (buf.len() - keep) as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The last `n` lines of the console log at `path`, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_kill_line_is_seen_even_when_cut_between_writes() {
        // Arrange
        let dir = std::env::temp_dir().join(format!("vmctl-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let mut log = ConsoleLog::create(&dir.join("console.log"), flag.clone()).unwrap();
        // Act
        log.write_all(b"[ 1.0] booting\n[ 2.0] Out of mem").unwrap();
        let before = flag.load(Ordering::Relaxed);
        for b in b"ory: Killed process 42 (dd)\n" {
            log.write_all(&[*b]).unwrap();
        }
        // Assert
        assert!(!before);
        assert!(flag.load(Ordering::Relaxed));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
