//! The agent's state: the container, its processes (by the host's ids) with their exit statuses
//! and stdio, guarded by one mutex; a condition variable wakes whoever waits for a change (Wait
//! requests, the init's end). Everything in it is bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use guest_protocol::{ExitStatus, Namespace, Stream, INIT_ID};

use crate::container::channel::Channel;
use crate::error::Error;
use crate::sys::fd::{shutdown, Shutdown};

/// Processes tracked at once (running, or ended and not yet evicted), the init included.
pub const MAX_PROCESSES: usize = 1024;
/// Ended exec'd processes whose status is kept; beyond, the oldest are forgotten.
pub const MAX_EXITED: usize = 256;
/// Statuses of not-yet-registered children kept while a launch is in flight.
const MAX_UNCLAIMED: usize = 1024;

/// One stdio stream of a process, on the agent's side.
#[derive(Debug, Default)]
pub enum Slot {
    /// The process has no such stream (a terminal process has only `tty`; others have no `tty`).
    #[default]
    Absent,
    /// Not attached: the pipe end (or a copy of the pty master) and bytes read from it that a
    /// broken connection did not take.
    Ready(OwnedFd, Vec<u8>),
    /// A connection relays it.
    Attached,
    /// Ended: output delivered to its end (or input closed).
    Done,
}

#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    pub status: Option<ExitStatus>,
    pub stdin: Slot,
    pub stdout: Slot,
    pub stderr: Slot,
    pub tty: Slot,
    /// The pty master, for resizes.
    pub master: Option<Arc<OwnedFd>>,
    /// The connection relaying stdin, shut down when the process ends.
    pub stdin_conn: Option<Arc<OwnedFd>>,
    /// When it ended.
    pub ended: Option<Instant>,
}

impl Proc {
    pub fn new(pid: i32) -> Proc {
        Proc {
            pid,
            status: None,
            stdin: Slot::Absent,
            stdout: Slot::Absent,
            stderr: Slot::Absent,
            tty: Slot::Absent,
            master: None,
            stdin_conn: None,
            ended: None,
        }
    }

    pub fn slot(&mut self, stream: Stream) -> &mut Slot {
        match stream {
            Stream::Stdin => &mut self.stdin,
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
            Stream::Tty => &mut self.tty,
        }
    }
}

/// Where the container is in its life.
#[derive(Debug, Default)]
pub enum Phase {
    #[default]
    Empty,
    Creating,
    /// The init is ready and waits for its start on this channel.
    Created(Channel),
    Starting,
    Running,
    /// The init has ended.
    Stopped,
}

/// What an exec needs to know about the container.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub init_pid: i32,
    pub namespaces: Vec<Namespace>,
    /// The inode of its own pid namespace, when it has one.
    pub pidns: Option<u64>,
}

#[derive(Default)]
pub struct Inner {
    pub phase: Phase,
    pub container: Option<ContainerInfo>,
    pub procs: HashMap<String, Proc>,
    /// Ids being created (not yet in `procs`).
    pub reserved: HashSet<String>,
    /// Ended exec'd processes, oldest first (eviction order).
    exited: VecDeque<String>,
    /// Launches in flight; while any is, statuses of unknown children are kept in `unclaimed`.
    launches: usize,
    unclaimed: VecDeque<(i32, ExitStatus)>,
    /// Wait requests for the init not yet answered.
    pub init_waiters: usize,
}

