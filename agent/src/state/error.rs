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

    /// The file is missing or does not belong with the rest of the state directory (checked
    /// as a whole when the daemon starts); `remedy` says what the person can do.
    /// `problem` reads after the path ("does not exist", "is not the key of ...").
    #[error("{} {problem}; {remedy}", path.display())]
    Damaged {
        path: PathBuf,
        problem: String,
        remedy: Remedy,
    },

    /// Another meshd command holds the state directory lock.
    #[error(
        "{} is locked by another meshd command that is changing this state directory; try again when it has finished",
        path.display()
    )]
    Locked { path: PathBuf },
}

/// What a person can do about a damaged state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// A node that is not the CA holder can be admitted again if there is no backup.
    RestoreOrRejoin,
    /// The CA holder cannot re-join its own mesh: only a backup brings it back.
    RestoreHolder,
    /// A cache: deleting it is safe, the node learns it again from its peers.
    DeleteCache,
}

impl std::fmt::Display for Remedy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Remedy::RestoreOrRejoin => {
                "restore it from a backup of this state directory; without one, the node must join \
                 again: move the state directory away and run `meshd join` with a new token (on the \
                 CA holder: `meshd revoke NAME`, `meshd ca free-name NAME`, `meshd invite NAME`)"
            }
            Remedy::RestoreHolder => {
                "restore it from a backup of this state directory, or the CA files with `meshd ca \
                 restore FILE` from a CA backup (this node holds the mesh CA and cannot re-join; \
                 without its CA files no node can join or renew its certificate)"
            }
            Remedy::DeleteCache => {
                "it is a cache: delete it, and meshd learns it again from its peers"
            }
        })
    }
}
