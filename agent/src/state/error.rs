//! Typed errors of the state directory. Every variant names the file or directory concerned,
//! so the binary can print it as is and the person knows where to look.

use std::io;
use std::path::PathBuf;

/// Something went wrong reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file or directory could not be read (permissions, I/O error, ...).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },

    /// A file the command needs does not exist yet.
    #[error("{} does not exist; {hint}", path.display())]
    Missing { path: PathBuf, hint: &'static str },

    /// The file exists but its content cannot be understood. It is left untouched.
    #[error("{} is corrupt: {reason} (the file was left untouched)", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The file was written by a different (newer?) meshd with a format we do not know.
    #[error(
        "{} has format version {found}, but this meshd understands only version {expected}",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        expected: u32,
    },

    /// Refusing to replace a file that holds keys or identity (second `init`, ...).
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },

    /// A private file or directory can be read by other users.
    #[error(
        "{} has mode {mode:04o}, which lets other users read it; it must not be accessible by group or others (chmod {wanted:o} {})",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        path: PathBuf,
        mode: u32,
        wanted: u32,
    },

    /// Another meshd command holds the state directory lock.
    #[error(
        "{} is locked by another meshd command that is changing this state directory; try again when it has finished",
        path.display()
    )]
    Locked { path: PathBuf },
}
