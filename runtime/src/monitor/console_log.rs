//! The guest's serial console of a container VM: a debugging log in the state directory,
//! bounded so a chatty guest cannot fill the host's disk.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// At most this much of the console is kept; the rest is counted and dropped.
pub const MAX_BYTES: u64 = 4 << 20;

pub struct ConsoleLog {
    file: File,
    written: u64,
    dropped: u64,
}

impl ConsoleLog {
    pub fn create(path: &Path) -> io::Result<ConsoleLog> {
        Ok(ConsoleLog {
            file: File::create(path)?,
            written: 0,
            dropped: 0,
        })
    }
}

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
