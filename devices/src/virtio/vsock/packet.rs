//! The virtio-vsock packet header (virtio 1.2, section 5.10.6) and the checks every header from
//! the guest goes through before anything acts on it.

/// The host's CID, the only destination a guest packet may name.
pub const HOST_CID: u64 = 2;

/// Size of `struct virtio_vsock_hdr` on the wire.
pub const HDR_LEN: usize = 44;

/// The largest payload one packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
pub const MAX_PKT_PAYLOAD: u32 = 64 * 1024;

pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;
pub const SHUTDOWN_BOTH: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// `struct virtio_vsock_hdr`, little endian on the wire, decoded field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Header {
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[o..o + 4]);
            u32::from_le_bytes(a)
        };
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// What to do with a guest packet whose header failed a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The addressing cannot be trusted (wrong CIDs): drop it without an answer.
    Drop,
    /// The addressing is fine but the packet is not: answer with an RST to its sender (and end
    /// the connection it belongs to, if any).
    Reset,
}

/// Checks a header the guest sent in a chain holding `payload_avail` readable bytes after the
/// header.
pub fn validate(hdr: &Header, guest_cid: u64, payload_avail: usize) -> Result<(), Invalid> {
    if hdr.src_cid != guest_cid || hdr.dst_cid != HOST_CID {
        return Err(Invalid::Drop);
    }
    if hdr.type_ != TYPE_STREAM {
        return Err(Invalid::Reset);
    }
    match hdr.op {
        OP_RW => {
            if hdr.len > MAX_PKT_PAYLOAD || hdr.len as usize > payload_avail {
                return Err(Invalid::Reset);
            }
        }
        OP_REQUEST | OP_RESPONSE | OP_RST | OP_SHUTDOWN | OP_CREDIT_UPDATE | OP_CREDIT_REQUEST => {
            // Only data packets carry a payload.
            if hdr.len != 0 {
                return Err(Invalid::Reset);
            }
        }
        _ => return Err(Invalid::Reset),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1000,
            dst_port: 52,
            len: 0,
            type_: TYPE_STREAM,
            op: OP_REQUEST,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 0,
        }
    }

    #[test]
    fn header_round_trips_in_wire_order() {
        let h = Header {
            src_cid: 0x0102030405060708,
            len: 0x11223344,
            op: OP_RW,
            fwd_cnt: 0xdeadbeef,
            ..good()
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[24..28], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[30..32], &[5, 0]);
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn foreign_cids_are_dropped() {
        let h = Header {
            src_cid: 4,
            ..good()
        };
        assert_eq!(validate(&h, 3, 0), Err(Invalid::Drop));
        let h = Header {
            dst_cid: 1,
            ..good()
        };
        assert_eq!(validate(&h, 3, 0), Err(Invalid::Drop));
    }

    #[test]
    fn bad_type_op_or_length_is_reset() {
        let cases = [
            Header { type_: 2, ..good() },
            Header { op: 0, ..good() },
            Header { op: 8, ..good() },
            Header { len: 1, ..good() },
            Header {
                op: OP_RW,
                len: MAX_PKT_PAYLOAD + 1,
                ..good()
            },
            Header {
                op: OP_RW,
                len: 100,
                ..good()
            },
        ];
        for h in cases {
            assert_eq!(validate(&h, 3, 99), Err(Invalid::Reset), "{h:?}");
        }
    }

    #[test]
    fn good_headers_pass() {
        assert_eq!(validate(&good(), 3, 0), Ok(()));
        let rw = Header {
            op: OP_RW,
            len: MAX_PKT_PAYLOAD,
            ..good()
        };
        assert_eq!(validate(&rw, 3, MAX_PKT_PAYLOAD as usize), Ok(()));
    }
}
