//! One session: a guest mount on one connection, served by a few worker threads.
//!
//! Each worker takes the connection's read side in turn, reads one frame, registers its tag as
//! in flight, lets go of the read side and serves the request while the next worker reads the
//! next one: up to `workers` requests are served at once, which is also the bound on requests in
//! flight (the client's further requests wait in the socket). Workers start on demand: one at
//! first, another when the last idle one takes a request. Replies are written whole under
//! the write side's lock. A Tflush is answered after the reply of the request it flushes (by the
//! worker that sends that reply), or at once if that request is not in flight.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;

use crate::budget::Budget;
use crate::errno::{Errno, EINVAL, EOPNOTSUPP};
use crate::error::{Error, Result};
use crate::fid::FidTable;
use crate::frame;
use crate::limits::Limits;
use crate::proto::{self, ty, DecodeError};
use crate::share::Shares;
use crate::wire::OutBuf;

/// Frames allowed before Tversion has negotiated an msize.
const PRE_VERSION_MSIZE: u32 = 8192;
/// The smallest msize the Linux client accepts.
const MIN_MSIZE: u32 = 4096;
/// Tflushes that may wait on one request; more fail with EAGAIN.
const MAX_FLUSHES_PER_TAG: usize = 8;
/// Extended attribute values (of the largest size) a session's fids may hold at once.
const XATTR_VALUES_HELD: usize = 16;
/// Size of the read side's buffer (small frames come in with one read).
const READ_BUFFER: usize = 16 * 1024;

/// Serves one 9P2000.L session on a connected stream until the client closes it.
///
/// Returns `Ok(())` when the client closes the connection between frames, and an error when it
/// breaks the protocol in a way that ends the session (a frame over msize, a frame cut short) or
/// the connection fails. Either way the connection is shut down and every fid of the session is
/// released when this returns. Blocks the calling thread; run one per connection, on a blocking
/// stream. To end a session from the host (the VM is going away), keep a `try_clone()` of the
/// stream and `shutdown(Shutdown::Both)` it: the session sees the end of its stream and returns.
pub fn serve(conn: UnixStream, shares: Arc<Shares>, limits: Limits) -> Result<()> {
    let writer = conn.try_clone().map_err(Error::CloneSocket)?;
    let result = serve_io(&conn, writer, shares, limits);
    let _ = conn.shutdown(std::net::Shutdown::Both);
    result
}

/// [`serve`] on any pair of byte streams: `reader` carries the client's requests, `writer` the
/// replies.
pub fn serve_io<R, W>(reader: R, writer: W, shares: Arc<Shares>, limits: Limits) -> Result<()>
where
    R: Read + Send,
    W: Write + Send,
{
    let limits = limits.sanitized();
    let session = Session {
        shares,
        limits,
        msize: AtomicU32::new(PRE_VERSION_MSIZE.min(limits.max_msize)),
        fids: FidTable::new(limits.max_fids),
        xattr_budget: Budget::new(XATTR_VALUES_HELD * limits.max_xattr_size),
        inflight: Mutex::new(HashMap::new()),
        idle: Condvar::new(),
        closing: AtomicBool::new(false),
    };
    let io = Io {
        reader: Mutex::new(BufReader::with_capacity(READ_BUFFER, reader)),
        writer: Mutex::new(writer),
    };
    let pool = Pool {
        max: limits.workers,
        spawned: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        error: Mutex::new(None),
    };
    let started = std::thread::scope(|scope| spawn_worker(scope, &session, &io, &pool));
    session.fids.clear();
    if let Err(e) = started {
        return Err(Error::Spawn(e));
    }
    let error = lock(&pool.error).take();
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A session's workers: started on demand, when the last idle one takes a request (so a quiet
/// session has one or two threads), up to `max`.
struct Pool {
    max: usize,
    spawned: AtomicUsize,
    /// Workers waiting for (or reading) the next request.
    idle: AtomicUsize,
    /// The first error that ended the session.
    error: Mutex<Option<Error>>,
}

/// Starts one more worker unless `max` are running.
fn spawn_worker<'scope, R, W>(
    scope: &'scope Scope<'scope, '_>,
    session: &'scope Session,
    io: &'scope Io<R, W>,
    pool: &'scope Pool,
) -> std::io::Result<()>
where
    R: Read + Send,
    W: Write + Send,
{
    if pool.spawned.fetch_add(1, Ordering::SeqCst) >= pool.max {
        pool.spawned.fetch_sub(1, Ordering::SeqCst);
        return Ok(());
    }
    pool.idle.fetch_add(1, Ordering::SeqCst);
    let busy = move || {
        if pool.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Nobody is left to read the next request: start a worker for it (a failure to
            // start one only means fewer requests at once).
            let _ = spawn_worker(scope, session, io, pool);
        }
    };
    let idle = move || {
        pool.idle.fetch_add(1, Ordering::SeqCst);
    };
    let spawned = std::thread::Builder::new()
        .name("vmctl-9p".into())
        .spawn_scoped(scope, move || {
            if let Err(e) = session.worker(io, &busy, &idle) {
                lock(&pool.error).get_or_insert(e);
            }
        });
    if let Err(e) = spawned {
        pool.spawned.fetch_sub(1, Ordering::SeqCst);
        pool.idle.fetch_sub(1, Ordering::SeqCst);
        return Err(e);
    }
    Ok(())
}

