//! The disk's I/O workers: each virtio-blk device runs its disk operations on threads of its own,
//! so a slow disk never holds the VMM's event loop (and with it the VM's other devices), and many
//! requests are in flight at once. The event loop submits jobs and, woken by an eventfd, collects
//! their completions in whatever order they finish.
//!
//! A job's iovecs point into guest memory; the device keeps its `GuestMemoryMmap` (and so the
//! mappings) while any job is in flight, and a reset waits for every job to finish first
//! (`Handler::quiesce`), so no worker writes guest memory the driver has taken back.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::disk::Disk;
use crate::virtio::iovec::IoVecs;

/// Worker threads per disk: enough to keep a few requests in the host's kernel at once (a
/// queue-depth-32 load reaches the page cache or the device in parallel), few enough to cost
/// little (each thread has a small stack and sleeps when idle).
pub const WORKERS: usize = 4;
const WORKER_STACK: usize = 64 << 10;

/// One range of a DISCARD or WRITE_ZEROES request: byte offset, length, may deallocate.
#[derive(Clone, Copy, Debug)]
pub struct ZeroRange {
    pub offset: u64,
    pub len: u64,
    pub unmap: bool,
}

/// What a job does to the disk.
#[derive(Debug)]
pub enum Op {
    /// Fill the job's iovecs from byte `offset`.
    Read {
        offset: u64,
    },
    /// Write the job's iovecs at byte `offset`.
    Write {
        offset: u64,
    },
    Flush,
    Discard(Vec<ZeroRange>),
    WriteZeroes(Vec<ZeroRange>),
}

pub struct Job {
    /// The request's descriptor chain head: how the completion finds its request.
    pub head: u16,
    pub op: Op,
    pub iovs: IoVecs,
}

pub struct Done {
    pub head: u16,
    pub result: io::Result<()>,
    /// The job's iovecs, cleared, for the next request.
    pub iovs: IoVecs,
}

pub struct IoPool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    done_evt: Arc<EventFd>,
    workers: Vec<JoinHandle<()>>,
}

impl IoPool {
    /// Starts the workers of `disk`.
    pub fn start(disk: Arc<Disk>) -> io::Result<IoPool> {
        let (jobs_tx, jobs_rx) = channel::<Job>();
        let (done_tx, done_rx) = channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let done_evt = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let mut pool = IoPool {
            jobs: Some(jobs_tx),
            done: done_rx,
            done_evt: done_evt.clone(),
            workers: Vec::with_capacity(WORKERS),
        };
        for i in 0..WORKERS {
            let (disk, jobs, done, evt) = (
                disk.clone(),
                jobs_rx.clone(),
                done_tx.clone(),
                done_evt.clone(),
            );
            let worker = std::thread::Builder::new()
                .name(format!("vmm-blk{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&disk, &jobs, &done, &evt))?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Signalled whenever a job completes.
    pub fn done_event(&self) -> &EventFd {
        &self.done_evt
    }

    pub fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // Fails only once every worker is gone, which happens only after `drop`.
            let _ = jobs.send(job);
        }
    }

    /// A completion, if one is waiting.
    pub fn try_done(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// The next completion, waiting for it.
    pub fn wait_done(&self) -> Option<Done> {
        self.done.recv().ok()
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        // Closing the job channel ends each worker once the jobs before are done.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn work(disk: &Disk, jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, evt: &EventFd) {
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return, // the pool is gone
            }
        };
        let Job { head, op, mut iovs } = job;
        let result = match op {
            Op::Read { offset } => disk.read_at(iovs.as_mut_slice(), offset),
            Op::Write { offset } => disk.write_at(iovs.as_mut_slice(), offset),
            Op::Flush => disk.flush(),
            Op::Discard(ranges) => ranges
                .iter()
                .try_for_each(|r| disk.punch_hole(r.offset, r.len)),
            Op::WriteZeroes(ranges) => ranges
                .iter()
                .try_for_each(|r| disk.write_zeroes(r.offset, r.len, r.unmap)),
        };
        iovs.clear();
        if done.send(Done { head, result, iovs }).is_err() {
            return;
        }
        let _ = evt.write(1);
    }
}
