//! The guest's end of the DNS relay (see `ContainerSpec::dns_relay`): a name server address on
//! the host namespace's loopback, served here on the guest's loopback at port 53. Each UDP query
//! goes to the host's DNS UDP port framed as in DNS over TCP (a 2-byte length, then the message;
//! RFC 1035 4.2.2) and its answer comes back the same way; a TCP client's connection goes to the
//! DNS TCP port as it is, since DNS over TCP is already framed so.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guest_protocol::{DNS_TCP_PORT, DNS_UDP_PORT, HOST_CID};

use crate::error::Error;
use crate::sys::vsock;

/// Queries and connections relayed at once; more UDP queries are dropped (the client retries),
/// more TCP connections wait in the backlog.
const MAX_ACTIVE: usize = 32;
/// How long a relayed query or connection may wait for the other side.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP message taken (EDNS clients ask for at most 4096 bytes; a bit more is harmless).
const MAX_UDP: usize = 8192;

/// Listens at `addr` port 53 (UDP and TCP) and relays from threads of their own.
pub fn start(addr: IpAddr) -> Result<(), Error> {
    let bind = |what: &'static str| {
        move |e: std::io::Error| {
            Error::Network(format!("cannot listen for DNS on {addr} {what}: {e}"))
        }
    };
    let udp = UdpSocket::bind(SocketAddr::new(addr, 53)).map_err(bind("UDP"))?;
    let tcp = TcpListener::bind(SocketAddr::new(addr, 53)).map_err(bind("TCP"))?;
    let active = Arc::new(AtomicUsize::new(0));
    let udp_active = active.clone();
    spawn("dns-udp", move || serve_udp(udp, &udp_active))?;
    spawn("dns-tcp", move || serve_tcp(tcp, &active))?;
    Ok(())
}

fn serve_udp(socket: UdpSocket, active: &Arc<AtomicUsize>) {
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let (Ok(reply_to), Some(slot)) = (socket.try_clone(), Slot::take(active)) else {
            continue;
        };
        let query = buf[..len].to_vec();
        let _ = spawn("dns-query", move || {
            let _slot = slot;
            if let Ok(answer) = ask_host(&query) {
                let _ = reply_to.send_to(&answer, client);
            }
        });
    }
}

/// One query, one connection to the host: the framed query out, the framed answer back.
fn ask_host(query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut host = host_stream(DNS_UDP_PORT)?;
    let mut message = Vec::with_capacity(2 + query.len());
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(query);
    host.write_all(&message)?;
    let mut len = [0u8; 2];
    host.read_exact(&mut len)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    host.read_exact(&mut answer)?;
    Ok(answer)
}

fn serve_tcp(listener: TcpListener, active: &Arc<AtomicUsize>) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Some(slot) = Slot::take(active) else {
            continue;
        };
        let _ = spawn("dns-conn", move || {
            let _slot = slot;
            let _ = carry(client);
        });
    }
}

fn carry(client: TcpStream) -> std::io::Result<()> {
    let host = host_stream(DNS_TCP_PORT)?;
    client.set_read_timeout(Some(TIMEOUT))?;
    let (mut client_in, mut host_out) = (client.try_clone()?, host.try_clone()?);
    let upstream = std::thread::Builder::new()
        .name("dns-up".into())
        .spawn(move || {
            let _ = std::io::copy(&mut client_in, &mut host_out);
            let _ = host_out.shutdown(Shutdown::Write);
        })?;
    let (mut host_in, mut client_out) = (host, client);
    let _ = std::io::copy(&mut host_in, &mut client_out);
    let _ = client_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

/// A stream to the host's `port`. std's UnixStream only reads, writes, shuts down and sets
/// timeouts on the descriptor, all of which are the same calls for an AF_VSOCK stream.
fn host_stream(port: u32) -> std::io::Result<UnixStream> {
    let host = UnixStream::from(vsock::connect(HOST_CID, port)?);
    host.set_read_timeout(Some(TIMEOUT))?;
    Ok(host)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|source| Error::Thread {
            what: "relay DNS",
            source,
        })
}

/// One of [`MAX_ACTIVE`] places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_ACTIVE {
            active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
