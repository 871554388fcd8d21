//! Typed errors of the data plane shell.

use std::net::SocketAddr;

use meshd_tunnel::ConfigError;

/// Why the data plane could not be configured, started or run.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The configuration is inconsistent (checked by the core).
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// Creating or configuring the TUN device failed.
    #[error("TUN device {name:?}: {source}")]
    Tun {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A worker thread, or the signal that stops them, could not be made.
    #[error("cannot start the data plane workers: {0}")]
    Worker(#[source] std::io::Error),
    /// Binding or configuring a UDP socket failed.
    #[error("UDP socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl DataplaneError {
    /// An inconsistent configuration, described by `msg`.
    pub fn config(msg: impl Into<String>) -> Self {
        DataplaneError::InvalidConfig(ConfigError::new(msg))
    }
}