pub struct Table {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// Decodes a waitpid status.
pub fn exit_status(wstatus: i32) -> ExitStatus {
    if libc::WIFSIGNALED(wstatus) {
        ExitStatus::Signal(libc::WTERMSIG(wstatus))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(wstatus))
    }
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    pub fn new() -> Table {
        Table {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits for a change (or `timeout`).
    pub fn wait<'a>(&self, g: MutexGuard<'a, Inner>, timeout: Duration) -> MutexGuard<'a, Inner> {
        match self.changed.wait_timeout(g, timeout) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    /// Records that child `pid` ended; whether a tracked process (or a launch in flight) took it.
    pub fn record(&self, pid: i32, wstatus: i32) -> bool {
        let status = exit_status(wstatus);
        let mut g = self.lock();
        let found = g
            .procs
            .iter_mut()
            .find(|(_, p)| p.pid == pid && p.status.is_none())
            .map(|(id, p)| {
                p.status = Some(status);
                p.ended = Some(Instant::now());
                if let Some(conn) = p.stdin_conn.take() {
                    let _ = shutdown(std::os::fd::AsFd::as_fd(&*conn), Shutdown::Both);
                }
                id.clone()
            });
        let taken = match found {
            Some(id) => {
                if id == INIT_ID {
                    g.phase = Phase::Stopped;
                } else {
                    g.exited.push_back(id);
                    evict(&mut g);
                }
                true
            }
            None if g.launches > 0 => {
                if g.unclaimed.len() >= MAX_UNCLAIMED {
                    g.unclaimed.pop_front();
                }
                g.unclaimed.push_back((pid, status));
                true
            }
            None => false,
        };
        drop(g);
        self.notify();
        taken
    }

    /// Marks a launch in flight until the guard drops.
    pub fn begin_launch(self: &Arc<Self>) -> LaunchGuard {
        self.lock().launches += 1;
        LaunchGuard(self.clone())
    }

    /// Adds process `id`, taking a status its child recorded before it was registered.
    pub fn register(&self, id: &str, mut proc: Proc) {
        let mut g = self.lock();
        g.reserved.remove(id);
        if let Some(i) = g.unclaimed.iter().position(|(pid, _)| *pid == proc.pid) {
            if let Some((_, status)) = g.unclaimed.remove(i) {
                proc.status = Some(status);
                proc.ended = Some(Instant::now());
                if id == INIT_ID {
                    g.phase = Phase::Stopped;
                } else {
                    g.exited.push_back(id.to_owned());
                }
            }
        }
        g.procs.insert(id.to_owned(), proc);
        evict(&mut g);
        drop(g);
        self.notify();
    }

    /// Reserves a new exec id: Invalid when in use, State when too many processes are tracked.
    pub fn reserve(&self, id: &str) -> Result<(), Error> {
        let mut g = self.lock();
        if id == INIT_ID || g.procs.contains_key(id) || g.reserved.contains(id) {
            return Err(Error::IdInUse(id.to_owned()));
        }
        if g.procs.len() + g.reserved.len() >= MAX_PROCESSES {
            return Err(Error::TooMany {
                what: "processes",
                limit: MAX_PROCESSES,
                hint: "wait for some to end first",
            });
        }
        g.reserved.insert(id.to_owned());
        Ok(())
    }

    pub fn unreserve(&self, id: &str) {
        self.lock().reserved.remove(id);
    }

    /// Takes stream `stream` of `id` for a connection to relay.
    pub fn attach(&self, id: &str, stream: Stream) -> Result<(OwnedFd, Vec<u8>), Error> {
        let mut g = self.lock();
        let p = g
            .procs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownProcess(id.to_owned()))?;
        let terminal = p.master.is_some();
        let unavailable = |why| Error::StreamUnavailable {
            id: id.to_owned(),
            stream,
            why,
        };
        let slot = p.slot(stream);
        match std::mem::replace(slot, Slot::Attached) {
            Slot::Ready(fd, pending) => Ok((fd, pending)),
            other => {
                let err = match other {
                    Slot::Attached => unavailable("is already attached"),
                    Slot::Done => unavailable("has already ended"),
                    _ if stream == Stream::Tty => Error::NoTerminal(id.to_owned()),
                    _ if terminal => {
                        unavailable("does not exist: the process has a terminal (attach tty)")
                    }
                    _ => unavailable("does not exist"),
                };
                *slot = other;
                Err(err)
            }
        }
    }

    /// Gives back a stream whose connection broke before its end.
    pub fn release(&self, id: &str, stream: Stream, fd: OwnedFd, pending: Vec<u8>) {
        if let Some(p) = self.lock().procs.get_mut(id) {
            *p.slot(stream) = Slot::Ready(fd, pending);
        }
        self.notify();
    }

    /// Marks a stream ended (delivered).
    pub fn finish(&self, id: &str, stream: Stream) {
        if let Some(p) = self.lock().procs.get_mut(id) {
            *p.slot(stream) = Slot::Done;
        }
        self.notify();
    }

    /// Remembers the connection relaying `id`'s stdin (shut down when the process ends).
    pub fn set_stdin_conn(&self, id: &str, conn: Arc<OwnedFd>) {
        let mut g = self.lock();
        if let Some(p) = g.procs.get_mut(id) {
            if p.status.is_some() {
                let _ = shutdown(std::os::fd::AsFd::as_fd(&*conn), Shutdown::Both);
            } else {
                p.stdin_conn = Some(conn);
            }
        }
    }

