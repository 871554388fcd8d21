//! `meshd generate-docs --out DIR` (hidden): the man pages and shell completions of the
//! Debian package, generated from the same clap definition the binary parses with, so they
//! cannot drift from the real command line (scripts/build-package.sh runs it).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use super::{CommandError, Output};
use crate::cli::{Cli, GenerateDocsArgs};

/// The shells the package ships completions for, and the file names their completion
/// loaders look for (bash-completion, zsh's `$fpath`, fish's `vendor_completions.d`).
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "meshd"),
    (Shell::Zsh, "_meshd"),
    (Shell::Fish, "meshd.fish"),
];

/// Writes `DIR/man/meshd.1`, one `meshd-SUBCOMMAND.1` per subcommand, and
/// `DIR/completions/` for bash, zsh and fish; prints what it wrote.
pub fn generate_docs<O: Write, N: Write>(
    args: &GenerateDocsArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
    }
    let command = Cli::command();
    clap_mangen::generate_to(command.clone(), &man).map_err(|source| write_error(&man, source))?;
    let mut written = list_files(&man)?;
    for (shell, file_name) in SHELLS {
        let path = completions.join(file_name);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "meshd", &mut text);
        std::fs::write(&path, text).map_err(|source| write_error(&path, source))?;
        written.push(path);
    }
    for path in written {
        writeln!(output.out, "{}", path.display()).map_err(CommandError::Output)?;
    }
    Ok(())
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>, CommandError> {
    let entries = std::fs::read_dir(dir).map_err(|source| write_error(dir, source))?;
    let mut files = Vec::new();
    for entry in entries {
        files.push(entry.map_err(|source| write_error(dir, source))?.path());
    }
    files.sort();
    Ok(files)
}

fn write_error(path: &Path, source: std::io::Error) -> CommandError {
    CommandError::State(crate::state::StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}
