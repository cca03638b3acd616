//! vsock-test: a vsock endpoint for tests and benchmarks, inside a guest (AF_VSOCK) or on the
//! host (AF_VSOCK for vhost-vsock, or a Unix socket in Firecracker's hybrid layout).
//!
//! ```text
//! vsock-test listen  ADDR [OPTIONS]   ADDR: vsock:PORT | unix:PATH
//! vsock-test connect ADDR [OPTIONS]   ADDR: vsock:CID:PORT | hybrid:PATH:PORT
//!   -n N              connections (listen accepts N; connect opens N at once)     [1]
//!   --send BYTES      send BYTES of connection i's stream, then shut down writing
//!   --recv            read until EOF (after sending, when both are given)
//!   --recv-max BYTES  stop reading and close after BYTES (a close in mid-stream)
//!   --abort-after BYTES  with --send: exit the process (exit status 3) once BYTES are sent
//!   --zeros           send zero bytes instead of the stream (benchmarks: no generation cost)
//!   --seed S          connection i's stream is the xorshift stream of seed S+i  [1]
//!   --sha256          print the SHA-256 of what was sent and received
//!   --verify          compare received bytes with connection i's stream
//!   --expect-refused  the connection must fail (ECONNRESET, ECONNREFUSED or EOF)
//!   --retry SECS      connect: retry refused connections for up to SECS seconds
//! ```
//! A sender first sends its stream's seed (8 bytes, little endian, not counted), so the receiver
//! knows which stream it gets whatever the order connections were accepted in; a receiver reports
//! connection I as the stream of seed S+I.
//! One line per connection on stdout: `conn I sent N [sha256=H]`, `conn I recv N [sha256=H]
//! [verify=ok|verify=mismatch@OFF] secs=T mbps=R`, `conn I refused ERR` or `conn I error ...`.
//! Exit status 0 when every connection did what was asked.
//! `hybrid:PATH:PORT` connects to the Unix socket PATH, writes `CONNECT PORT\n` and expects
//! `OK ...\n` before the data.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use guest_tools::{xorshift64star, Sha256};

struct Opts {
    n: usize,
    send: Option<u64>,
    recv: bool,
    recv_max: Option<u64>,
    seed: u64,
    sha: bool,
    verify: bool,
    expect_refused: bool,
    retry: Duration,
    abort_after: Option<u64>,
    zeros: bool,
}

#[derive(Clone)]
enum Addr {
    Vsock { cid: u32, port: u32 },
    Unix(String),
    Hybrid { path: String, port: u32 },
}

fn usage() -> ! {
    eprintln!("usage: vsock-test listen|connect ADDR [-n N] [--send BYTES] [--recv] [--recv-max BYTES] [--seed S] [--sha256] [--verify] [--expect-refused] [--retry SECS] [--abort-after BYTES] [--zeros]");
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(s: Option<String>) -> T {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

fn parse_addr(s: &str, listen: bool) -> Addr {
    let parts: Vec<&str> = s.splitn(2, ':').collect();
    match (parts.first().copied(), parts.get(1)) {
        (Some("vsock"), Some(rest)) if listen => Addr::Vsock {
            cid: libc::VMADDR_CID_ANY,
            port: num(Some(rest.to_string())),
        },
        (Some("vsock"), Some(rest)) => {
            let (cid, port) = rest.split_once(':').unwrap_or_else(|| usage());
            Addr::Vsock {
                cid: num(Some(cid.into())),
                port: num(Some(port.into())),
            }
        }
        (Some("unix"), Some(path)) if listen => Addr::Unix(path.to_string()),
        (Some("hybrid"), Some(rest)) if !listen => {
            let (path, port) = rest.rsplit_once(':').unwrap_or_else(|| usage());
            Addr::Hybrid {
                path: path.into(),
                port: num(Some(port.into())),
            }
        }
        _ => usage(),
    }
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned from here on.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: all-zero is a valid sockaddr_vm.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

fn unix_addr(path: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_bytes();
    if b.len() >= a.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "path too long"));
    }
    for (d, s) in a.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok((
        a,
        (std::mem::size_of::<libc::sa_family_t>() + b.len() + 1) as libc::socklen_t,
    ))
}

