//! The console's way out: the vCPU that writes the UART hands its bytes to a bounded buffer and
//! never waits for whoever reads the console; a writer thread of its own does the blocking writes.
//!
//! When the reader stalls (a pipe nobody drains, a stopped terminal), the buffer fills and later
//! bytes are dropped and counted instead of blocking the vCPU, which would keep the VM from ever
//! being stopped. The count is reported when the VM ends (`ConsoleOut::dropped`).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes the console holds for a slow reader before it drops output.
pub const CONSOLE_BUFFER: usize = 1 << 20;
/// The most the writer takes out of the buffer for one write.
const CHUNK: usize = 64 << 10;

#[derive(Default)]
struct State {
    buffered: VecDeque<u8>,
    dropped: u64,
    /// No more bytes will come: the writer drains what is left and ends.
    closed: bool,
    /// The writer has ended (everything written, or the sink failed).
    done: bool,
    /// Bumped after each completed write, so a waiter can tell a slow reader from a stalled one.
    progress: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: bytes arrived or the console closed.
    to_writer: Condvar,
    /// Wakes `finish`: the writer made progress or ended.
    to_owner: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The vCPU side: takes the guest's output without ever blocking on the reader.
#[derive(Clone)]
pub struct ConsoleOut(Arc<Shared>);

/// The writer side, run on a thread of its own (`run`).
pub struct ConsoleWriter {
    shared: Arc<Shared>,
    sink: Box<dyn Write + Send>,
}

/// A console whose output ends in `sink`.
pub fn console_out(sink: Box<dyn Write + Send>) -> (ConsoleOut, ConsoleWriter) {
    let shared = Arc::new(Shared::default());
    let writer = ConsoleWriter {
        shared: shared.clone(),
        sink,
    };
    (ConsoleOut(shared), writer)
}

impl ConsoleOut {
    /// Queues `bytes` for the writer; what does not fit in `CONSOLE_BUFFER` is dropped and counted.
    pub fn push(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = self.0.lock();
        if state.done {
            return; // the sink failed (a closed stdout): output goes nowhere, as before
        }
        let room = CONSOLE_BUFFER.saturating_sub(state.buffered.len());
        let kept = room.min(bytes.len());
        state.buffered.extend(&bytes[..kept]);
        state.dropped += (bytes.len() - kept) as u64;
        drop(state);
        self.0.to_writer.notify_one();
    }

    /// What is waiting for the writer (for the UART's tests, which run no writer).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> Vec<u8> {
        self.0.lock().buffered.iter().copied().collect()
    }

    /// Bytes dropped so far because the reader did not keep up.
    pub fn dropped(&self) -> u64 {
        self.0.lock().dropped
    }

    /// No more output: lets the writer drain what is buffered, waiting while it makes progress.
    /// Gives up once no write completed for `patience` (the reader stalled): the rest is dropped
    /// (and counted) and the writer thread ends whenever its blocked write returns. Returns whether
    /// everything was written.
    pub fn finish(&self, patience: Duration) -> bool {
        let mut state = self.0.lock();
        state.closed = true;
        self.0.to_writer.notify_one();
        let mut seen = state.progress;
        let mut deadline = Instant::now() + patience;
        while !state.done {
            let now = Instant::now();
            if state.progress != seen {
                seen = state.progress;
                deadline = now + patience;
            } else if now >= deadline {
                let left = state.buffered.len() as u64;
                state.buffered.clear();
                state.dropped += left;
                return false;
            }
            state = self
                .0
                .to_owner
                .wait_timeout(state, deadline.saturating_duration_since(now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl ConsoleWriter {
    /// The writer thread's body: writes out whatever arrives until the console is closed and
    /// drained, or the sink fails.
    pub fn run(mut self) {
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let mut state = self.shared.lock();
            while state.buffered.is_empty() && !state.closed {
                state = self
                    .shared
                    .to_writer
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.buffered.is_empty() {
                break; // closed and drained
            }
            let n = state.buffered.len().min(CHUNK);
            chunk.clear();
            chunk.extend(state.buffered.drain(..n));
            drop(state);
            let written = self.sink.write_all(&chunk).and_then(|()| self.sink.flush());
            let mut state = self.shared.lock();
            state.progress += 1;
            if written.is_err() {
                // Nobody can read the console any more: drop everything from here on.
                state.buffered.clear();
                break;
            }
            drop(state);
            self.shared.to_owner.notify_all();
        }
        self.shared.lock().done = true;
        self.shared.to_owner.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};

    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);
    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn pipe() -> (OwnedFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array on success.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds are fresh and owned by nobody else.
        unsafe {
            (
                OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn everything_pushed_reaches_the_sink_in_order() {
        // Arrange
        let sink = Collected::default();
        let (out, writer) = console_out(Box::new(sink.clone()));
        let t = std::thread::spawn(move || writer.run());
        // Act
        for i in 0..1000u32 {
            out.push(format!("line {i}\n").as_bytes());
        }
        let complete = out.finish(Duration::from_secs(5));
        t.join().unwrap();
        // Assert
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert!(complete);
        assert_eq!(
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!(out.dropped(), 0);
    }

    #[test]
    fn a_stalled_reader_never_blocks_push_and_drops_are_counted() {
        // Arrange: a pipe nobody reads holds 64 KiB, then the writer blocks in write(2).
        let (_unread, write_end) = pipe();
        let (out, writer) = console_out(Box::new(write_end));
        std::thread::spawn(move || writer.run());
        let pushed = 4 * CONSOLE_BUFFER;
        // Act
        let started = Instant::now();
        for _ in 0..pushed / 4096 {
            out.push(&[b'x'; 4096]);
        }
        let pushing = started.elapsed();
        let complete = out.finish(Duration::from_millis(100));
        // Assert
        assert!(pushing < Duration::from_secs(2), "push took {pushing:?}");
        assert!(!complete);
        let dropped = out.dropped();
        assert!(
            dropped >= (pushed - CONSOLE_BUFFER - 2 * CHUNK) as u64 && dropped <= pushed as u64,
            "dropped {dropped} of {pushed}"
        );
    }

    #[test]
    fn a_closed_reader_ends_the_writer_and_later_output_is_ignored() {
        // Arrange
        let (read_end, write_end) = pipe();
        drop(read_end);
        let (out, writer) = console_out(Box::new(write_end));
        let t = std::thread::spawn(move || writer.run());
        // Act
        out.push(b"lost\n");
        t.join().unwrap(); // EPIPE (SIGPIPE is ignored by the test harness) ends it
        out.push(b"ignored\n");
        // Assert
        assert!(out.finish(Duration::from_millis(100)));
    }
}
