//! Typed errors of the core.

/// The data plane configuration (or a peer set) is inconsistent; the message names the
/// field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid data plane configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error with `msg` as its description.
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}