fn connect(addr: &Addr) -> io::Result<OwnedFd> {
    match addr {
        Addr::Vsock { cid, port } => {
            let fd = socket(libc::AF_VSOCK)?;
            let a = vsock_addr(*cid, *port);
            // SAFETY: `a` is a valid sockaddr_vm of the size given.
            check(unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&a as *const libc::sockaddr_vm).cast(),
                    std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
                )
            })?;
            Ok(fd)
        }
        Addr::Hybrid { path, port } => {
            let fd = socket(libc::AF_UNIX)?;
            let (a, len) = unix_addr(path)?;
            // SAFETY: `a` is a valid sockaddr_un of length `len`.
            check(unsafe {
                libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len)
            })?;
            write_all(fd.as_raw_fd(), format!("CONNECT {port}\n").as_bytes())?;
            // The reply line, a byte at a time so no data is read past it.
            let mut line = Vec::new();
            loop {
                let mut b = [0u8; 1];
                if read(fd.as_raw_fd(), &mut b)? == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
                }
                line.push(b[0]);
                if b[0] == b'\n' || line.len() > 64 {
                    break;
                }
            }
            if !line.starts_with(b"OK ") {
                return Err(io::Error::other(format!(
                    "bad handshake reply {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            Ok(fd)
        }
        Addr::Unix(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

fn listen(addr: &Addr, backlog: usize) -> io::Result<OwnedFd> {
    match addr {
        Addr::Vsock { cid, port } => {
            let fd = socket(libc::AF_VSOCK)?;
            let a = vsock_addr(*cid, *port);
            // SAFETY: `a` is a valid sockaddr_vm of the size given.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&a as *const libc::sockaddr_vm).cast(),
                    std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
                )
            })?;
            // SAFETY: listen(2) on our socket.
            check(unsafe { libc::listen(fd.as_raw_fd(), backlog.max(128) as libc::c_int) })?;
            Ok(fd)
        }
        Addr::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let fd = socket(libc::AF_UNIX)?;
            let (a, len) = unix_addr(path)?;
            // SAFETY: `a` is a valid sockaddr_un of length `len`.
            check(unsafe {
                libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len)
            })?;
            // SAFETY: listen(2) on our socket.
            check(unsafe { libc::listen(fd.as_raw_fd(), backlog.max(128) as libc::c_int) })?;
            Ok(fd)
        }
        Addr::Hybrid { .. } => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

fn accept(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4 with no address buffer; the result is checked and owned.
    let c = check(unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `c` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(c) })
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for its length; MSG_NOSIGNAL turns SIGPIPE into EPIPE.
        let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// The byte stream of a connection: xorshift64* output, little endian.
struct Stream {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            word: [0; 8],
            used: 8,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        xorshift64star(&mut self.state).to_le_bytes()
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() && self.used < 8 {
            buf[i] = self.word[self.used];
            self.used += 1;
            i += 1;
        }
        let mut chunks = buf[i..].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_word());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            self.word = self.next_word();
            let n = rest.len();
            rest.copy_from_slice(&self.word[..n]);
            self.used = n;
        }
    }
}

/// What one connection did, as its output line.
fn serve(i: usize, fd: OwnedFd, o: &Opts) -> (bool, String) {
    let raw = fd.as_raw_fd();
    let mut out = String::new();
    let mut ok = true;
    let mut buf = vec![0u8; 256 * 1024];
    if let Some(total) = o.send {
        // The stream's seed goes first, so a receiver knows which stream it got whatever the
        // order connections were accepted in.
        let seed = o.seed.wrapping_add(i as u64);
        let mut stream = Stream::new(seed);
        if let Err(e) = write_all(raw, &seed.to_le_bytes()) {
            return (false, format!("conn {i} error send: {e}"));
        }
        let mut sha = o.sha.then(Sha256::new);
        let mut left = total;
        let mut err = None;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if !o.zeros {
                stream.fill(&mut buf[..n]);
            }
            if let Some(s) = sha.as_mut() {
                s.update(&buf[..n]);
            }
            if let Err(e) = write_all(raw, &buf[..n]) {
                err = Some(e);
                break;
            }
            left -= n as u64;
            if o.abort_after.is_some_and(|a| total - left >= a) {
                // Gone in mid-stream: the process ends with the socket still open (the kernel
                // closes it), as a crashing or killed writer would.
                println!("conn {i} aborted after {}", total - left);
                let _ = io::stdout().flush();
                std::process::exit(3);
            }
        }
        match err {
            None => {
                out += &format!("conn {i} sent {total}");
                if let Some(s) = sha {
                    out += &format!(" sha256={}", s.hex());
                }
            }
            Some(e) => {
                ok = false;
                out += &format!("conn {i} error send after {} bytes: {e}", total - left);
            }
        }
        // SAFETY: shutdown(2) on our socket.
        unsafe { libc::shutdown(raw, libc::SHUT_WR) };
    }
    if o.recv || o.recv_max.is_some() {
        if !out.is_empty() {
            out.push('\n');
        }
        let start = Instant::now();
        let mut i = i;
        let mut seed = [0u8; 8];
        let mut have = 0;
        while have < 8 {
            match read(raw, &mut seed[have..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => have += n,
            }
        }
        let seed = u64::from_le_bytes(seed);
        if have == 8 {
            // Report the stream as the sender numbered it.
            i = seed.wrapping_sub(o.seed) as usize;
        }
        let mut stream = Stream::new(seed);
        let mut expect = vec![0u8; buf.len()];
        let mut sha = o.sha.then(Sha256::new);
        let mut got = 0u64;
        let mut mismatch = None;
        let mut err = None;
        let max = o.recv_max.unwrap_or(u64::MAX);
        while got < max {
            let want = (max - got).min(buf.len() as u64) as usize;
            let n = match read(raw, &mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            if let Some(s) = sha.as_mut() {
                s.update(&buf[..n]);
            }
            if o.verify && mismatch.is_none() {
                stream.fill(&mut expect[..n]);
                if let Some(p) = buf[..n].iter().zip(&expect[..n]).position(|(a, b)| a != b) {
                    mismatch = Some(got + p as u64);
                }
            }
            got += n as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        out += &format!("conn {i} recv {got}");
        if let Some(s) = sha {
            out += &format!(" sha256={}", s.hex());
        }
        if o.verify {
            match mismatch {
                None => out += " verify=ok",
                Some(p) => {
                    ok = false;
                    out += &format!(" verify=mismatch@{p}");
                }
            }
        }
        out += &format!(
            " secs={secs:.3} mbps={:.1}",
            got as f64 / secs.max(1e-9) / 1e6
        );
        if let Some(e) = err {
            ok = false;
            out += &format!(" error={e}");
        }
    }
    drop(fd);
    (ok, out)
}

fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNRESET) | Some(libc::ECONNREFUSED)
    )
}

