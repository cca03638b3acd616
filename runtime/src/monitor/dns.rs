//! The host's end of the guest's DNS relay. Docker's embedded name server (what resolves container
//! names on a user-defined network) answers at 127.0.0.11 on the loopback of the container's
//! network namespace, where the monitor runs and the guest cannot reach: when the container's
//! resolv.conf names such a loopback server, the agent listens at that address in the guest and
//! each query arrives here over vsock and goes on to the same address from the namespace, over
//! UDP or TCP as the guest's client asked (Docker's NAT rules there take port 53 to its
//! resolver for both).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guest_protocol::{ContainerSpec, MountSource};

use crate::oci::translate::{ShareDef, ShareSource};
use crate::Error;

/// Connections relayed at once; a guest opening more waits in the listener's backlog.
const MAX_CONNECTIONS: usize = 64;
/// How long a relayed connection may stay silent before it is closed.
const IDLE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a UDP query waits for its answer before it is sent once more (resolvers wait 5 s
/// in all before asking again themselves).
const UDP_TIMEOUT: Duration = Duration::from_millis(2500);
/// The largest UDP answer taken (a DNS message fits in 64 KiB by its TCP framing).
const MAX_UDP_ANSWER: usize = 65535;
/// A resolv.conf longer than this is not one Docker wrote.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// The loopback name server the container's /etc/resolv.conf names first, if its first name
/// server is one: the guest has to reach it through the relay.
pub fn loopback_server(spec: &ContainerSpec, shares: &[ShareDef]) -> Option<IpAddr> {
    let path = spec
        .mounts
        .iter()
        .filter(|m| m.destination == "/etc/resolv.conf")
        .filter_map(|m| match &m.source {
            MountSource::Share { tag, file: Some(_) } => shares.iter().find(|d| &d.tag == tag),
            _ => None,
        })
        .filter_map(|d| match &d.source {
            ShareSource::File { dir, name } => Some(dir.join(name)),
            ShareSource::Dir(_) => None,
        })
        .next_back()?;
    let file = std::fs::File::open(path).ok()?;
    first_nameserver(BufReader::new(file.take(MAX_RESOLV_CONF))).filter(|a| a.is_loopback())
}

fn first_nameserver(resolv_conf: impl BufRead) -> Option<IpAddr> {
    resolv_conf.lines().map_while(Result::ok).find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(addr)) => addr.parse().ok(),
            _ => None,
        }
    })
}

/// Relays connections on `udp_socket` (one framed query each, asked over UDP) and on
/// `tcp_socket` (DNS over TCP) to `server` port 53, from threads of their own.
pub fn start(udp_socket: &Path, tcp_socket: &Path, server: IpAddr) -> Result<(), Error> {
    let server = SocketAddr::new(server, 53);
    let active = Arc::new(AtomicUsize::new(0));
    listen(udp_socket, active.clone(), move |guest| {
        ask_over_udp(guest, server)
    })?;
    listen(tcp_socket, active, move |guest| relay(guest, server))
}

