//! The device: its state, the `VirtioDevice` side the transport drives (from vCPU threads), and
//! the request queue processing the event loop runs.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::backend::FileMapping;
use super::flush::{Flusher, Flushes, PendingFlush, TooMany};
use super::request::{self, Kind, StatusLoc, RESP_EIO, RESP_OK};
use super::{PmemConfig, PmemMapping};
use crate::virtio::queue::{drain, notify, Budget, Served};
use crate::virtio::{
    device_type, read_config_bytes, ActivateError, GuestMemoryMmap, Interrupt, QueueContext,
    VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::{Error, Result};

/// Entries of the request queue. Linux keeps one flush in flight per device; more only cost
/// the guest descriptor-table memory.
pub const QUEUE_SIZE: u16 = 256;

/// Requests served per turn of the event loop (see `queue::Budget`).
const BUDGET: Budget = Budget {
    chains: 128,
    bytes: u64::MAX,
};

/// Config space: `le64 start; le64 size;`.
const CONFIG_LEN: usize = 16;

/// A virtio-pmem device.
pub struct Pmem {
    backend: FileMapping,
    guest_addr: u64,
    config: [u8; CONFIG_LEN],
    queue_events: [EventFd; 1],
    /// The fsync worker; None for a read-only (private) mapping, where FLUSH has nothing to do.
    pub(super) flusher: Option<Flusher>,
    active: Option<Active>,
    pub(super) flushes: Flushes,
    /// The event loop accepted our file descriptors (see `event_handler`); activation needs it.
    pub(super) registered: bool,
}

/// What the device has between DRIVER_OK and a reset.
struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<Interrupt>,
}

/// Why the queue cannot be served any longer: the device needs a reset.
#[derive(Debug)]
enum QueueFault {
    /// The driver broke the queue itself (an available index out of range, a head index past
    /// the table, rings outside memory).
    Queue,
    /// More requests outstanding than the queue holds.
    TooMany,
}

impl From<virtio_queue::Error> for QueueFault {
    fn from(_: virtio_queue::Error) -> Self {
        QueueFault::Queue
    }
}

impl From<TooMany> for QueueFault {
    fn from(_: TooMany) -> Self {
        QueueFault::TooMany
    }
}

impl Pmem {
    /// Opens and maps `config.path` for a region at `guest_addr` (2 MiB aligned).
    pub fn open(config: PmemConfig, guest_addr: u64) -> Result<Self> {
        let backend = FileMapping::open(&config.path, config.read_only, guest_addr)?;
        let flusher = if config.read_only {
            None
        } else {
            let worker = backend
                .file()
                .try_clone()
                .and_then(Flusher::spawn)
                .map_err(|source| Error::Io {
                    what: format!(
                        "pmem {}: cannot start its flush thread",
                        config.path.display()
                    ),
                    source,
                })?;
            Some(worker)
        };
        let queue_event = EventFd::new(EFD_NONBLOCK).map_err(|source| Error::Io {
            what: "cannot create an eventfd for virtio-pmem".into(),
            source,
        })?;
        let mut cfg = [0u8; CONFIG_LEN];
        cfg[..8].copy_from_slice(&guest_addr.to_le_bytes());
        cfg[8..].copy_from_slice(&backend.len().to_le_bytes());
        Ok(Pmem {
            backend,
            guest_addr,
            config: cfg,
            queue_events: [queue_event],
            flusher,
            active: None,
            flushes: Flushes::default(),
            registered: false,
        })
    }

    pub fn mapping(&self) -> PmemMapping {
        PmemMapping {
            guest_addr: self.guest_addr,
            len: self.backend.len(),
            host_addr: self.backend.host_addr(),
            read_only: self.backend.read_only(),
        }
    }

    /// The size of the file itself (the region may be larger: see `ALIGNMENT`).
    pub fn file_len(&self) -> u64 {
        self.backend.file_len()
    }

    pub(super) fn queue_event(&self) -> &EventFd {
        &self.queue_events[0]
    }

