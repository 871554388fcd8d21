//! Running a command and turning failure into a message that shows what ran and what it said.

use std::process::{Command, Output};

/// A command that could not be started or exited unsuccessfully.
#[derive(Debug)]
pub struct CommandError {
    /// The command line, for the message.
    pub command: String,
    /// What happened.
    pub detail: String,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.detail)
    }
}

impl std::error::Error for CommandError {}

/// Runs `program args...` to completion and returns its output if it exited with status 0.
pub fn run_checked(program: &str, args: &[&str]) -> Result<Output, CommandError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| CommandError {
            command: command.clone(),
            detail: format!("cannot start: {error}"),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError {
            command,
            detail: format!(
                "{}; stdout: {:?}; stderr: {:?}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}
