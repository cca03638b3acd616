//! Helpers shared by the integration tests: finding `vmctl` and the tiny test guests, running a
//! command with a timeout, temporary directories, skip conditions and the checks every error case
//! shares (one `vmctl: ` line on stderr, no panic).
//!
//! Where things are found:
//! - `vmctl`: `$VMCTL`, else `<dir of this test binary>/../bin/vmctl` (the `build/tests/` layout),
//!   else `<repo>/build/bin/vmctl`, else `<repo>/target/release/vmctl`.
//! - the guests: `$VMCTL_TEST_GUESTS`, else `<dir of this test binary>/guests`, else
//!   `<repo>/build/tests/guests` (built on first use with `resources/testguests/build.sh`).

pub mod dns;
pub mod docker;
pub mod linux;
pub mod netns;
pub mod oci;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one `vmctl boot` of a tiny guest may take before the test calls it hung. Generous: the
/// machine may be busy (2 cores shared with a kernel build), and kvm-pvm emulates guest kernel code.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root, as seen when the tests were compiled (it may not exist where the copied
/// test binaries run; the environment variables and the binary's own directory come first).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory of the running test binary.
pub fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The `vmctl` binary under test. Panics with what to do when it cannot be found.
pub fn vmctl() -> PathBuf {
    if let Some(p) = std::env::var_os("VMCTL") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "VMCTL={} is not a file", p.display());
        return p;
    }
    let mut candidates = Vec::new();
    if let Some(dir) = exe_dir() {
        candidates.push(dir.join("../bin/vmctl"));
    }
    candidates.push(repo_root().join("build/bin/vmctl"));
    candidates.push(repo_root().join("target/release/vmctl"));
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "vmctl not found (looked at $VMCTL, {}): build it with `make vmctl` or set VMCTL",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The directory holding the tiny test guests (built from `resources/testguests/` when the repo's
/// own `build/tests/guests` is used).
pub fn guests_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(p) = std::env::var_os("VMCTL_TEST_GUESTS") {
            let p = PathBuf::from(p);
            assert!(
                p.is_dir(),
                "VMCTL_TEST_GUESTS={} is not a directory",
                p.display()
            );
            return p;
        }
        if let Some(dir) = exe_dir().map(|d| d.join("guests")) {
            if dir.join("exit").is_file() {
                return dir;
            }
        }
        let dir = repo_root().join("build/tests/guests");
        let script = repo_root().join("resources/testguests/build.sh");
        if script.is_file() {
            // Cheap when up to date; makes `cargo test` work without `make testguests` first.
            let out = Command::new(&script)
                .arg(&dir)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} {} failed: {}",
                script.display(),
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            dir.is_dir(),
            "test guests not found at {}: run `make testguests` or set VMCTL_TEST_GUESTS",
            dir.display()
        );
        dir
    })
    .clone()
}

/// The path of tiny test guest `name` (e.g. "hello", "exit", "smp").
pub fn guest(name: &str) -> PathBuf {
    let p = guests_dir().join(name);
    assert!(p.is_file(), "test guest {} is missing", p.display());
    p
}

/// A program of `tests/guest-tools` (static: it runs in the guest and on the host alike):
/// `<dir of this test binary>/guest-tools/<name>`, else `<repo>/build/tests/guest-tools/<name>`;
/// the error says where it looked.
pub fn find_guest_tool(name: &str) -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = exe_dir() {
        candidates.push(dir.join("guest-tools").join(name));
    }
    candidates.push(repo_root().join("build/tests/guest-tools").join(name));
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| format!("{name} not found at {candidates:?}: run `make guest-tools`"))
}

/// [`find_guest_tool`], for tests that cannot go on without it.
pub fn guest_tool(name: &str) -> PathBuf {
    find_guest_tool(name).unwrap_or_else(|e| panic!("{e}"))
}

