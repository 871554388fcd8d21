//! The errors a command can end with. Each says what is wrong and where (file, flag).

use std::io;
use std::path::PathBuf;

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

    /// An existing config file says something else than the command line.
    #[error(
        "{}: {key} is {in_file:?} but {flag} says {given:?}; make them agree (or remove the file to let meshd write it)",
        path.display()
    )]
    ConfigMismatch {
        path: PathBuf,
        key: String,
        in_file: String,
        flag: String,
        given: String,
    },

    /// `--config` and `--state-dir` point at two different nodes.
    #[error(
        "{} is the config of node {config_name:?}, but {} says this node is {record_name:?}; pass the --config and --state-dir of the same node",
        config.display(),
        record.display()
    )]
    ConfigOfOtherNode {
        config: PathBuf,
        config_name: String,
        record: PathBuf,
        record_name: String,
    },

    /// `init` on a node that already has an identity.
    #[error(
        "this node is already initialised: {} exists, and meshd never overwrites keys or a CA (to start over, move {} away first)",
        path.display(),
        state_dir.display()
    )]
    AlreadyInitialised { path: PathBuf, state_dir: PathBuf },

    /// The allocator refused (duplicate name, unknown core, pool exhausted, ...).
    #[error(transparent)]
    Alloc(#[from] mesh_config::alloc::AllocError),

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

    /// Talking to the running daemon failed (names the socket), or it refused.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),

    /// A client device could not be added.
    #[error(transparent)]
    Client(#[from] crate::api::client_registry::ClientError),

    /// A CA backup, restore or hand-over was refused (says why and what to do).
    #[error(transparent)]
    CaMove(Box<super::ca_backup::CaMoveError>),

    /// Writing the command's output failed (closed pipe, full disk, ...).
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),

    /// The daemon stopped with an error.
    #[error("{}", chain_text(.0))]
    Daemon(anyhow::Error),
}

/// An error and its causes as one line, `outer: inner: innermost`, skipping a cause whose
/// text the line already contains (many errors print their source in their own message).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

impl CommandError {
    /// `flag` (or a `file: key`) has a value the state or the configuration rules out.
    pub fn invalid(flag: impl Into<String>, reason: impl Into<String>) -> Self {
        CommandError::InvalidArgument {
            flag: flag.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_print_each_cause_once() {
        let io = io::Error::new(io::ErrorKind::NotFound, "No such file");
        let wrapped = anyhow::Error::new(StateError::Read {
            path: "/s/wireguard.key".into(),
            source: io,
        })
        .context("cannot load the key");
        assert_eq!(
            CommandError::Daemon(wrapped).to_string(),
            "cannot load the key: cannot read /s/wireguard.key: No such file"
        );
    }
}
