//! The TAP backend: /dev/net/tun with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, frames with a 12-byte
//! virtio_net_hdr_v1 in front, offloads set to what the guest accepted.
//!
//! An existing tap is attached to as it is. A name that does not exist makes the kernel create
//! a non-persistent tap, which vmctl brings up; it vanishes when its last fd closes, that is when
//! the VM ends (or vmctl dies).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::{Error, Result};

const TUN_PATH: &str = "/dev/net/tun";
const IFNAMSIZ: usize = 16;

// ioctl numbers from <linux/if_tun.h>: _IOW('T', nr, int or unsigned int).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// Offload flags for TUNSETOFFLOAD: what the tap may hand us (and so the guest) unfinished.
pub const TUN_F_CSUM: u32 = 0x01;
pub const TUN_F_TSO4: u32 = 0x02;
pub const TUN_F_TSO6: u32 = 0x04;
pub const TUN_F_UFO: u32 = 0x10;

/// `struct ifreq` with the flags member of its union (40 bytes on x86_64).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// vmctl created the interface (it goes away with the fd).
    created: bool,
    /// A real tap: false for the socket pairs unit tests use in its place.
    is_tap: bool,
}

impl Tap {
    /// Attaches to tap `name`, or creates it (and brings it up) if no interface has that name.
    pub fn open(name: &str) -> Result<Tap> {
        let invalid = |why: &str| Error::Invalid(format!("tap name '{name}': {why}"));
        if name.is_empty() || name.len() >= IFNAMSIZ {
            return Err(invalid("must be 1 to 15 bytes"));
        }
        if name.contains(['/', ' ', ':', '\0']) || name == "." || name == ".." {
            return Err(invalid("not a valid interface name"));
        }
        let cname = CString::new(name).map_err(|_| invalid("not a valid interface name"))?;
        // SAFETY: `cname` is a NUL-terminated string that lives through the call.
        let existed = unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0;

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|source| Error::Io {
                what: format!("cannot open {TUN_PATH} for tap {name} (is the tun module loaded?)"),
                source,
            })?;
        let fd = OwnedFd::from(file);

        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its size and layout and
        // lives through the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) } < 0 {
            let source = io::Error::last_os_error();
            let what = match (existed, source.raw_os_error()) {
                (true, Some(libc::EBUSY)) => {
                    format!("cannot attach to tap {name} (is another VM using it?)")
                }
                (true, Some(libc::EINVAL)) => {
                    format!("cannot attach to {name}: it is not a tap with a vnet header")
                }
                (true, Some(libc::EPERM)) => {
                    format!("cannot attach to tap {name} (does it belong to another user?)")
                }
                (true, _) => format!("cannot attach to tap {name}"),
                (false, Some(libc::EPERM)) => {
                    format!("cannot create tap {name} (that needs root or CAP_NET_ADMIN)")
                }
                (false, _) => format!("cannot create tap {name}"),
            };
            return Err(Error::Io { what, source });
        }
        let tap = Tap {
            fd,
            name: name.to_owned(),
            created: !existed,
            is_tap: true,
        };
        tap.set_vnet_hdr_size(super::HDR_LEN as libc::c_int)
            .map_err(|source| Error::Io {
                what: format!("tap {name}: cannot set the vnet header size"),
                source,
            })?;
        tap.set_offload(0).map_err(|source| Error::Io {
            what: format!("tap {name}: cannot set offloads"),
            source,
        })?;
        if tap.created {
            set_up(name).map_err(|source| Error::Io {
                what: format!("cannot bring up tap {name}"),
                source,
            })?;
        }
        Ok(tap)
    }

    /// A stand-in for unit tests: one end of a datagram socket pair (one frame per message, as a
    /// tap), and the other end for the test.
    #[cfg(test)]
    pub fn socket_pair() -> (Tap, OwnedFd) {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: socketpair succeeded: both descriptors are open and owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        (
            Tap {
                fd: a,
                name: "test".into(),
                created: false,
                is_tap: false,
            },
            b,
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn created(&self) -> bool {
        self.created
    }

    fn ioctl_int(&self, request: libc::c_ulong, value: &libc::c_int) -> io::Result<()> {
        if !self.is_tap {
            return Ok(());
        }
        // SAFETY: the tun ioctls used here read one int through the pointer, which is valid.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), request, value as *const libc::c_int) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_vnet_hdr_size(&self, size: libc::c_int) -> io::Result<()> {
        self.ioctl_int(TUNSETVNETHDRSZ, &size)
    }

    /// Which offloads the tap may use on frames it hands us (TUN_F_*).
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        if !self.is_tap {
            return Ok(());
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame (header first) into `iov`.
    pub fn read_iov(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        let n = iov.len().min(crate::virtio::iovec::IOV_MAX) as libc::c_int;
        // SAFETY: every iovec points into mapped, device-writable guest memory (checked when the
        // chain was parsed), and `n` does not exceed the slice's length.
        let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), n) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Writes one frame (header first) gathered from `iov`.
    pub fn write_iov(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        let n = iov.len().min(crate::virtio::iovec::IOV_MAX) as libc::c_int;
        // SAFETY: every iovec points into mapped guest memory (checked when the chain was
        // parsed), and `n` does not exceed the slice's length.
        let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), n) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sets IFF_UP on interface `name` (SIOCGIFFLAGS, SIOCSIFFLAGS).
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is checked.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` was just opened and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    let len = name.len().min(IFNAMSIZ - 1);
    req.name[..len].copy_from_slice(&name.as_bytes()[..len]);
    // SAFETY: both ioctls read and write a `struct ifreq`, which `req` matches in size and
    // layout; it lives through the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req as *mut IfReq) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req as *mut IfReq) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
