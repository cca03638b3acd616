//! The virtio-net device: configuration space, features, activation and reset.

use virtio_queue::QueueT;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::active::{Active, Stats};
use super::features::*;
use super::rx_buffers::RxBuffers;
use super::tap::{Tap, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UFO};
use super::{NetConfig, QUEUE_SIZE, RX, STATUS_LINK_UP, TX};
use crate::virtio::iovec::{IoVecs, IOV_MAX};
use crate::virtio::{
    device_type, read_config_bytes, ActivateError, QueueContext, VirtioDevice,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::{Error, Result};

/// Everything the device offers (the transport adds VIRTIO_F_VERSION_1).
const OFFERED: u64 = CSUM
    | GUEST_CSUM
    | MAC
    | GUEST_TSO4
    | GUEST_TSO6
    | GUEST_UFO
    | HOST_TSO4
    | HOST_TSO6
    | HOST_UFO
    | MRG_RXBUF
    | STATUS
    | VIRTIO_RING_F_EVENT_IDX
    | VIRTIO_RING_F_INDIRECT_DESC;

pub struct Net {
    pub(super) tap: Tap,
    mac: [u8; 6],
    pub(super) queue_events: Vec<EventFd>,
    /// Written on activation and reset, so the event loop (re)considers watching the tap.
    pub(super) activate_evt: EventFd,
    pub(super) active: Option<Active>,
    /// The tap fd is registered with the event loop.
    pub(super) tap_watched: bool,
    /// The last receive pass wants to hear about the tap (it has buffers to fill).
    pub(super) rx_wants_tap: bool,
    pub(super) stats: Stats,
}

impl Net {
    /// Opens (or creates) the tap; a MAC is drawn at random when none is given.
    pub fn new(config: NetConfig) -> Result<Net> {
        let mac = match config.mac {
            Some(mac) if mac[0] & 1 != 0 => {
                return Err(Error::Invalid(format!(
                    "MAC {} is a multicast address",
                    format_mac(&mac)
                )))
            }
            Some(mac) if mac == [0; 6] => {
                return Err(Error::Invalid("MAC 00:00:00:00:00:00 is not usable".into()))
            }
            Some(mac) => mac,
            None => random_mac(),
        };
        let tap = Tap::open(&config.tap)?;
        Net::with_tap(tap, mac)
    }

    pub(super) fn with_tap(tap: Tap, mac: [u8; 6]) -> Result<Net> {
        let evt = || {
            EventFd::new(EFD_NONBLOCK).map_err(|source| Error::Io {
                what: "virtio-net: cannot create an eventfd".into(),
                source,
            })
        };
        Ok(Net {
            tap,
            mac,
            queue_events: vec![evt()?, evt()?],
            activate_evt: evt()?,
            active: None,
            tap_watched: false,
            rx_wants_tap: false,
            stats: Stats::default(),
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The tap's interface name.
    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    /// Whether vmctl created the tap (it disappears when the device is dropped).
    pub fn tap_created(&self) -> bool {
        self.tap.created()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The offloads the tap may use towards the guest, from what the driver accepted.
    fn tap_offloads(acked: u64) -> u32 {
        if acked & GUEST_CSUM == 0 {
            return 0;
        }
        let mut flags = TUN_F_CSUM;
        if acked & GUEST_TSO4 != 0 {
            flags |= TUN_F_TSO4;
        }
        if acked & GUEST_TSO6 != 0 {
            flags |= TUN_F_TSO6;
        }
        if acked & GUEST_UFO != 0 {
            flags |= TUN_F_UFO;
        }
        flags
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        OFFERED
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status (le16); nothing else is offered.
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        read_config_bytes(&config, offset, data);
    }

    fn activate(&mut self, ctx: QueueContext) -> std::result::Result<(), ActivateError> {
        let mut queues = ctx.queues.into_iter();
        let (Some(rx_queue), Some(tx_queue)) = (queues.next(), queues.next()) else {
            return Err(ActivateError::QueueNotReady(RX));
        };
        for (i, q) in [&rx_queue, &tx_queue].into_iter().enumerate() {
            if q.size() == 0 {
                return Err(ActivateError::QueueNotReady(i));
            }
        }
        debug_assert_eq!(TX, 1);
        self.tap
            .set_offload(Self::tap_offloads(ctx.acked_features))
            .map_err(|e| {
                ActivateError::Backend(format!("tap {}: cannot set offloads: {e}", self.tap.name()))
            })?;
        self.active = Some(Active {
            mem: ctx.mem,
            rx_queue,
            tx_queue,
            interrupt: ctx.interrupt,
            acked: ctx.acked_features,
            rx: RxBuffers::new(),
            tx_iov: IoVecs::with_capacity(IOV_MAX),
            broken: false,
        });
        self.rx_wants_tap = true;
        // The event loop starts watching the tap (and serves anything already queued).
        let _ = self.activate_evt.write(1);
        Ok(())
    }

    fn reset(&mut self) {
        // Buffers the driver gave us are abandoned with the queues.
        self.active = None;
        self.rx_wants_tap = false;
        let _ = self.tap.set_offload(0);
        let _ = self.activate_evt.write(1);
    }
}

/// A random unicast, locally administered MAC.
pub(super) fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most `mac.len()` bytes into `mac`.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        // No entropy source: fall back to the clock and the pid, still unique enough per host.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()) << 32;
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & !0x01) | 0x02;
    mac
}

pub(super) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
