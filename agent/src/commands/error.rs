//! The errors a command can end with. Each says what is wrong and where (file, flag).

use std::io;

use crate::state::StateError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A problem with the state directory (names the file).
    #[error(transparent)]
    State(#[from] StateError),

    /// The config file could not be read or is invalid (names file, line, key).
    #[error(transparent)]
    Config(#[from] mesh_config::ConfigError),

    /// A certificate or key operation failed.
    #[error("{context}: {source}")]
    Pki {
        context: String,
        #[source]
        source: pki::PkiError,
    },

    /// A flag's value is wrong in a way the parser could not see (needs the state to tell).
    #[error("{flag}: {reason}")]
    InvalidArgument { flag: String, reason: String },

    /// The command exists in the contract but a later version implements it.
    #[error("`meshd {command}` is not implemented yet in this version")]
    NotImplemented { command: &'static str },

    /// Writing the command's output failed (closed pipe, full disk, ...).
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),

    /// The daemon stopped with an error.
    #[error("{0:#}")]
    Daemon(anyhow::Error),
}
