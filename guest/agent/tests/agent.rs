//! The agent's request handling end to end on this host, as root: requests and raw streams over
//! Unix socket pairs (standing in for vsock connections), the root share a scratch directory.
//! Skipped (with a message) when not root.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::{can_run, spec, Scratch};
use guest_protocol::{
    read_frame, write_frame, ErrorKind, ExitStatus, ProcessSpec, Request, Response, Stream,
    WindowSize, INIT_ID, VERSION,
};
use vmctl_agent::agent::shares::DirShares;
use vmctl_agent::agent::{connection, Agent};

struct Harness {
    agent: Arc<Agent>,
    exits: mpsc::Receiver<ExitStatus>,
    _scratch: Scratch,
}

impl Harness {
    fn new(scratch: Scratch) -> Harness {
        let (tx, exits) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let shares = DirShares {
            root: scratch.root(),
            shares: scratch.shares(),
        };
        let agent = Agent::new(
            Box::new(shares),
            Box::new(move |s| {
                let _ = tx.lock().unwrap().send(s);
            }),
            Duration::from_millis(20),
        )
        .unwrap();
        Harness {
            agent,
            exits,
            _scratch: scratch,
        }
    }

    /// A new connection to the agent.
    fn connect(&self) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let agent = self.agent.clone();
        std::thread::spawn(move || connection::serve(&agent, theirs.into()));
        ours.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        ours
    }

    /// One request on a new connection.
    fn ask(&self, req: Request) -> Response {
        let mut c = self.connect();
        write_frame(&mut c, &req).unwrap();
        read_frame(&mut c).unwrap()
    }

    /// A connection attached to `stream` of `id`.
    fn attach(&self, id: &str, stream: Stream) -> UnixStream {
        let mut c = self.connect();
        write_frame(
            &mut c,
            &Request::Attach {
                id: id.into(),
                stream,
            },
        )
        .unwrap();
        let r: Response = read_frame(&mut c).unwrap();
        assert!(matches!(r, Response::Ok), "attach {id} {stream:?}: {r:?}");
        c
    }
}

fn read_to_end(mut c: UnixStream) -> String {
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

fn error_kind(r: &Response) -> Option<ErrorKind> {
    match r {
        Response::Error { kind, .. } => Some(*kind),
        _ => None,
    }
}

fn process(args: &[&str]) -> Box<ProcessSpec> {
    Box::new(ProcessSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        ..Default::default()
    })
}

#[test]
fn a_container_runs_with_its_stdio_and_reports_its_status() {
    if !can_run() {
        return;
    }
    let h = Harness::new(Scratch::new("agent-run"));
    let hello = h.ask(Request::Hello { version: VERSION });
    assert!(
        matches!(
            hello,
            Response::Hello {
                version: VERSION,
                ..
            }
        ),
        "{hello:?}"
    );
    let s = spec("echo out; echo err >&2; read x; echo got $x; exit 5");

    let created = h.ask(Request::CreateContainer {
        spec: Box::new(s.clone()),
    });
    let Response::Started { pid } = created else {
        panic!("{created:?}")
    };
    assert!(pid > 1);
    let out = h.attach(INIT_ID, Stream::Stdout);
    let err = h.attach(INIT_ID, Stream::Stderr);
    let mut input = h.attach(INIT_ID, Stream::Stdin);
    let again = h.ask(Request::CreateContainer { spec: Box::new(s) });
    assert_eq!(error_kind(&again), Some(ErrorKind::State), "{again:?}");
    assert!(matches!(h.ask(Request::Start), Response::Ok));
    input.write_all(b"hi\n").unwrap();
    drop(input);

    assert_eq!(read_to_end(out), "out\ngot hi\n");
    assert_eq!(read_to_end(err), "err\n");
    let waited = h.ask(Request::Wait { id: INIT_ID.into() });
    assert!(
        matches!(
            waited,
            Response::Exited {
                status: ExitStatus::Code(5)
            }
        ),
        "{waited:?}"
    );
    let status = h.exits.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status.shell_status(), 5);
    assert_eq!(error_kind(&h.ask(Request::Start)), Some(ErrorKind::State));
}

