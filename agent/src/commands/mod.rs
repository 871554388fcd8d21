//! One module per `meshd` subcommand. Each takes its parsed arguments and a [`Context`]
//! (the `--config` and `--state-dir` every command honours) and returns a typed
//! [`CommandError`]; `main` turns that into a message for people and an exit code.

mod ca;
mod ca_backup;
mod ca_takeover;
mod client;
mod config_file;
mod error;
mod generate_docs;
mod init;
mod invitations;
mod invite;
mod join;
mod own_config;
mod peers;
mod pubkey;
mod rekey;
mod renew;
mod revoke;
mod router;
mod routes;
mod status;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::DEFAULT_CONFIG_PATH;
use crate::state::DEFAULT_STATE_DIR;

use crate::cli::{Cli, Command};
use crate::state::StateDir;

pub use error::CommandError;

/// What every command may use: the global options.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--config`.
    pub config_path: PathBuf,
    /// `--state-dir`.
    pub state: StateDir,
    /// The daemon's control socket: `--socket`, or the default for `--state-dir`.
    pub socket_path: PathBuf,
}

impl Context {
    /// The context given by the global options of `cli`.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            config_path: cli.config.clone(),
            state: StateDir::new(cli.state_dir.clone()),
            socket_path: crate::api::socket_path(cli.socket.as_deref(), &cli.state_dir),
        }
    }

    /// `meshd` with the global options that differ from their defaults, for the "next step"
    /// hints commands print, so they can be pasted as they are.
    pub fn command_prefix(&self) -> String {
        let mut prefix = "meshd".to_owned();
        if self.config_path != Path::new(DEFAULT_CONFIG_PATH) {
            prefix.push_str(" --config ");
            prefix.push_str(&shell_quote(&self.config_path.to_string_lossy()));
        }
        if self.state.root() != Path::new(DEFAULT_STATE_DIR) {
            prefix.push_str(" --state-dir ");
            prefix.push_str(&shell_quote(&self.state.root().to_string_lossy()));
        }
        prefix
    }
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// How long the mesh CA is valid: it signs every node certificate, so it outlives them by far.
pub const CA_VALIDITY: time::Duration = time::Duration::days(3650);

/// The CA database, read again under the state directory lock (held until the returned lock
/// drops) after a first read that fails early, with the "not the CA holder" hint.
fn locked_ca_db(
    state: &StateDir,
) -> Result<(crate::state::StateLock, crate::state::CaDatabase), CommandError> {
    refuse_standby(&state.read_ca_db()?)?;
    let lock = state.lock()?;
    let db = state.read_ca_db()?;
    refuse_standby(&db)?;
    Ok((lock, db))
}

/// A CA command that changes the registry runs on the active holder only.
fn refuse_standby(db: &crate::state::CaDatabase) -> Result<(), CommandError> {
    match &db.standby {
        Some(standby) => Err(CommandError::invalid(
            "the CA",
            format!(
                "{}: run this command there (or `meshd ca take-over` here if it is lost)",
                standby.refusal()
            ),
        )),
        None => Ok(()),
    }
}

/// Wraps a pki error with what the command was doing.
fn pki_error(context: &'static str) -> impl Fn(pki::PkiError) -> CommandError {
    move |source| CommandError::Pki {
        context: context.to_owned(),
        source,
    }
}

/// Where a command writes: `out` is the command's result (what scripts capture, e.g. the
/// token of `meshd invite`), `note` is for people (stderr).
#[derive(Debug)]
pub struct Output<O: Write, N: Write> {
    pub out: O,
    pub note: N,
}

/// Why [`run_captured`] failed: the arguments did not parse, or the command failed.
#[derive(Debug, thiserror::Error)]
pub enum CapturedError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Runs `meshd --config CONFIG --state-dir STATE ARGS...` in this process and returns what it
/// printed as its result (stdout); notes for people are dropped. For tests and simulations that
/// drive several nodes' commands without spawning the binary.
pub fn run_captured(config: &Path, state: &Path, args: &[&str]) -> Result<String, CapturedError> {
    use clap::Parser;
    let mut argv = vec![
        "meshd".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--state-dir".to_owned(),
        state.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let mut output = Output {
        out: Vec::new(),
        note: std::io::sink(),
    };
    execute(Cli::try_parse_from(argv)?, &mut output)?;
    Ok(String::from_utf8_lossy(&output.out).into_owned())
}

/// Runs the command `cli` asks for.
pub fn execute<O: Write, N: Write>(
    cli: Cli,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let context = Context::from_cli(&cli);
    match cli.command {
        Command::Pubkey => pubkey::pubkey(&context, output),
        Command::Init(args) => init::init(&context, &args, output),
        Command::Invite(args) => invite::invite(&context, &args, output),
        Command::Run(args) => crate::daemon::run(
            &context.config_path,
            context.state.root(),
            &context.socket_path,
            args.log_level.as_deref(),
        )
        .map_err(CommandError::Daemon),
        Command::Join(args) => join::join_mesh(&context, &args, output),
        Command::Status(args) => status::status(&context, &args, output),
        Command::Peers(args) => peers::peers(&context, &args, output),
        Command::Routes(args) => routes::routes(&context, &args, output),
        Command::Client(command) => client::client(&context, &command, output),
        Command::Router(command) => router::router(&context, &command, output),
        Command::Export(args) => router::export(&context, &args, output),
        Command::Revoke(args) => revoke::revoke(&context, &args, output),
        Command::Renew => renew::renew(&context, output),
        Command::Rekey(args) => rekey::rekey(&context, &args, output),
        Command::Ca(command) => ca::ca(&context, &command, output),
        Command::GenerateDocs(args) => generate_docs::generate_docs(&args, output),
    }
}
