//! waitress's `unix_socket`: a listening unix socket whose file gets
//! `unix_socket_perms`. A stale socket file from an earlier run is replaced;
//! any other file at the path is an error, never removed. The file is
//! removed again when the listener goes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{UnixListener, UnixStream};

/// Set when the sockets were handed to a new process: the file stays.
static KEEP_FILE: AtomicBool = AtomicBool::new(false);

pub(crate) fn keep_file() {
    KEEP_FILE.store(true, Ordering::Relaxed);
}

pub(crate) struct Listener {
    inner: UnixListener,
    pub(crate) path: PathBuf,
}

impl Listener {
    pub(crate) fn bind(path: &Path, perms: u32) -> io::Result<Listener> {
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on unix:{}: {e}", path.display()),
            )
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(fail)?,
            Ok(_) => {
                return Err(fail(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let inner = UnixListener::bind(path).map_err(fail)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms)).map_err(fail)?;
        Ok(Listener {
            inner,
            path: path.to_owned(),
        })
    }

    /// A listening socket a previous process handed over (its file is in place).
    pub(crate) fn adopt(l: std::os::unix::net::UnixListener, path: &Path) -> io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Listener {
            inner: UnixListener::from_std(l)?,
            path: path.to_owned(),
        })
    }

    /// A copy of the socket, for handing it over.
    pub(crate) fn copy(&self) -> io::Result<OwnedFd> {
        self.inner.as_fd().try_clone_to_owned()
    }

    pub(crate) async fn accept(&self) -> io::Result<UnixStream> {
        Ok(self.inner.accept().await?.0)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if KEEP_FILE.load(Ordering::Relaxed) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
