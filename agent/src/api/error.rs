//! Errors of the control socket, on both sides. Each names the socket path.

use std::io;
use std::path::PathBuf;

use super::protocol::{ErrorKind, Failure};

/// Something went wrong with the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The daemon could not create its socket.
    #[error("cannot create the control socket {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },

    /// The socket path is taken by something that is not a socket; it is left alone.
    #[error(
        "{} exists and is not a socket; meshd will not replace it (move it away, or choose another path with --socket)",
        path.display()
    )]
    NotASocket { path: PathBuf },

    /// Another daemon answers on the socket.
    #[error(
        "another meshd is already running with the control socket {} (stop it first, or give this one its own --socket)",
        path.display()
    )]
    InUse { path: PathBuf },

    /// A command could not reach the daemon.
    #[error("is meshd running? cannot connect to {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },

    /// The daemon runs, but this user may not use its socket.
    #[error(
        "not allowed to use the control socket {}: {source} (run as root, or as a member of the socket's group)",
        path.display()
    )]
    ConnectDenied { path: PathBuf, source: io::Error },

    /// The connection broke or timed out mid-request.
    #[error("talking to the daemon over {} failed: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// The daemon's answer could not be understood.
    #[error("{message} (socket {})", path.display())]
    Protocol { path: PathBuf, message: String },

    /// The daemon understood the request and refused it.
    #[error("the daemon refused the request: {}", failure.message)]
    Refused { failure: Failure },
}

impl ApiError {
    /// The kind of refusal, if the daemon refused.
    pub fn refusal(&self) -> Option<ErrorKind> {
        match self {
            ApiError::Refused { failure } => Some(failure.kind),
            _ => None,
        }
    }

    /// True if no daemon listens on the socket (it is not running, or uses another socket).
    pub fn is_not_running(&self) -> bool {
        matches!(
            self,
            ApiError::Connect { source, .. }
                if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
        )
    }
}
