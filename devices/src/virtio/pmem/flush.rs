//! FLUSH requests: a worker thread runs `fsync` on the file so a slow disk never blocks the
//! VMM's event loop (which also serves the console and every other device), and the requests
//! waiting for it.
//!
//! At most one fsync is in flight. Requests that arrive meanwhile wait for the next one (an fsync
//! that started before they arrived does not cover their writes), and every request waiting when
//! an fsync starts is answered by it: N concurrent flushes cost at most two fsyncs.

use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::request::StatusLoc;

/// The fsync worker: `start` asks for one fsync, `done_event` becomes readable when it finished.
#[derive(Debug)]
pub struct Flusher {
    jobs: SyncSender<()>,
    results: Receiver<io::Result<()>>,
    done: EventFd,
}

impl Flusher {
    /// Starts the worker thread; it ends when the `Flusher` is dropped.
    pub fn spawn(file: File) -> io::Result<Flusher> {
        let done = EventFd::new(EFD_NONBLOCK)?;
        let notify = done.try_clone()?;
        let (jobs, job_rx) = mpsc::sync_channel::<()>(1);
        let (result_tx, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("pmem-flush".into())
            .stack_size(64 << 10)
            .spawn(move || {
                while job_rx.recv().is_ok() {
                    if result_tx.send(file.sync_all()).is_err() {
                        break;
                    }
                    // Only fails if the counter would overflow: the event is pending anyway.
                    let _ = notify.write(1);
                }
            })?;
        Ok(Flusher {
            jobs,
            results,
            done,
        })
    }

    /// Asks for one fsync; false if the worker is gone (or one is already queued, which the
    /// caller never does).
    pub fn start(&self) -> bool {
        self.jobs.try_send(()).is_ok()
    }

    pub fn done_event(&self) -> &EventFd {
        &self.done
    }

    /// The result of a finished fsync, if one finished. A worker that died counts as a failure.
    pub fn finished(&self) -> Option<io::Result<()>> {
        let _ = self.done.read();
        match self.results.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err(io::Error::other("pmem flush worker ended")))
            }
        }
    }
}

/// A FLUSH request waiting for its answer.
#[derive(Clone, Copy, Debug)]
pub struct PendingFlush {
    pub head: u16,
    pub status: StatusLoc,
}

/// The FLUSH requests of one activation: those the running fsync answers, and those waiting for
/// the next. Both lists are allocated once, at activation, with room for a whole queue.
#[derive(Debug, Default)]
pub struct Flushes {
    pub in_flight: Vec<PendingFlush>,
    pub waiting: Vec<PendingFlush>,
    /// An fsync is running (possibly for requests a reset dropped): the next waits for it.
    pub running: bool,
    /// Most requests the driver can have outstanding: the queue's size.
    limit: usize,
}

/// The driver has more requests outstanding than its queue holds: it reused descriptors.
#[derive(Debug, PartialEq, Eq)]
pub struct TooMany;

impl Flushes {
    /// Makes room for a queue of `size` entries (called at activation).
    pub fn prepare(&mut self, size: usize) {
        self.in_flight.clear();
        self.waiting.clear();
        self.limit = size;
        self.in_flight.reserve(size);
        self.waiting.reserve(size);
    }

    /// Forgets every request (a reset); a running fsync still completes, unanswered.
    pub fn forget(&mut self) {
        self.in_flight.clear();
        self.waiting.clear();
    }

    pub fn push(&mut self, req: PendingFlush) -> Result<(), TooMany> {
        if self.in_flight.len() + self.waiting.len() >= self.limit {
            return Err(TooMany);
        }
        self.waiting.push(req);
        Ok(())
    }

    /// If no fsync runs and requests wait, moves them in flight and returns true: the caller
    /// starts an fsync.
    pub fn take_next(&mut self) -> bool {
        if self.running || self.waiting.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.in_flight, &mut self.waiting);
        self.waiting.clear();
        self.running = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    pub fn wait_done(f: &Flusher) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = f.finished() {
                return r;
            }
            assert!(Instant::now() < deadline, "fsync did not finish");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn req(head: u16) -> PendingFlush {
        PendingFlush {
            head,
            status: StatusLoc::default(),
        }
    }

    #[test]
    fn the_worker_syncs_and_reports() {
        let f = vmm_sys_util::tempfile::TempFile::new().unwrap();
        let flusher = Flusher::spawn(f.into_file()).unwrap();
        assert!(flusher.finished().is_none());
        assert!(flusher.start());
        wait_done(&flusher).unwrap();
        assert!(flusher.start());
        wait_done(&flusher).unwrap();
    }

    #[test]
    fn a_failing_fsync_is_reported() {
        // /dev/null has no fsync: EINVAL.
        let flusher = Flusher::spawn(File::open("/dev/null").unwrap()).unwrap();
        assert!(flusher.start());
        assert!(wait_done(&flusher).is_err());
    }

    #[test]
    fn requests_arriving_during_an_fsync_wait_for_the_next() {
        let mut fl = Flushes::default();
        fl.prepare(4);
        fl.push(req(0)).unwrap();
        fl.push(req(1)).unwrap();
        assert!(fl.take_next());
        assert_eq!(fl.in_flight.len(), 2);
        fl.push(req(2)).unwrap();
        assert!(!fl.take_next(), "one fsync at a time");
        fl.in_flight.clear();
        fl.running = false;
        assert!(fl.take_next());
        assert_eq!(fl.in_flight[0].head, 2);
        assert!(fl.waiting.is_empty());
    }

    #[test]
    fn more_requests_than_the_queue_holds_are_refused() {
        let mut fl = Flushes::default();
        fl.prepare(2);
        fl.push(req(0)).unwrap();
        assert!(fl.take_next());
        fl.push(req(0)).unwrap();
        assert_eq!(fl.push(req(0)), Err(TooMany));
        // Nothing grows past the capacity reserved at activation.
        assert!(fl.waiting.capacity() >= 2);
        assert_eq!(fl.waiting.len() + fl.in_flight.len(), 2);
    }

    #[test]
    fn a_reset_forgets_requests_but_not_the_running_fsync() {
        let mut fl = Flushes::default();
        fl.prepare(4);
        fl.push(req(0)).unwrap();
        assert!(fl.take_next());
        fl.push(req(1)).unwrap();
        fl.forget();
        assert!(fl.in_flight.is_empty() && fl.waiting.is_empty());
        assert!(fl.running);
    }
}
