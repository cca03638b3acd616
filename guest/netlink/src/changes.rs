//! Notice of changes to a namespace's links, addresses and routes (rtnetlink multicast groups),
//! for a watcher that then lists what it needs: the messages themselves are not decoded.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::protocols::NETLINK_ROUTE;

/// rtnetlink multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// A socket subscribed to the changes of the opening thread's network namespace.
pub struct Changes {
    socket: netlink_sys::Socket,
    buf: Vec<u8>,
}

impl Changes {
    pub fn open() -> io::Result<Changes> {
        let mut socket = netlink_sys::Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        for group in [
            RTNLGRP_LINK,
            RTNLGRP_IPV4_IFADDR,
            RTNLGRP_IPV4_ROUTE,
            RTNLGRP_IPV6_IFADDR,
            RTNLGRP_IPV6_ROUTE,
        ] {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        Ok(Changes {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Waits up to `timeout` (forever with `None`) for a change; true when one came. Whatever
    /// had come is consumed. An overrun socket (ENOBUFS: changes were lost) counts as a change.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, alive for the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if ready == 0 {
            return Ok(false);
        }
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
