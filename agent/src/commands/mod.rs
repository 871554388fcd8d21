//! One module per `meshd` subcommand. Each takes its parsed arguments and a [`Context`]
//! (the `--config` and `--state-dir` every command honours) and returns a typed
//! [`CommandError`]; `main` turns that into a message for people and an exit code.

mod error;
mod not_implemented;
mod pubkey;

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{Cli, ClientCommand, Command};
use crate::state::StateDir;

pub use error::CommandError;

/// What every command may use: the global options.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--config`.
    pub config_path: PathBuf,
    /// `--state-dir`.
    pub state: StateDir,
}

impl Context {
    /// The context given by the global options of `cli`.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            config_path: cli.config.clone(),
            state: StateDir::new(cli.state_dir.clone()),
        }
    }
}

/// Where a command writes: `out` is the command's result (what scripts capture, e.g. the
/// token of `meshd invite`), `note` is for people (stderr).
#[derive(Debug)]
pub struct Output<O: Write, N: Write> {
    pub out: O,
    pub note: N,
}

/// Runs the command `cli` asks for.
pub fn execute<O: Write, N: Write>(
    cli: Cli,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let context = Context::from_cli(&cli);
    match cli.command {
        Command::Pubkey => pubkey::pubkey(&context, output),
        Command::Init(_) | Command::Invite(_) | Command::Run => {
            Err(not_implemented::not_implemented("this command"))
        }
        Command::Join(_) => Err(not_implemented::not_implemented("join")),
        Command::Status(_) => Err(not_implemented::not_implemented("status")),
        Command::Peers(_) => Err(not_implemented::not_implemented("peers")),
        Command::Routes(_) => Err(not_implemented::not_implemented("routes")),
        Command::Client(ClientCommand::Add(_)) => {
            Err(not_implemented::not_implemented("client add"))
        }
        Command::Revoke(_) => Err(not_implemented::not_implemented("revoke")),
    }
}