    /// Blocks until `id` ends; its status.
    pub fn wait_exit(&self, id: &str) -> Result<ExitStatus, Error> {
        let mut g = self.lock();
        loop {
            match g.procs.get(id) {
                None => return Err(Error::UnknownProcess(id.to_owned())),
                Some(Proc {
                    status: Some(s), ..
                }) => return Ok(*s),
                Some(_) => g = self.wait(g, Duration::from_secs(1)),
            }
        }
    }

    /// After the init ended: waits (bounded) until its output reached the host: every output
    /// stream ended, or none attached `grace` after the end, or `limit` after it in any case;
    /// then until the Wait requests for it were answered (1 s at most).
    pub fn wait_init_delivered(&self, grace: Duration, limit: Duration) {
        let start = Instant::now();
        let mut g = self.lock();
        loop {
            let (all_done, any_attached) = match g.procs.get(INIT_ID) {
                Some(p) => {
                    let outs = [&p.stdout, &p.stderr, &p.tty];
                    (
                        outs.iter().all(|s| matches!(s, Slot::Done | Slot::Absent)),
                        outs.iter().any(|s| matches!(s, Slot::Attached)),
                    )
                }
                None => (true, false),
            };
            let waited = start.elapsed();
            if all_done || waited >= limit || (waited >= grace && !any_attached) {
                break;
            }
            g = self.wait(g, Duration::from_millis(200));
        }
        let answered_by = Instant::now() + Duration::from_secs(1);
        while g.init_waiters > 0 && Instant::now() < answered_by {
            g = self.wait(g, Duration::from_millis(50));
        }
    }
}

/// Forgets the oldest ended exec'd processes beyond [`MAX_EXITED`].
fn evict(g: &mut Inner) {
    while g.exited.len() > MAX_EXITED {
        if let Some(id) = g.exited.pop_front() {
            g.procs.remove(&id);
        }
    }
}

/// A launch in flight; see [`Table::begin_launch`].
pub struct LaunchGuard(Arc<Table>);

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.launches = g.launches.saturating_sub(1);
        if g.launches == 0 {
            g.unclaimed.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }

    #[test]
    fn statuses_decode() {
        assert_eq!(exit_status(exited(3)), ExitStatus::Code(3));
        assert_eq!(exit_status(9), ExitStatus::Signal(9));
    }

    #[test]
    fn a_status_reaped_before_registration_is_not_lost() {
        let t = Arc::new(Table::new());
        let guard = t.begin_launch();

        assert!(t.record(42, exited(7)));
        t.register("e1", Proc::new(42));
        drop(guard);

        assert_eq!(t.wait_exit("e1").unwrap(), ExitStatus::Code(7));
        assert!(
            !t.record(43, 0),
            "no launch in flight: an orphan's status is dropped"
        );
    }

    #[test]
    fn ids_are_unique_and_unknown_ids_are_state_errors() {
        let t = Table::new();
        t.register(INIT_ID, Proc::new(1));
        assert!(matches!(t.reserve(INIT_ID), Err(Error::IdInUse(_))));
        t.reserve("a").unwrap();
        assert!(matches!(t.reserve("a"), Err(Error::IdInUse(_))));
        let e = t.wait_exit("nope").unwrap_err();
        assert_eq!(e.kind(), guest_protocol::ErrorKind::State);
    }

    #[test]
    fn ended_processes_are_evicted_oldest_first() {
        let t = Table::new();
        for i in 0..(MAX_EXITED + 5) {
            t.register(&format!("p{i}"), Proc::new(1000 + i as i32));
            t.record(1000 + i as i32, 0);
        }
        let g = t.lock();
        assert_eq!(g.procs.len(), MAX_EXITED);
        assert!(!g.procs.contains_key("p0"));
        assert!(g.procs.contains_key(&format!("p{}", MAX_EXITED + 4)));
    }

    #[test]
    fn streams_attach_once_and_can_be_given_back() {
        let t = Table::new();
        let mut p = Proc::new(5);
        let (r, _w) = crate::sys::fd::pipe().unwrap();
        p.stdout = Slot::Ready(r, Vec::new());
        t.register("x", p);

        let (fd, _) = t.attach("x", Stream::Stdout).unwrap();
        assert!(t.attach("x", Stream::Stdout).is_err(), "attached twice");
        t.release("x", Stream::Stdout, fd, b"left".to_vec());
        let (_, pending) = t.attach("x", Stream::Stdout).unwrap();
        assert_eq!(pending, b"left");
        t.finish("x", Stream::Stdout);
        assert!(t.attach("x", Stream::Stdout).is_err(), "ended");
        assert!(matches!(
            t.attach("x", Stream::Tty),
            Err(Error::NoTerminal(_))
        ));
    }
}
