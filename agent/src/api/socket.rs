//! Where the control socket lives, and binding it safely.
//!
//! The path is `--socket` if given; otherwise `/run/meshd/meshd.sock` for the default state
//! directory, and `meshd.sock` inside the state directory when `--state-dir` names another
//! one — so that several nodes on one host (tests, one per network namespace) never share a
//! socket, and `meshd status --state-dir X` finds the daemon started with the same option.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::error::ApiError;
use crate::state::DEFAULT_STATE_DIR;

/// The socket of a node with the default state directory.
pub const DEFAULT_SOCKET_PATH: &str = "/run/meshd/meshd.sock";
/// The socket's name inside a non-default state directory.
pub const SOCKET_FILE: &str = "meshd.sock";
/// Owner and group may connect (give operators the daemon's group); others may not.
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of `/run/meshd` when meshd creates it.
const RUN_DIR_MODE: u32 = 0o755;

/// The socket path for `--socket` (if given) and `--state-dir`.
pub fn socket_path(explicit: Option<&Path>, state_dir: &Path) -> PathBuf {
    match explicit {
        Some(path) => path.to_path_buf(),
        None if state_dir == Path::new(DEFAULT_STATE_DIR) => PathBuf::from(DEFAULT_SOCKET_PATH),
        None => state_dir.join(SOCKET_FILE),
    }
}

/// The bound control socket; the socket file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    pub(super) listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds the socket at `path`. A socket file left by a daemon that died is replaced; a
    /// live daemon on it, or a file that is not a socket, is an error. Must run inside the
    /// tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, ApiError> {
        let error = |source: io::Error| ApiError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(RUN_DIR_MODE)
                .create(parent)
                .map_err(error)?;
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(ApiError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Ok(_) => match StdUnixStream::connect(path) {
                Ok(_) => {
                    return Err(ApiError::InUse {
                        path: path.to_path_buf(),
                    });
                }
                // Nobody listens: the file is what a killed daemon left behind.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path).map_err(error)?;
                }
                Err(e) => return Err(error(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        let listener = UnixListener::bind(path).map_err(error)?;
        // bind(2) created the file with 0777 & ~umask; with any usual umask (022, 077) that is
        // no wider than 0660 for connecting, which needs write permission. Narrow or widen
        // it to exactly SOCKET_MODE now.
        let socket = ControlSocket {
            listener,
            path: path.to_path_buf(),
        };
        fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(error)?;
        Ok(socket)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Leave no socket that points at nobody; another daemon may already have replaced
        // it only if this one was not running, which bind() rules out.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_state_dir_uses_run_meshd() {
        assert_eq!(
            socket_path(None, Path::new("/var/lib/meshd")),
            PathBuf::from("/run/meshd/meshd.sock")
        );
        assert_eq!(
            socket_path(None, Path::new("/tmp/node1/state")),
            PathBuf::from("/tmp/node1/state/meshd.sock")
        );
        assert_eq!(
            socket_path(Some(Path::new("/tmp/x.sock")), Path::new("/var/lib/meshd")),
            PathBuf::from("/tmp/x.sock")
        );
    }

    #[tokio::test]
    async fn bind_sets_the_mode_replaces_stale_sockets_and_refuses_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/meshd.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);

        let error = ControlSocket::bind(&path).unwrap_err();
        assert!(matches!(error, ApiError::InUse { .. }), "{error}");
        assert!(error.to_string().contains("another meshd"), "{error}");

        // A stale socket: the file stays after the listener is gone.
        let std_listener = std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock"));
        drop(std_listener);
        let stale = ControlSocket::bind(&dir.path().join("stale.sock"));
        assert!(stale.is_ok(), "{stale:?}");

        drop(socket);
        assert!(!path.exists(), "the socket file is removed on drop");
    }

    #[tokio::test]
    async fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshd.sock");
        fs::write(&path, b"precious").unwrap();
        let error = ControlSocket::bind(&path).unwrap_err();
        assert!(error.to_string().contains("not a socket"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }
}