#[test]
fn exec_wait_signal_ps_resize_and_a_terminal() {
    if !can_run() {
        return;
    }
    let h = Harness::new(Scratch::new("agent-exec"));
    let s = spec("sleep 1000");
    assert!(matches!(
        h.ask(Request::CreateContainer { spec: Box::new(s) }),
        Response::Started { .. }
    ));
    let exec_early = h.ask(Request::Exec {
        id: "e0".into(),
        process: process(&["true"]),
    });
    assert!(
        matches!(exec_early, Response::Started { .. }),
        "exec before start: {exec_early:?}"
    );
    assert!(matches!(h.ask(Request::Start), Response::Ok));

    // an exec'd process with its output and status
    let started = h.ask(Request::Exec {
        id: "e1".into(),
        process: process(&["sh", "-c", "echo pid=$$; exit 7"]),
    });
    assert!(matches!(started, Response::Started { .. }), "{started:?}");
    let out = read_to_end(h.attach("e1", Stream::Stdout));
    assert!(out.starts_with("pid=") && out != "pid=1\n", "{out}");
    let waited = h.ask(Request::Wait { id: "e1".into() });
    assert!(
        matches!(
            waited,
            Response::Exited {
                status: ExitStatus::Code(7)
            }
        ),
        "{waited:?}"
    );
    let waited_again = h.ask(Request::Wait { id: "e1".into() });
    assert!(
        matches!(waited_again, Response::Exited { .. }),
        "a status is kept: {waited_again:?}"
    );

    // errors: a used id, a missing program, unknown ids, a bad signal, no terminal
    let used = h.ask(Request::Exec {
        id: "e1".into(),
        process: process(&["true"]),
    });
    assert_eq!(error_kind(&used), Some(ErrorKind::Invalid), "{used:?}");
    let missing = h.ask(Request::Exec {
        id: "e2".into(),
        process: process(&["nope"]),
    });
    assert_eq!(
        error_kind(&missing),
        Some(ErrorKind::NotFound),
        "{missing:?}"
    );
    let unknown = h.ask(Request::Wait { id: "zz".into() });
    assert_eq!(error_kind(&unknown), Some(ErrorKind::State), "{unknown:?}");
    let bad_signal = h.ask(Request::Signal {
        id: INIT_ID.into(),
        signal: 99,
        all: false,
    });
    assert_eq!(error_kind(&bad_signal), Some(ErrorKind::Invalid));
    let no_tty = h.ask(Request::Resize {
        id: INIT_ID.into(),
        size: WindowSize { rows: 1, cols: 1 },
    });
    assert_eq!(error_kind(&no_tty), Some(ErrorKind::Invalid), "{no_tty:?}");
    let exited = h.ask(Request::Signal {
        id: "e1".into(),
        signal: 15,
        all: false,
    });
    assert_eq!(error_kind(&exited), Some(ErrorKind::State), "{exited:?}");

    // a process with a terminal: output, input, resize
    let mut p = process(&["sh", "-c", "stty size; read x; echo got $x"]);
    p.terminal = true;
    p.console_size = Some(WindowSize {
        rows: 30,
        cols: 100,
    });
    assert!(matches!(
        h.ask(Request::Exec {
            id: "t".into(),
            process: p
        }),
        Response::Started { .. }
    ));
    let resized = h.ask(Request::Resize {
        id: "t".into(),
        size: WindowSize {
            rows: 31,
            cols: 101,
        },
    });
    assert!(matches!(resized, Response::Ok), "{resized:?}");
    let mut tty = h.attach("t", Stream::Tty);
    tty.write_all(b"yo\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("got yo") {
        let n = tty.read(&mut buf).unwrap();
        assert!(n > 0, "tty ended early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.contains("30 100") || seen.contains("31 101"),
        "{seen:?}"
    );
    drop(tty);

    // ps, then the whole container killed
    let listed = h.ask(Request::Ps);
    let Response::Processes { processes } = listed else {
        panic!("{listed:?}")
    };
    assert!(
        processes.iter().any(|p| p.command == "sleep 1000"),
        "{processes:?}"
    );
    let killed = h.ask(Request::Signal {
        id: INIT_ID.into(),
        signal: 9,
        all: true,
    });
    assert!(matches!(killed, Response::Ok), "{killed:?}");
    let waited = h.ask(Request::Wait { id: INIT_ID.into() });
    assert!(
        matches!(
            waited,
            Response::Exited {
                status: ExitStatus::Signal(9)
            }
        ),
        "{waited:?}"
    );
    let status = h.exits.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status.shell_status(), 137);
}

#[test]
fn malformed_frames_are_answered_and_the_connection_goes_on() {
    if !can_run() {
        return;
    }
    let h = Harness::new(Scratch::new("agent-frames"));
    let mut c = h.connect();
    let junk = br#"{"op":"explode"}"#;
    let mut frame = (junk.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&VERSION.to_le_bytes());
    frame.extend_from_slice(junk);
    c.write_all(&frame).unwrap();

    let r: Response = read_frame(&mut c).unwrap();
    assert_eq!(error_kind(&r), Some(ErrorKind::Invalid), "{r:?}");
    write_frame(&mut c, &Request::Hello { version: VERSION }).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(&mut c).unwrap(),
        Response::Hello { .. }
    ));
    let wrong = h.ask(Request::Hello { version: 99 });
    assert_eq!(error_kind(&wrong), Some(ErrorKind::Invalid));
    let no_container = h.ask(Request::Start);
    assert_eq!(error_kind(&no_container), Some(ErrorKind::State));
    let exec = h.ask(Request::Exec {
        id: "x".into(),
        process: process(&["true"]),
    });
    assert_eq!(error_kind(&exec), Some(ErrorKind::State), "{exec:?}");
    // a header announcing too much: answered, then closed
    c.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 0]).unwrap();
    let r: Response = read_frame(&mut c).unwrap();
    assert_eq!(error_kind(&r), Some(ErrorKind::Invalid));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_failed_create_can_be_retried_and_a_missing_program_is_not_found() {
    if !can_run() {
        return;
    }
    let h = Harness::new(Scratch::new("agent-retry"));
    let mut s = spec("");
    s.process.args = vec!["nosuch".into()];
    let r = h.ask(Request::CreateContainer { spec: Box::new(s) });
    assert_eq!(error_kind(&r), Some(ErrorKind::NotFound), "{r:?}");
    let mut bad = spec("true");
    bad.mounts.push(common::fs_mount("relative", "tmpfs", &[]));
    let r = h.ask(Request::CreateContainer {
        spec: Box::new(bad),
    });
    assert_eq!(error_kind(&r), Some(ErrorKind::Invalid), "{r:?}");

    let r = h.ask(Request::CreateContainer {
        spec: Box::new(spec("exit 0")),
    });
    assert!(matches!(r, Response::Started { .. }), "{r:?}");
    assert!(matches!(h.ask(Request::Start), Response::Ok));
    let out = h.attach(INIT_ID, Stream::Stdout);
    assert_eq!(read_to_end(out), "");
    let status = h.exits.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status, ExitStatus::Code(0));
}