    pub(super) fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Serves every available request. Bad requests are answered with an error (or, without a
    /// place for the status, returned with nothing written); a broken queue stops the device
    /// with DEVICE_NEEDS_RESET.
    pub(super) fn process_queue(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let read_only = self.flusher.is_none();
        match serve_queue(active, &mut self.flushes, read_only) {
            Ok(more) => {
                if more {
                    // Budget spent with requests left: come back on the next turn.
                    let _ = self.queue_events[0].write(1);
                }
            }
            Err(_) => {
                self.fail();
                return;
            }
        }
        self.start_flush();
    }

    /// Answers the requests the finished fsync covered, then starts the next one if needed.
    pub(super) fn process_flush_done(&mut self) {
        let Some(result) = self.flusher.as_ref().and_then(Flusher::finished) else {
            return;
        };
        self.flushes.running = false;
        self.complete_in_flight(if result.is_ok() { RESP_OK } else { RESP_EIO });
        self.start_flush();
    }

    fn start_flush(&mut self) {
        let Some(flusher) = &self.flusher else {
            return;
        };
        if self.flushes.take_next() && !flusher.start() {
            // The worker is gone (it cannot be, short of a bug): fail these requests now.
            self.flushes.running = false;
            self.complete_in_flight(RESP_EIO);
        }
    }

    fn complete_in_flight(&mut self, ret: u32) {
        let Some(active) = self.active.as_mut() else {
            self.flushes.in_flight.clear();
            return;
        };
        if answer_all(active, &mut self.flushes.in_flight, ret).is_err() {
            self.fail();
        }
    }

    /// Stops serving the queue until the driver resets the device.
    fn fail(&mut self) {
        if let Some(active) = self.active.take() {
            active.interrupt.fail_device();
        }
        self.flushes.forget();
    }
}

/// Writes `ret` as the status; returns the used length (0 if the status could not be written).
fn answer(mem: &GuestMemoryMmap, status: StatusLoc, ret: u32) -> u32 {
    if status.write(mem, ret) {
        StatusLoc::LEN
    } else {
        0
    }
}

/// Serves the queue within [`BUDGET`]; returns whether requests may be left.
fn serve_queue(
    active: &mut Active,
    flushes: &mut Flushes,
    read_only: bool,
) -> std::result::Result<bool, QueueFault> {
    let Active {
        mem,
        queue,
        interrupt,
    } = active;
    let mem = &*mem;
    let pass = drain(queue, mem, BUDGET, |_, chain| {
        let req = request::parse(mem, chain);
        let used_len = match (req.kind, req.status) {
            // Nowhere to put a status: give the buffers back untouched.
            (_, None) => 0,
            (Kind::Flush, Some(status)) if !read_only => {
                flushes.push(PendingFlush {
                    head: req.head,
                    status,
                })?;
                return Ok(Served::kept(0));
            }
            // A private mapping has nothing to sync.
            (Kind::Flush, Some(status)) => answer(mem, status, RESP_OK),
            (Kind::Unsupported(_) | Kind::Malformed(_), Some(status)) => {
                answer(mem, status, RESP_EIO)
            }
        };
        Ok::<_, QueueFault>(Served::used(used_len, 0))
    })?;
    if pass.used {
        notify(queue, mem, interrupt)?;
    }
    Ok(pass.more)
}

fn answer_all(
    active: &mut Active,
    reqs: &mut Vec<PendingFlush>,
    ret: u32,
) -> std::result::Result<(), QueueFault> {
    let Active {
        mem,
        queue,
        interrupt,
    } = active;
    if reqs.is_empty() {
        return Ok(());
    }
    for req in reqs.drain(..) {
        let used_len = answer(mem, req.status, ret);
        queue.add_used(mem, req.head, used_len)?;
    }
    if queue.needs_notification(mem)? {
        interrupt.signal_used_queue();
    }
    Ok(())
}

impl VirtioDevice for Pmem {
    fn device_type(&self) -> u32 {
        device_type::PMEM
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, ctx: QueueContext) -> std::result::Result<(), ActivateError> {
        if !self.registered {
            return Err(ActivateError::Backend(
                "virtio-pmem is not registered with the event loop".into(),
            ));
        }
        let Ok([queue]) = <[Queue; 1]>::try_from(ctx.queues) else {
            return Err(ActivateError::QueueNotReady(0));
        };
        self.flushes.prepare(usize::from(queue.size()));
        self.active = Some(Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
        });
        // Requests made available before DRIVER_OK were drained and ignored by the event loop:
        // have it look at the queue once now.
        let _ = self.queue_events[0].write(1);
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        // A running fsync finishes on its own; its answers are dropped with the queue.
        self.flushes.forget();
    }
}
