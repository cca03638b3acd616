//! The session itself: bad frames, unknown messages, fid and msize limits, pipelining, flush.

use std::collections::HashMap;

use crate::client::{o, t, Body, Client, Msg, NOTAG};
use crate::fixture::Fixture;
use fileserver::Limits;

#[test]
fn a_frame_over_msize_closes_the_session() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    let size = c.msize + 1;
    let mut frame = size.to_le_bytes().to_vec();
    frame.extend_from_slice(&[t::TWRITE, 1, 0]);
    c.send_raw(&frame);

    assert!(c.recv().is_none(), "connection closed");
    let result = c.server_result();
    assert!(
        matches!(result, Err(fileserver::Error::FrameTooLarge { .. })),
        "{result:?}"
    );
}

#[test]
fn a_huge_size_field_before_version_closes_without_allocating() {
    let fx = Fixture::new();
    let mut c = Client::start(fx.shares.clone(), Limits::default());

    c.send_raw(&[0xff, 0xff, 0xff, 0xff, t::TVERSION, 0xff, 0xff]);

    assert!(c.recv().is_none());
    assert!(matches!(
        c.server_result(),
        Err(fileserver::Error::FrameTooLarge { .. })
    ));
}

#[test]
fn a_frame_shorter_than_a_header_closes_the_session() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    c.send_raw(&[4, 0, 0, 0, t::TCLUNK, 1, 0]);

    assert!(c.recv().is_none());
    assert!(matches!(
        c.server_result(),
        Err(fileserver::Error::FrameTooSmall(4))
    ));
}

#[test]
fn a_connection_cut_mid_frame_ends_the_session() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    c.send_raw(&[100, 0, 0, 0, t::TWALK, 1, 0, 0, 0]);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();

    assert!(c.recv().is_none());
    assert!(matches!(
        c.server_result(),
        Err(fileserver::Error::TruncatedFrame)
    ));
}

#[test]
fn truncated_bodies_and_unknown_types_fail_only_their_request() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    let short_attach = c.rpc(t::TATTACH, Msg::default().u32(1).u32(2));
    let short_walk = c.rpc(t::TWALK, Msg::default().u32(0).u32(1).u16(3).str("a"));
    let bad_write = c.rpc(t::TWRITE, Msg::default().u32(0).u64(0).u32(1000).u8(1));
    let legacy_open = c.rpc(t::TOPEN, Msg::default().u32(0).u8(0));
    let tlerror = c.rpc(t::TLERROR, Msg::default().u32(0));
    let unknown = c.rpc(200, Msg::default());
    let too_many_names = c.walk(0, 1, &["a"; 17]);
    let still_serving = c.getattr(0);

    assert_eq!(short_attach, Err(libc::EINVAL));
    assert_eq!(short_walk, Err(libc::EINVAL));
    assert_eq!(bad_write, Err(libc::EINVAL));
    assert_eq!(legacy_open, Err(libc::EOPNOTSUPP));
    assert_eq!(tlerror, Err(libc::EOPNOTSUPP));
    assert_eq!(unknown, Err(libc::EOPNOTSUPP));
    assert_eq!(too_many_names, Err(libc::EINVAL));
    assert!(still_serving.is_ok());
    assert!(c.finish().is_ok());
}

#[test]
fn fids_are_bounded() {
    let fx = Fixture::new();
    let limits = Limits {
        max_fids: 16,
        ..Limits::default()
    };
    let mut c = Client::start(fx.shares.clone(), limits);
    c.version(65536, "9P2000.L");
    c.attach(0, "root", 0).unwrap();

    for fid in 1..16 {
        c.walk(0, fid, &[]).unwrap();
    }
    let over = c.walk(0, 16, &[]);
    let over_attach = c.attach(16, "root", 0);
    let over_xattr = c.xattrwalk(0, 16, "");
    c.clunk(15).unwrap();
    let after_clunk = c.walk(0, 16, &[]);
    let taken = c.walk(0, 16, &[]);

    assert_eq!(over.map(drop), Err(libc::EMFILE));
    assert_eq!(over_attach.map(drop), Err(libc::EMFILE));
    assert_eq!(over_xattr.map(drop), Err(libc::EMFILE));
    assert!(after_clunk.is_ok());
    assert_eq!(taken.map(drop), Err(libc::EBADF));
}

#[test]
fn version_resets_the_session() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk(0, 1, &[]).unwrap();

    c.version(65536, "9P2000.L");

    assert_eq!(c.getattr(1).err(), Some(libc::EBADF));
    assert_eq!(c.getattr(0).err(), Some(libc::EBADF));
}

