//! nettool: TCP transfers with a checksum or a throughput figure, for the virtio-net tests and
//! benchmark. Static, so the same binary runs inside a guest and on the test host.
//!
//!   nettool send HOST PORT SIZE [--seed N] [--nohash] [--timeout S]
//!       connect (retrying for up to --timeout seconds) and send SIZE bytes of a pseudo-random
//!       stream (SIZE: bytes, with K/M/G suffix, or a duration like 5s to send for that long)
//!   nettool recv PORT [--nohash] [--timeout S]
//!       listen on 0.0.0.0:PORT, accept one connection, read to EOF
//!
//! Both print one line: `sent|received N bytes sha256 HEX in S s MBPS MB/s` (sha256 `-` with
//! --nohash). Exit 0 on success, 1 on an error (printed on stderr).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use guest_tools::{xorshift64star, Sha256};

const CHUNK: usize = 256 << 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("nettool: {e}");
        std::process::exit(1);
    }
}

struct Opts {
    seed: u64,
    hash: bool,
    timeout: u64,
    rest: Vec<String>,
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        seed: 1,
        hash: true,
        timeout: 600,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nohash" => o.hash = false,
            "--seed" => o.seed = num(it.next())?,
            "--timeout" => o.timeout = num(it.next())?,
            _ => o.rest.push(a.clone()),
        }
    }
    Ok(o)
}

fn num(v: Option<&String>) -> Result<u64, String> {
    let v = v.ok_or("an option needs a value")?;
    v.parse().map_err(|_| format!("'{v}' is not a number"))
}

enum Size {
    Bytes(u64),
    Duration(Duration),
}

fn size(s: &str) -> Result<Size, String> {
    if let Some(secs) = s.strip_suffix('s') {
        let secs: f64 = secs.parse().map_err(|_| format!("bad duration '{s}'"))?;
        return Ok(Size::Duration(Duration::from_secs_f64(secs)));
    }
    let (n, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = n.parse().map_err(|_| format!("bad size '{s}'"))?;
    Ok(Size::Bytes(n * mult))
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or("usage: nettool send|recv ...")?;
    let o = opts(rest)?;
    // A hung peer must not hang the test: die after the timeout.
    // SAFETY: alarm only sets a timer; SIGALRM's default action ends the process.
    unsafe { libc::alarm(o.timeout as libc::c_uint + 5) };
    match (cmd.as_str(), o.rest.as_slice()) {
        ("send", [host, port, sz]) => send(host, port, size(sz)?, &o),
        ("recv", [port]) => recv(port, &o),
        _ => Err(
            "usage: nettool send HOST PORT SIZE | recv PORT  [--seed N] [--nohash] [--timeout S]"
                .into(),
        ),
    }
}

fn connect(host: &str, port: &str, timeout: u64) -> Result<TcpStream, String> {
    let addr: SocketAddr = format!("{host}:{port}")
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or(format!("{host}:{port}: no address"))?;
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() < Duration::from_secs(timeout) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    }
}

fn send(host: &str, port: &str, size: Size, o: &Opts) -> Result<(), String> {
    let mut stream = connect(host, port, o.timeout)?;
    let mut rng = o.seed.max(1);
    let mut buf = vec![0u8; CHUNK];
    let mut sha = o.hash.then(Sha256::new);
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match size {
            Size::Bytes(total) => (total - sent).min(CHUNK as u64) as usize,
            Size::Duration(d) if start.elapsed() < d => CHUNK,
            Size::Duration(_) => 0,
        };
        if n == 0 {
            break;
        }
        fill(&mut buf[..n], &mut rng);
        if let Some(h) = sha.as_mut() {
            h.update(&buf[..n]);
        }
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("send: {e}"))?;
        sent += n as u64;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the peer to close, so the figure covers delivery.
    let mut sink = [0u8; 64];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    report("sent", sent, sha, start.elapsed());
    Ok(())
}

fn recv(port: &str, o: &Opts) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port '{port}'"))?;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("listen on port {port}: {e}"))?;
    println!("listening on {port}");
    let _ = std::io::stdout().flush();
    let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut sha = o.hash.then(Sha256::new);
    let mut got = 0u64;
    let mut start = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("receive: {e}")),
        };
        start.get_or_insert_with(Instant::now);
        if let Some(h) = sha.as_mut() {
            h.update(&buf[..n]);
        }
        got += n as u64;
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    drop(stream);
    report("received", got, sha, elapsed);
    Ok(())
}

fn report(what: &str, n: u64, sha: Option<Sha256>, elapsed: Duration) {
    let hex = sha.map_or("-".to_string(), Sha256::hex);
    let secs = elapsed.as_secs_f64();
    let mbps = if secs > 0.0 {
        n as f64 / secs / 1e6
    } else {
        0.0
    };
    println!("{what} {n} bytes sha256 {hex} in {secs:.3} s {mbps:.1} MB/s");
    let _ = std::io::stdout().flush();
}

/// xorshift64*: cheap pseudo-random bytes, the same stream for the same seed.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        let v = xorshift64star(state).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}