fn run_connect(addr: &Addr, o: &Opts) -> bool {
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.n)
            .map(|i| {
                s.spawn(move || {
                    let deadline = Instant::now() + o.retry;
                    let fd = loop {
                        match connect(addr) {
                            Ok(fd) => break Ok(fd),
                            // Refused, or the hybrid socket is not there yet (VMM starting).
                            Err(e)
                                if (refused(&e) || e.raw_os_error() == Some(libc::ENOENT))
                                    && Instant::now() < deadline =>
                            {
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            Err(e) => break Err(e),
                        }
                    };
                    match (fd, o.expect_refused) {
                        (Ok(fd), false) => serve(i, fd, o),
                        (Err(e), true) if refused(&e) => (true, format!("conn {i} refused {e}")),
                        (Ok(fd), true) => {
                            // A hybrid connection refused by the guest ends with EOF at once.
                            let mut b = [0u8; 1];
                            match read(fd.as_raw_fd(), &mut b) {
                                Ok(0) => (true, format!("conn {i} refused eof")),
                                Err(e) if refused(&e) => (true, format!("conn {i} refused {e}")),
                                _ => (false, format!("conn {i} error: connected")),
                            }
                        }
                        (Err(e), _) => (false, format!("conn {i} error connect: {e}")),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, "thread panicked".into())))
            .collect()
    });
    report(results)
}

fn run_listen(addr: &Addr, o: &Opts) -> bool {
    let l = match listen(addr, o.n) {
        Ok(l) => l,
        Err(e) => {
            println!("error listen: {e}");
            return false;
        }
    };
    println!("listening");
    let _ = io::stdout().flush();
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..o.n {
            match accept(l.as_raw_fd()) {
                Ok(fd) => handles.push(s.spawn(move || serve(i, fd, o))),
                Err(e) => {
                    println!("conn {i} error accept: {e}");
                    break;
                }
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, "thread panicked".into())))
            .collect()
    });
    let complete = results.len() == o.n;
    report(results) && complete
}

fn report(results: Vec<(bool, String)>) -> bool {
    let mut all = true;
    let mut stdout = io::stdout().lock();
    for (ok, line) in results {
        all &= ok;
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    all
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let listen = match mode.as_str() {
        "listen" => true,
        "connect" => false,
        _ => usage(),
    };
    let addr = parse_addr(&args.next().unwrap_or_else(|| usage()), listen);
    let mut o = Opts {
        n: 1,
        send: None,
        recv: false,
        recv_max: None,
        seed: 1,
        sha: false,
        verify: false,
        expect_refused: false,
        retry: Duration::ZERO,
        abort_after: None,
        zeros: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => o.n = num(args.next()),
            "--send" => o.send = Some(num(args.next())),
            "--recv" => o.recv = true,
            "--recv-max" => o.recv_max = Some(num(args.next())),
            "--seed" => o.seed = num(args.next()),
            "--sha256" => o.sha = true,
            "--verify" => o.verify = true,
            "--expect-refused" => o.expect_refused = true,
            "--retry" => o.retry = Duration::from_secs_f64(num(args.next())),
            "--abort-after" => o.abort_after = Some(num(args.next())),
            "--zeros" => o.zeros = true,
            _ => usage(),
        }
    }
    let ok = if listen {
        run_listen(&addr, &o)
    } else {
        run_connect(&addr, &o)
    };
    std::process::exit(if ok { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_does_not_depend_on_chunking() {
        let mut a = Stream::new(5);
        let mut whole = vec![0u8; 1000];
        a.fill(&mut whole);
        let mut b = Stream::new(5);
        let mut parts = Vec::new();
        for n in [1usize, 7, 8, 9, 100, 875] {
            let mut p = vec![0u8; n];
            b.fill(&mut p);
            parts.extend(p);
        }
        assert_eq!(whole, parts);
    }
}
