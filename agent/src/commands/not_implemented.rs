//! Commands that are part of the contract but implemented by a later version. They exist so
//! `--help` shows the whole interface, and they fail loudly instead of pretending to work.

use super::CommandError;

/// The error for `meshd COMMAND` when COMMAND is not implemented yet.
pub fn not_implemented(command: &'static str) -> CommandError {
    CommandError::NotImplemented { command }
}
