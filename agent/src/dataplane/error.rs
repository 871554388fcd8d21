//! Typed errors of the data plane.

use std::net::SocketAddr;

/// Why the data plane could not be configured, started or run.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The configuration is inconsistent; the message names the field and the value.
    #[error("invalid data plane configuration: {0}")]
    InvalidConfig(String),
    /// Creating or configuring the TUN device failed.
    #[error("TUN device {name:?}: {source}")]
    Tun {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// Binding or configuring a UDP socket failed.
    #[error("UDP socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl DataplaneError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        DataplaneError::InvalidConfig(msg.into())
    }
}
