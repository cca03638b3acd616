//! The file server's end of the guest's 9P mounts: a listener on the hybrid vsock socket's
//! `<path>_564`, one session per connection, the attach name choosing the share.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use crate::oci::translate::{ShareDef, ShareSource};
use crate::Error;

/// Opens every share (so a missing directory fails `create`, not a guest mount) and serves
/// connections on `socket` from a thread of its own.
pub fn start(socket: &Path, defs: &[ShareDef]) -> Result<(), Error> {
    let shares = fileserver::Shares::new();
    for d in defs {
        let source = match &d.source {
            ShareSource::Dir(p) => fileserver::ShareSource::Dir(p.clone()),
            ShareSource::File { dir, name } => fileserver::ShareSource::File {
                dir: dir.clone(),
                name: name.into(),
            },
        };
        shares
            .add(fileserver::Share {
                tag: d.tag.clone(),
                source,
                readonly: d.readonly,
            })
            .map_err(|e| Error::Spec(format!("cannot share {}: {e}", describe(&d.source))))?;
    }
    let shares = Arc::new(shares);
    let listener = UnixListener::bind(socket)
        .map_err(|e| Error::io(format!("cannot listen on {}", socket.display()), e))?;
    std::thread::Builder::new()
        .name("9p-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shares = shares.clone();
                let spawned = std::thread::Builder::new()
                    .name("9p".into())
                    .spawn(move || {
                        if let Err(e) =
                            fileserver::serve(conn, shares, fileserver::Limits::default())
                        {
                            crate::oci::log::debug(&format!("9P session ended: {e}"));
                        }
                    });
                if let Err(e) = spawned {
                    crate::oci::log::warn(&format!("cannot start a 9P session: {e}"));
                }
            }
        })
        .map_err(|e| Error::io("cannot start the file server", e))?;
    Ok(())
}

fn describe(s: &ShareSource) -> String {
    match s {
        ShareSource::Dir(p) => p.display().to_string(),
        ShareSource::File { dir, name } => dir.join(name).display().to_string(),
    }
}
