//! The shares of one VM: host directories (and single host files) the guest may mount by tag.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::{Error, Result};
use crate::name::Name;
use crate::sys;

/// One share: what the guest mounts with `aname=TAG`.
#[derive(Debug, Clone)]
pub struct Share {
    /// The attach name (aname) the guest mounts it by; unique within a VM.
    pub tag: String,
    /// What is shared.
    pub source: ShareSource,
    /// Refuse every modification (EROFS), whatever the guest's mount options say.
    pub readonly: bool,
}

/// What a share exposes.
#[derive(Debug, Clone)]
pub enum ShareSource {
    /// A host directory and everything below it.
    Dir(PathBuf),
    /// A directory that shows only the entry `name` of host directory `dir` (a single file bind
    /// mount such as /etc/resolv.conf: the guest mounts the share and bind-mounts `name` from
    /// it). Nothing can be created in that directory, and `name` cannot be removed or renamed.
    File { dir: PathBuf, name: OsString },
}

/// A share opened for serving: its root is opened once, as an `O_PATH` descriptor, when the
/// share is added; every fid of every session on it descends from that descriptor.
pub(crate) struct ShareRoot {
    pub(crate) tag: String,
    pub(crate) root: Arc<OwnedFd>,
    pub(crate) dev: u64,
    pub(crate) readonly: bool,
    /// For a File share, the one entry its root shows.
    pub(crate) only: Option<Name>,
}

/// The table of shares of one VM. Share it between sessions as `Arc<Shares>`; shares can be
/// added and removed while sessions run (a removed share stays usable by fids already attached
/// to it, and cannot be attached anew).
#[derive(Default)]
pub struct Shares {
    table: RwLock<HashMap<Vec<u8>, Arc<ShareRoot>>>,
}

impl Shares {
    /// An empty table.
    pub fn new() -> Shares {
        Shares::default()
    }

    /// Opens the share's root and adds it under its tag.
    pub fn add(&self, share: Share) -> Result<()> {
        let tag = share.tag;
        if tag.is_empty() || tag.len() > 255 || tag.contains('\0') {
            return Err(Error::InvalidTag(tag));
        }
        std::fs::metadata("/proc/self/fd").map_err(Error::NoProcFd)?;
        let (dir, only) = match share.source {
            ShareSource::Dir(dir) => (dir, None),
            ShareSource::File { dir, name } => {
                let checked = Name::new(name.as_bytes()).map_err(|_| Error::InvalidFileName {
                    tag: tag.clone(),
                    name: name.to_string_lossy().into_owned(),
                })?;
                (dir, Some(checked))
            }
        };
        let root = open_root(&tag, &dir)?;
        let st = sys::fstat(root.as_fd()).map_err(|source| Error::OpenRoot {
            tag: tag.clone(),
            path: dir.clone(),
            source,
        })?;
        if let Some(name) = &only {
            sys::fstatat(root.as_fd(), name.as_cstr(), libc::AT_SYMLINK_NOFOLLOW).map_err(
                |source| Error::FileEntry {
                    tag: tag.clone(),
                    path: dir.join(std::ffi::OsStr::from_bytes(name.as_bytes())),
                    source,
                },
            )?;
        }
        let entry = Arc::new(ShareRoot {
            tag: tag.clone(),
            root: Arc::new(root),
            dev: st.st_dev,
            readonly: share.readonly,
            only,
        });
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.contains_key(tag.as_bytes()) {
            return Err(Error::DuplicateTag(tag));
        }
        table.insert(tag.into_bytes(), entry);
        Ok(())
    }

    /// Removes the share `tag`; false if there was none.
    pub fn remove(&self, tag: &str) -> bool {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.remove(tag.as_bytes()).is_some()
    }

    /// The tags of the shares, sorted.
    pub fn tags(&self) -> Vec<String> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut tags: Vec<String> = table.values().map(|s| s.tag.clone()).collect();
        tags.sort();
        tags
    }

    /// The share a Tattach names.
    pub(crate) fn get(&self, aname: &[u8]) -> Option<Arc<ShareRoot>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.get(aname).cloned()
    }
}

/// Opens a host directory (a path the host chose, so symbolic links in it are followed) as an
/// `O_PATH` descriptor.
fn open_root(tag: &str, dir: &std::path::Path) -> Result<OwnedFd> {
    let err = |source| Error::OpenRoot {
        tag: tag.to_string(),
        path: dir.to_path_buf(),
        source,
    };
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    sys::open_host_path(&path, libc::O_PATH | libc::O_DIRECTORY).map_err(err)
}
