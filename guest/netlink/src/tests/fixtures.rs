//! A tap device and an AF_PACKET socket, to see whether frames really move.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// A tap device (IFF_TAP|IFF_NO_PI) that lives as long as its file descriptor.
pub(super) struct Tap {
    file: File,
}

impl Tap {
    /// Creates tap `name` in the calling thread's network namespace.
    pub(super) fn create(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        // SAFETY: ifreq is plain old data, for which all zeros is a valid value.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = name.as_bytes();
        assert!(name.len() < libc::IFNAMSIZ, "tap name too long");
        for (dst, src) in request.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, and `request` is one that outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap { file })
    }

    /// Reads frames until one satisfies `wanted` (true) or `timeout` passes (false).
    pub(super) fn receives(&mut self, wanted: impl Fn(&[u8]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut frame = [0u8; 65536];
        loop {
            match self.file.read(&mut frame) {
                Ok(len) if wanted(&frame[..len]) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("cannot read the tap: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut poll = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = left.as_millis().clamp(1, 1000) as libc::c_int;
            // SAFETY: `poll` is one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut poll, 1, millis) };
        }
    }
}

/// An AF_PACKET socket bound to one link, to send raw Ethernet frames out of it; it receives
/// nothing (protocol 0).
pub(super) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    pub(super) fn bind(index: u32) -> io::Result<PacketSocket> {
        // SAFETY: socket(2) takes no pointers; a valid descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data, for which all zeros is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_ifindex = index as libc::c_int;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let pointer = (&address as *const libc::sockaddr_ll).cast::<libc::sockaddr>();
        // SAFETY: `pointer` points to a sockaddr_ll of `len` bytes that outlives the call.
        if unsafe { libc::bind(fd.as_raw_fd(), pointer, len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd })
    }

    /// Sends one whole Ethernet frame, header included.
    pub(super) fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes for the duration of the call.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A broadcast Ethernet frame from `source` of the local experimental EtherType 0x88b5 whose
/// payload starts with `marker`.
pub(super) fn test_frame(source: [u8; 6], marker: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(marker);
    frame.resize(frame.len().max(60), 0);
    frame
}

/// Whether `frame` carries `marker` where [`test_frame`] puts it.
pub(super) fn carries(frame: &[u8], marker: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x88, 0xb5])
        && frame
            .get(14..)
            .is_some_and(|payload| payload.starts_with(marker))
}

/// A broadcast IPv4 UDP frame from `source`, port `src_port` to `dst_port`, whose payload is
/// `marker` (checksums zero: nothing on the way checks them).
pub(super) fn udp_frame(source: [u8; 6], src_port: u16, dst_port: u16, marker: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + marker.len() as u16;
    let ip_len = 20 + udp_len;
    // Version 4, IHL 5, length, no fragment, TTL 64, UDP, 10.0.0.2 -> 10.0.0.1.
    frame.extend_from_slice(&[
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    frame.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    frame.extend_from_slice(&src_port.to_be_bytes());
    frame.extend_from_slice(&dst_port.to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(marker);
    frame.resize(frame.len().max(60), 0);
    frame
}

/// Whether the UDP `frame` (as [`udp_frame`] makes them) carries `marker`.
pub(super) fn udp_carries(frame: &[u8], marker: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00])
        && frame
            .get(42..)
            .is_some_and(|payload| payload.starts_with(marker))
}
