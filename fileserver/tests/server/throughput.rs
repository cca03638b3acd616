//! Read throughput of a 100 MiB file over a UnixStream pair (run with
//! `cargo test -p fileserver --release -- --ignored --nocapture throughput`).

use std::time::Instant;

use crate::client::{o, t, Body, Client, Msg};
use crate::fixture::Fixture;
use fileserver::Limits;

const SIZE: usize = 100 << 20;

/// Reads the whole file with `depth` requests of msize - 24 in flight, as the Linux client's
/// readahead may; returns MB/s.
fn read_file(fx: &Fixture, msize: u32, depth: u16) -> f64 {
    let mut c = Client::start(fx.shares.clone(), Limits::default());
    c.version(msize, "9P2000.L");
    c.attach(0, "root", 0).unwrap();
    c.walk_to(1, "big").unwrap();
    c.lopen(1, o::RDONLY).unwrap();
    let chunk = u64::from(c.msize - 24);
    let start = Instant::now();
    let (mut sent, mut received, mut bytes) = (0u64, 0u64, 0usize);
    let total = (SIZE as u64).div_ceil(chunk);
    while received < total {
        while sent < total && sent - received < u64::from(depth) {
            let msg = Msg::default().u32(1).u64(sent * chunk).u32(chunk as u32);
            c.send(t::TREAD, (sent % 1000) as u16 + 1, &msg.0);
            sent += 1;
        }
        let (ty, tag, body) = c.recv().unwrap();
        assert_eq!(ty, t::TREAD + 1, "tag {tag}: {body:?}");
        bytes += Body(&body).u32() as usize;
        received += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(bytes, SIZE);
    SIZE as f64 / secs / 1e6
}

#[test]
#[ignore = "a measurement, not a check: run it by hand"]
fn throughput_read_100mib() {
    let fx = Fixture::new();
    fx.write("big", &vec![0x5a; SIZE]);
    let _warm = std::fs::read(fx.shared("big")).unwrap();

    for msize in [128 << 10, 512 << 10, 1 << 20] {
        for depth in [1, 4] {
            let mbs: Vec<f64> = (0..3).map(|_| read_file(&fx, msize, depth)).collect();
            println!(
                "msize {:>4} KiB, {depth} in flight: {:.0} / {:.0} / {:.0} MB/s",
                msize >> 10,
                mbs[0],
                mbs[1],
                mbs[2]
            );
        }
    }
}
