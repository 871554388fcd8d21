//! The `meshd` binary: parses the command line, runs the command, and turns a failure into a
//! message for people (`meshd: error: ...`) and an exit code (1; 2 for usage errors).

use std::io;
use std::process::ExitCode;

use clap::Parser;
use meshd::cli::Cli;
use meshd::commands::{self, Output};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2, `--help`/`--version` with 0.
    let cli = Cli::parse();
    let mut output = Output {
        out: io::stdout().lock(),
        note: io::stderr(),
    };
    let result = commands::execute(cli, &mut output)
        .and_then(|()| io::Write::flush(&mut output.out).map_err(commands::CommandError::Output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshd: error: {err}");
            ExitCode::FAILURE
        }
    }
}