/// The two sides of the connection.
struct Io<R, W> {
    reader: Mutex<BufReader<R>>,
    writer: Mutex<W>,
}

/// A worker's buffers, reused from request to request.
#[derive(Default)]
pub(crate) struct Buffers {
    request: Vec<u8>,
    pub(crate) out: OutBuf,
    /// getdents64 records for Treaddir.
    pub(crate) dents: Vec<u8>,
}

/// The state of one session, shared by its workers.
pub(crate) struct Session {
    pub(crate) shares: Arc<Shares>,
    pub(crate) limits: Limits,
    msize: AtomicU32,
    pub(crate) fids: FidTable,
    /// Bytes of extended attributes the session's fids hold.
    pub(crate) xattr_budget: Budget,
    /// Tags being served, each with the tags of the Tflushes waiting on it.
    inflight: Mutex<HashMap<u16, Vec<u16>>>,
    idle: Condvar,
    closing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// The negotiated msize.
    pub(crate) fn msize(&self) -> u32 {
        self.msize.load(Ordering::Relaxed)
    }

    /// Serves requests until the session ends. `busy` is called when the worker has taken a
    /// request, `idle` when it is done with it.
    fn worker<R: Read, W: Write>(
        &self,
        io: &Io<R, W>,
        busy: &dyn Fn(),
        idle: &dyn Fn(),
    ) -> Result<()> {
        let mut bufs = Buffers::default();
        loop {
            let mut reader = lock(&io.reader);
            if self.closing.load(Ordering::SeqCst) {
                return Ok(());
            }
            let header = match frame::read(&mut *reader, &mut bufs.request, self.msize()) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.closing.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                Err(e) => {
                    self.closing.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            let body = &bufs.request[..header.body_len];
            match header.ty {
                ty::TVERSION => {
                    // Served with the read side held: nothing new starts until it is done.
                    self.version(body, header.tag, &mut bufs.out);
                    drop(reader);
                    self.send(io, &bufs.out)?;
                    continue;
                }
                ty::TFLUSH => {
                    drop(reader);
                    self.flush(io, body, header.tag, &mut bufs.out)?;
                    continue;
                }
                _ => {}
            }
            let fresh = self.begin(header.tag);
            drop(reader);
            if !fresh {
                // The client reused a tag still in flight: refuse the newcomer only.
                bufs.out.begin(ty::RLERROR, header.tag);
                bufs.out.put_u32(EINVAL.0 as u32);
                bufs.out.finish();
                self.send(io, &bufs.out)?;
                continue;
            }
            busy();
            let body = &bufs.request[..header.body_len];
            self.handle(header.ty, header.tag, body, &mut bufs.out, &mut bufs.dents);
            let sent = self.reply(io, header.tag, &bufs.out);
            idle();
            sent?;
        }
    }

    /// Registers `tag` as in flight; false if it already is.
    fn begin(&self, tag: u16) -> bool {
        let mut inflight = lock(&self.inflight);
        if inflight.contains_key(&tag) {
            return false;
        }
        inflight.insert(tag, Vec::new());
        true
    }

    /// Decodes and serves one request into `out`, as its reply or an Rlerror.
    fn handle(&self, ty: u8, tag: u16, body: &[u8], out: &mut OutBuf, dents: &mut Vec<u8>) {
        out.begin(ty.wrapping_add(1), tag);
        let result = match proto::decode(ty, body) {
            Ok(req) => self.dispatch(req, out, dents),
            Err(DecodeError::Malformed) => Err(EINVAL),
            Err(DecodeError::Unknown) => Err(EOPNOTSUPP),
        };
        if let Err(Errno(errno)) = result {
            out.begin(ty::RLERROR, tag);
            out.put_u32(errno as u32);
        }
        out.finish();
    }

    /// Sends a request's reply, then the Rflush of every Tflush that waited on it.
    ///
    /// The tag is freed before the reply is written (a client may reuse it as soon as it reads
    /// the reply) but with the write side already held: a Tflush that finds the tag free then
    /// waits for the write side, so its Rflush still follows the reply.
    fn reply<R, W: Write>(&self, io: &Io<R, W>, tag: u16, out: &OutBuf) -> Result<()> {
        let mut writer = lock(&io.writer);
        let flushes = {
            let mut inflight = lock(&self.inflight);
            let flushes = inflight.remove(&tag).unwrap_or_default();
            if inflight.is_empty() {
                self.idle.notify_all();
            }
            flushes
        };
        let mut result = writer.write_all(out.bytes());
        for flush_tag in flushes {
            if result.is_ok() {
                result = writer.write_all(&rflush(flush_tag));
            }
        }
        drop(writer);
        result.map_err(|e| self.write_failed(e))
    }

    /// Sends a reply that waits on nothing.
    fn send<R, W: Write>(&self, io: &Io<R, W>, out: &OutBuf) -> Result<()> {
        let mut writer = lock(&io.writer);
        writer
            .write_all(out.bytes())
            .map_err(|e| self.write_failed(e))
    }

    fn write_failed(&self, e: std::io::Error) -> Error {
        self.closing.store(true, Ordering::SeqCst);
        Error::Write(e)
    }

    /// Tflush: Rflush once the flushed request has been answered.
    fn flush<R, W: Write>(
        &self,
        io: &Io<R, W>,
        body: &[u8],
        tag: u16,
        out: &mut OutBuf,
    ) -> Result<()> {
        let oldtag = match proto::decode_flush(body) {
            Ok(t) => t,
            Err(_) => {
                out.begin(ty::RLERROR, tag);
                out.put_u32(EINVAL.0 as u32);
                out.finish();
                return self.send(io, out);
            }
        };
        {
            let mut inflight = lock(&self.inflight);
            if let Some(waiting) = inflight.get_mut(&oldtag) {
                if waiting.len() < MAX_FLUSHES_PER_TAG {
                    waiting.push(tag);
                    return Ok(());
                }
                drop(inflight);
                out.begin(ty::RLERROR, tag);
                out.put_u32(libc::EAGAIN as u32);
                out.finish();
                return self.send(io, out);
            }
        }
        let mut writer = lock(&io.writer);
        writer
            .write_all(&rflush(tag))
            .map_err(|e| self.write_failed(e))
    }

    /// Tversion: waits until no request is in flight, drops every fid, settles the msize.
    fn version(&self, body: &[u8], tag: u16, out: &mut OutBuf) {
        let (client_msize, version) = match proto::decode_version(body) {
            Ok(v) => v,
            Err(_) => {
                out.begin(ty::RLERROR, tag);
                out.put_u32(EINVAL.0 as u32);
                out.finish();
                return;
            }
        };
        let mut inflight = lock(&self.inflight);
        while !inflight.is_empty() {
            inflight = self
                .idle
                .wait(inflight)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(inflight);
        self.fids.clear();
        let msize = client_msize.min(self.limits.max_msize);
        out.begin(ty::RVERSION, tag);
        if version.starts_with(b"9P2000.L") && msize >= MIN_MSIZE {
            self.msize.store(msize, Ordering::SeqCst);
            out.put_u32(msize);
            out.put_str(b"9P2000.L");
        } else {
            out.put_u32(msize.max(MIN_MSIZE));
            out.put_str(b"unknown");
        }
        out.finish();
    }
}

/// An Rflush for `tag`.
fn rflush(tag: u16) -> [u8; 7] {
    let t = tag.to_le_bytes();
    [7, 0, 0, 0, ty::RFLUSH, t[0], t[1]]
}