fn listen(
    socket: &Path,
    active: Arc<AtomicUsize>,
    handle: impl Fn(UnixStream) -> std::io::Result<()> + Clone + Send + 'static,
) -> Result<(), Error> {
    let listener = UnixListener::bind(socket)
        .map_err(|e| Error::io(format!("cannot listen on {}", socket.display()), e))?;
    std::thread::Builder::new()
        .name("dns-accept".into())
        .spawn(move || {
            for guest in listener.incoming() {
                let Ok(guest) = guest else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let (done, handle) = (active.clone(), handle.clone());
                let spawned = std::thread::Builder::new()
                    .name("dns".into())
                    .spawn(move || {
                        if let Err(e) = handle(guest) {
                            crate::oci::log::debug(&format!("DNS relay: {e}"));
                        }
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    // The closure (and its decrement) never ran.
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
        .map_err(|e| Error::io("cannot start the DNS relay", e))?;
    Ok(())
}

/// One query a guest client sent over UDP: read framed, asked over UDP, answered framed.
fn ask_over_udp(mut guest: UnixStream, server: SocketAddr) -> std::io::Result<()> {
    guest.set_read_timeout(Some(IDLE))?;
    let mut len = [0u8; 2];
    guest.read_exact(&mut len)?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    guest.read_exact(&mut query)?;
    let unspecified: IpAddr = match server {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(UDP_TIMEOUT))?;
    let mut answer = vec![0u8; MAX_UDP_ANSWER];
    let mut tries = 0;
    let len = loop {
        socket.send(&query)?;
        match socket.recv(&mut answer) {
            Ok(len) => break len,
            Err(e) if tries < 1 && is_timeout(&e) => tries += 1,
            Err(e) => return Err(e),
        }
    };
    let len16 = u16::try_from(len).map_err(|_| std::io::ErrorKind::InvalidData)?;
    guest.write_all(&[&len16.to_be_bytes()[..], &answer[..len]].concat())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A guest client's DNS-over-TCP connection, carried both ways to `server`.
fn relay(guest: UnixStream, server: SocketAddr) -> std::io::Result<()> {
    let server = TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)?;
    for timeout in [
        guest.set_read_timeout(Some(IDLE)),
        server.set_read_timeout(Some(IDLE)),
    ] {
        timeout?;
    }
    let (mut guest_in, mut server_out) = (guest.try_clone()?, server.try_clone()?);
    let upstream = std::thread::Builder::new()
        .name("dns-up".into())
        .spawn(move || {
            let _ = std::io::copy(&mut guest_in, &mut server_out);
            let _ = server_out.shutdown(Shutdown::Write);
        })?;
    let (mut server_in, mut guest_out) = (server, guest);
    let _ = std::io::copy(&mut server_in, &mut guest_out);
    let _ = guest_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_is_read_past_comments_and_options() {
        // Arrange
        let conf = "# Generated by Docker\nsearch example.org\nnameserver 127.0.0.11\n\
                    nameserver 10.0.0.1\noptions ndots:0\n";
        // Act
        let server = first_nameserver(conf.as_bytes());
        // Assert
        assert_eq!(server, Some("127.0.0.11".parse().unwrap()));
    }

    #[test]
    fn a_resolv_conf_without_nameserver_names_none() {
        // Arrange
        let conf = "search example.org\nnameserver\nnameserver not-an-address\n";
        // Act
        let server = first_nameserver(conf.as_bytes());
        // Assert
        assert_eq!(server, None);
    }

    #[test]
    fn a_query_goes_to_the_server_and_its_answer_comes_back() {
        // Arrange: a "server" that answers one length-prefixed message with its bytes reversed.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut query = Vec::new();
            conn.read_to_end(&mut query).unwrap();
            query[2..].reverse();
            conn.write_all(&query).unwrap();
        });
        let (mut guest, monitor_end) = UnixStream::pair().unwrap();
        let relaying = std::thread::spawn(move || relay(monitor_end, addr));
        // Act
        guest.write_all(&[0, 3, 1, 2, 3]).unwrap();
        guest.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        guest.read_to_end(&mut answer).unwrap();
        // Assert
        assert_eq!(answer, [0, 3, 3, 2, 1]);
        relaying.join().unwrap().unwrap();
        answering.join().unwrap();
    }

    #[test]
    fn a_framed_query_is_asked_over_udp_and_its_answer_framed() {
        // Arrange: a UDP "server" answering one datagram with its bytes reversed.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (len, client) = server.recv_from(&mut buf).unwrap();
            buf[..len].reverse();
            server.send_to(&buf[..len], client).unwrap();
        });
        let (mut guest, monitor_end) = UnixStream::pair().unwrap();
        let asking = std::thread::spawn(move || ask_over_udp(monitor_end, addr));
        // Act
        guest.write_all(&[0, 3, 1, 2, 3]).unwrap();
        let mut answer = [0u8; 5];
        guest.read_exact(&mut answer).unwrap();
        // Assert
        assert_eq!(answer, [0, 3, 3, 2, 1]);
        asking.join().unwrap().unwrap();
        answering.join().unwrap();
    }
}
