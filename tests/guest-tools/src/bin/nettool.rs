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
    let hex = sha.map_or("-".to_string(), |h| {
        h.finish().iter().map(|b| format!("{b:02x}")).collect()
    });
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
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// SHA-256 (FIPS 180-4), streaming.
struct Sha256 {
    h: [u32; 8],
    block: [u8; 64],
    used: usize,
    len: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Sha256 {
    fn new() -> Self {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            used: 0,
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.used > 0 {
            let n = (64 - self.used).min(data.len());
            self.block[self.used..self.used + n].copy_from_slice(&data[..n]);
            self.used += n;
            data = &data[n..];
            if self.used < 64 {
                return;
            }
            let block = self.block;
            self.compress(&block);
            self.used = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            let mut block = [0u8; 64];
            block.copy_from_slice(c);
            self.compress(&block);
        }
        let rest = chunks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.used = rest.len();
    }

    fn finish(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let fill = (64 + 56 - (self.used + 1) % 64) % 64;
        pad.extend(std::iter::repeat_n(0u8, fill));
        pad.extend_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.update(&pad);
        self.len = len;
        let mut out = [0u8; 32];
        for (i, w) in self.h.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.h.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}
