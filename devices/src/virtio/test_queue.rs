//! For unit tests: the driver's side of a split virtqueue, written by hand into guest memory so
//! tests can craft every chain (and break every rule) the way a guest driver could.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use crate::virtio::GuestMemoryMmap;

/// Descriptor flags.
pub(crate) const F_NEXT: u16 = 1;
pub(crate) const F_WRITE: u16 = 2;
pub(crate) const F_INDIRECT: u16 = 4;

/// The driver side of one split virtqueue in guest memory.
pub(crate) struct DriverQueue {
    pub(crate) desc: u64,
    pub(crate) avail: u64,
    pub(crate) used: u64,
    pub(crate) size: u16,
    pub(crate) next_desc: u16,
    pub(crate) avail_idx: u16,
    pub(crate) used_seen: u16,
}

impl DriverQueue {
    /// A queue of `size` entries whose rings are laid out from `base` on.
    pub(crate) fn new(base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        DriverQueue {
            desc,
            avail,
            used,
            size,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// The device's view of this queue, as the transport would configure it.
    pub(crate) fn queue(&self, event_idx: bool) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }

    pub(crate) fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        idx: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = GuestAddress(self.desc + 16 * u64::from(idx));
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, at).unwrap();
    }

    /// Writes a chain of (addr, len, flags) into consecutive free descriptors, linked with NEXT,
    /// and returns its head (not yet made available).
    pub(crate) fn chain(&mut self, mem: &GuestMemoryMmap, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let idx = (head + i as u16) % self.size;
            let last = i + 1 == descs.len();
            let flags = if last { flags } else { flags | F_NEXT };
            self.write_desc(mem, idx, addr, len, flags, (idx + 1) % self.size);
        }
        self.next_desc = (head + descs.len() as u16) % self.size;
        head
    }

    /// Makes the chain at `head` available.
    pub(crate) fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Adds a chain of (addr, len, flags) descriptors and makes it available; returns its head.
    pub(crate) fn add(&mut self, mem: &GuestMemoryMmap, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.chain(mem, descs);
        self.publish(mem, head);
        head
    }

    /// Sets used_event (in the avail ring, after the entries).
    pub(crate) fn set_used_event(&self, mem: &GuestMemoryMmap, v: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        mem.write_obj(v.to_le(), GuestAddress(at)).unwrap();
    }

    /// The used entries added since the last call: (head, len). An id that is no descriptor
    /// index fails the test.
    pub(crate) fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u16, u32)> {
        let idx = u16::from_le(mem.read_obj(GuestAddress(self.used + 2)).unwrap());
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
            let id = u32::from_le(mem.read_obj(GuestAddress(at)).unwrap());
            let len = u32::from_le(mem.read_obj(GuestAddress(at + 4)).unwrap());
            let head = u16::try_from(id).expect("a used id is a descriptor index");
            out.push((head, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}
