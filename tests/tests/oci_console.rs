//! `--console-socket`: the pty master arrives over SCM_RIGHTS as runc sends it, the container's
//! shell works on it, and a window-size change on the master reaches the guest.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use vmctl_tests::oci::{runtime_unavailable, wait_until, Bundle, Runtime};
use vmctl_tests::{skip_if, TempDir};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(listener: &UnixListener) -> File {
    let (conn, _) = listener.accept().expect("the runtime connects");
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u8; 64];
    // SAFETY: msghdr is plain data; its pointers refer to the locals above, alive for recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: recvmsg fills the buffers described by `msg`.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR/CMSG_DATA walk inside it.
    let fd: RawFd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no descriptor came with the message");
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>())
    };
    // SAFETY: the descriptor was just received and is ours.
    unsafe { File::from_raw_fd(fd) }
}

fn set_window(master: &File, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0, "TIOCSWINSZ");
}

#[test]
fn a_console_socket_gets_a_working_terminal_that_follows_resizes() {
    skip_if!(runtime_unavailable());
    let rt = Runtime::new();
    let sock_dir = TempDir::new("console");
    let sock = sock_dir.path().join("pty.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::busybox("tty");
    b.edit(|c| {
        c["process"]["terminal"] = true.into();
        c["process"]["args"] = serde_json::json!(["sh"]);
    });
    let (tx, rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || receive_fd(&listener));

    rt.run(&[
        "create",
        "--bundle",
        path(b.path()),
        "--console-socket",
        path(&sock),
        "tty1",
    ])
    .assert_code(0);
    let mut master = receiver.join().expect("a pty master arrives");
    set_window(&master, 40, 100);
    rt.run(&["start", "tty1"]).assert_code(0);
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |want: &str| {
        let ok = wait_until(Duration::from_secs(60), || {
            while let Ok(chunk) = rx.try_recv() {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            seen.contains(want)
        });
        assert!(ok, "{want:?} never appeared on the terminal; got {seen:?}");
    };

    master
        .write_all(b"tty; stty size; echo MARK$((1+1))\n")
        .unwrap();
    expect("MARK2");
    expect("/dev/pts/");
    expect("40 100");

    set_window(&master, 33, 77);
    master.write_all(b"stty size; echo MARK$((2+1))\n").unwrap();
    expect("MARK3");
    expect("33 77");

    master.write_all(b"exit 7\n").unwrap();
    assert!(wait_until(Duration::from_secs(30), || rt.status("tty1") == "stopped"));
}
