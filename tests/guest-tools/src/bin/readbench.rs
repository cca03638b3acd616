//! `readbench FILE [BS]`: reads FILE from start to end with plain (buffered, or DAX) `read` calls
//! of BS bytes (default 1 MiB), as `dd if=FILE of=/dev/null bs=BS` would, for the pmem benchmark.
//! Prints `readbench: ...` details on stderr and `RESULT <MB/s> MB/s` on stdout (MB = 10^6 bytes).
//! Exits 1 on any error or an empty file.

use std::io::Read;
use std::time::Instant;

fn die(msg: &str) -> ! {
    eprintln!("readbench: {msg}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, bs) = match args.as_slice() {
        [path] => (path.as_str(), 1 << 20),
        [path, bs] => (
            path.as_str(),
            bs.parse::<usize>()
                .ok()
                .filter(|b| (1..=64 << 20).contains(b))
                .unwrap_or_else(|| die("BS must be 1 to 67108864 bytes")),
        ),
        _ => die("usage: readbench FILE [BS]"),
    };
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let mut buf = vec![0u8; bs];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => die(&format!("{path}: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if total == 0 {
        die(&format!("{path} is empty"));
    }
    eprintln!("readbench: {total} bytes in {secs:.3} s");
    println!("RESULT {:.1} MB/s", total as f64 / secs / 1e6);
}
