//! Scratch directories under /tmp (removed on drop) and shares on them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fileserver::{Share, ShareSource, Shares};

/// A directory under /tmp, removed with everything in it when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("fileserver-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory with `share/` (shared as "root", and read-only as "ro") and
/// `outside/secret` (never reachable from the guest).
pub struct Fixture {
    pub scratch: Scratch,
    pub shares: Arc<Shares>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let scratch = Scratch::new();
        std::fs::create_dir(scratch.path("share")).unwrap();
        std::fs::create_dir(scratch.path("outside")).unwrap();
        std::fs::write(scratch.path("outside/secret"), b"host secret").unwrap();
        let shares = Arc::new(Shares::new());
        for (tag, readonly) in [("root", false), ("ro", true)] {
            shares
                .add(Share {
                    tag: tag.into(),
                    source: ShareSource::Dir(scratch.path("share")),
                    readonly,
                })
                .unwrap();
        }
        Fixture { scratch, shares }
    }

    /// A path inside the shared directory.
    pub fn shared(&self, rel: &str) -> PathBuf {
        self.scratch.path("share").join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        std::fs::write(self.shared(rel), data).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.shared(rel)).unwrap();
    }
}

/// lstat of a host path.
pub fn lstat(path: &Path) -> libc::stat {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is NUL-terminated, `st` is writable memory of lstat's size.
    let r = unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) };
    assert_eq!(r, 0, "lstat {}", path.display());
    // SAFETY: lstat succeeded and filled it.
    unsafe { st.assume_init() }
}

/// mknod on the host (devices and fifos planted by the host, for the tests).
pub fn host_mknod(path: &Path, mode: u32, dev: libc::dev_t) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is NUL-terminated and outlives the call.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(r, 0, "mknod {}", path.display());
}