#[test]
fn pipelined_requests_are_all_answered() {
    let fx = Fixture::new();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    fx.write("f", &data);
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let chunk = 10_000u32;
    let mut expected = HashMap::new();
    for i in 0..100u16 {
        let offset = u64::from(i) * u64::from(chunk);
        c.send(
            t::TREAD,
            100 + i,
            &Msg::default().u32(1).u64(offset).u32(chunk).0,
        );
        expected.insert(100 + i, offset as usize);
    }
    for _ in 0..100 {
        let (ty, tag, body) = c.recv().unwrap();
        assert_eq!(ty, t::TREAD + 1);
        let offset = expected.remove(&tag).expect("one reply per tag");
        let mut b = Body(&body);
        let n = b.u32() as usize;
        assert_eq!(b.0, &data[offset..offset + n]);
        assert_eq!(n, chunk as usize);
    }

    assert!(expected.is_empty());
}

#[test]
fn rflush_comes_after_the_flushed_reply() {
    let fx = Fixture::new();
    fx.write("f", &vec![7u8; 1 << 20]);
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    for round in 0..50u16 {
        let (read_tag, flush_tag) = (2 * round + 10, 2 * round + 11);
        c.send(
            t::TREAD,
            read_tag,
            &Msg::default().u32(1).u64(0).u32(1 << 19).0,
        );
        c.send(t::TFLUSH, flush_tag, &Msg::default().u16(read_tag).0);

        let first = c.recv().unwrap();
        let second = c.recv().unwrap();

        assert_eq!(
            (first.0, first.1),
            (t::TREAD + 1, read_tag),
            "round {round}"
        );
        assert_eq!(
            (second.0, second.1),
            (t::RFLUSH, flush_tag),
            "round {round}"
        );
    }
}

#[test]
fn a_flush_of_an_unknown_tag_is_answered_at_once() {
    let fx = Fixture::new();
    let mut c = Client::attached(&fx.shares, "root", 0);

    let flushed = c.rpc(t::TFLUSH, Msg::default().u16(4321));

    assert_eq!(flushed, Ok(vec![]));
}

#[test]
fn random_frames_never_bring_the_server_down() {
    let fx = Fixture::new();
    fx.mkdir("d");
    fx.write("d/f", b"content");
    let mut rng = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _session in 0..20 {
        let mut c = Client::attached(&fx.shares, "root", 0);
        c.walk_to(1, "d").unwrap();
        for i in 0..300u16 {
            let ty = match next() % 4 {
                0 => (next() % 256) as u8,
                _ => [
                    8, 12, 14, 16, 18, 20, 22, 24, 26, 30, 32, 40, 50, 52, 54, 70, 72, 74, 76, 104,
                    108, 110, 116, 118, 120, 122,
                ][(next() % 26) as usize],
            };
            if ty == t::TVERSION {
                continue;
            }
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 4 && next() % 2 == 0 {
                body[..4].copy_from_slice(&[(next() % 3) as u8, 0, 0, 0]);
            }
            c.send(ty, i, &body);
            let reply = c.recv();
            if ty == t::TFLUSH && reply.is_none() {
                break;
            }
            let (_, tag, _) = reply.expect("server still up");
            assert_eq!(tag, i);
        }
        let _ = c.finish();
    }
    let outside: Vec<_> = std::fs::read_dir(fx.scratch.path("outside"))
        .unwrap()
        .collect();
    assert_eq!(outside.len(), 1, "nothing appeared outside the share");
    assert_eq!(
        std::fs::read(fx.scratch.path("outside/secret")).unwrap(),
        b"host secret"
    );
}

#[test]
fn replies_stay_under_msize() {
    let fx = Fixture::new();
    fx.write("f", &vec![1u8; 100_000]);
    let mut c = Client::start(fx.shares.clone(), Limits::default());
    c.version(8192, "9P2000.L");
    c.attach(0, "root", 0).unwrap();
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    let data = c.read(1, 0, 1 << 20).unwrap();

    assert!(data.len() + 11 < 8192, "{} bytes", data.len());
    assert_eq!(data.len(), 8192 - 12);
    let _ = NOTAG;
}

#[test]
fn the_host_ends_a_session_by_shutting_its_stream_down() {
    let fx = Fixture::new();
    let (guest, host) = std::os::unix::net::UnixStream::pair().unwrap();
    let handle = host.try_clone().unwrap();
    let shares = fx.shares.clone();
    let server = std::thread::spawn(move || fileserver::serve(host, shares, Limits::default()));
    std::thread::sleep(std::time::Duration::from_millis(50));

    handle.shutdown(std::net::Shutdown::Both).unwrap();
    let result = server.join().unwrap();

    assert!(result.is_ok(), "{result:?}");
    drop(guest);
}

#[test]
fn a_tag_can_be_reused_as_soon_as_its_reply_arrives() {
    let fx = Fixture::new();
    fx.write("f", b"x");
    let mut c = Client::attached(&fx.shares, "root", 0);
    c.walk_to(1, "f").unwrap();
    c.lopen(1, o::RDONLY).unwrap();

    for _ in 0..2000 {
        c.send(t::TREAD, 7, &Msg::default().u32(1).u64(0).u32(1).0);
        let (ty, tag, _) = c.recv().unwrap();

        assert_eq!((ty, tag), (t::TREAD + 1, 7));
    }
}