/// What a finished (or killed) command did.
#[derive(Debug)]
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command ran past its timeout and was killed.
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Outcome {
    /// The exit code, None when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}{} after {:.3} s\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.command,
            self.status,
            if self.timed_out {
                " (killed: timed out)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// Asserts the command finished in time with exit code `code`.
    pub fn assert_code(&self, code: i32) {
        assert!(!self.timed_out, "timed out\n{}", self.describe());
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
    }

    /// Asserts stderr shows no panic and no backtrace hint.
    pub fn assert_no_panic(&self) {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad),
                "stderr shows a panic ({bad:?})\n{}",
                self.describe()
            );
        }
    }

    /// The single error line of a failed run: asserts stderr is exactly one line starting with
    /// `vmctl: ` and returns it.
    pub fn single_error_line(&self) -> &str {
        let text = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr\n{}",
            self.describe()
        );
        assert!(
            lines[0].starts_with("vmctl: "),
            "the error line does not start with `vmctl: `\n{}",
            self.describe()
        );
        lines[0]
    }
}

/// Runs `cmd` with stdin from /dev/null, capturing stdout and stderr, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let command = format!("{cmd:?}");
    let start = Instant::now();
    // Files, not pipes: a process the command leaves behind (a container's monitor inherits
    // `create`'s stdio, as runc's container process does) would hold a pipe open for ever.
    let mut out = capture_file();
    let mut err = capture_file();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup of the capture file"))
        .stderr(err.try_clone().expect("dup of the capture file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting for the killed child");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Outcome {
        command,
        status,
        stdout: read_capture(&mut out),
        stderr: read_capture(&mut err),
        timed_out,
        elapsed,
    }
}

/// An anonymous file (unlinked at once) that takes a child's output; appending, so reading it
/// (after a seek) never moves where a left-behind writer writes.
fn capture_file() -> std::fs::File {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "vmctl-tests-out-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    f
}

/// What was written to a capture file so far.
fn read_capture(f: &mut std::fs::File) -> String {
    use std::io::Seek;
    let mut buf = Vec::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `vmctl boot ARGS...`, run to the end (or [`BOOT_TIMEOUT`]).
pub fn vmctl_boot<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(Command::new(vmctl()).arg("boot").args(args), BOOT_TIMEOUT)
}

/// Why /dev/kvm cannot be used by this process, if it cannot.
pub fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm is not usable here ({e})")),
    }
}

/// Whether this machine's /dev/kvm is kvm-pvm (software-emulated guest kernel mode).
pub fn on_kvm_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("an effective uid in /proc/self/status")
}

/// Why a root-only test cannot run, if it cannot.
pub fn not_root() -> Option<String> {
    let uid = euid();
    (uid != 0).then(|| format!("needs root (running as uid {uid})"))
}

pub use test_skip::{report as print_skip, skip_if};

/// A directory removed on drop, unique per process and call.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "vmctl-tests-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `--timings` line: milliseconds since vmctl's start, and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub ms: f64,
    pub event: String,
}

/// The `[timings] <ms> ms  <event>` lines of `stderr`, in order.
pub fn parse_timings(stderr: &str) -> Vec<Timing> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[timings]"))
        .filter_map(|rest| {
            let (ms, event) = rest.trim_start().split_once(" ms")?;
            Some(Timing {
                ms: ms.trim().parse().ok()?,
                event: event.trim().to_string(),
            })
        })
        .collect()
}

/// `s` lower-cased with everything but hex digits removed, "0x" prefixes included: for finding
/// instruction bytes and addresses whatever their format ("f0 48 0f", "[0xf0, 0x48]", "f0480f").
pub fn hex_digits(s: &str) -> String {
    s.to_lowercase()
        .replace("0x", "")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect()
}

/// Whether `line` (case-insensitively) contains any of `words`.
pub fn mentions_any(line: &str, words: &[&str]) -> bool {
    let lower = line.to_lowercase();
    words.iter().any(|w| lower.contains(&w.to_lowercase()))
}
