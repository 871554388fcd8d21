//! Where `meshd run` logs and how much.
//!
//! Under systemd, stderr is a stream into the journal and systemd says so in
//! `JOURNAL_STREAM` (`DEVICE:INODE` of that stream, systemd.exec(5)). Then meshd logs to the
//! journal directly, so each line keeps its priority (`journalctl -p warning` works) and its
//! fields (`PEER=`, `ERROR=`, ...). Anywhere else (a terminal, a test harness, a container)
//! lines go to stderr as text. If the journal socket cannot be opened, stderr it is, with a
//! warning.
//!
//! How much: `RUST_LOG` if set (for developers: any tracing filter), else `meshd run
//! --log-level`, else `info`. At `info` meshd logs one line per event an operator cares about
//! (start, stop, a peer or session up or down, a refused join or route), never per packet.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level when neither `RUST_LOG` nor `--log-level` says otherwise.
pub const DEFAULT_LEVEL: &str = "info";

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The systemd journal, with priorities and fields.
    Journal,
    /// Text lines on stderr.
    Stderr,
}

/// Installs the daemon's subscriber; keeps one that is already installed (tests, an
/// embedding program). `level` is `--log-level`, one of [`LEVELS`].
pub fn init(level: Option<&str>) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    match destination() {
        Destination::Journal => match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal.with_syslog_identifier("meshd".to_owned());
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .try_init();
            }
            Err(error) => {
                init_stderr(filter);
                tracing::warn!(%error, "cannot open the journal socket; logging to stderr");
            }
        },
        Destination::Stderr => init_stderr(filter),
    }
}

fn init_stderr(filter: EnvFilter) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `RUST_LOG` wins over `--log-level`, which wins over [`DEFAULT_LEVEL`]. A `RUST_LOG` that
/// is not a valid filter is ignored (the level below it applies), as tracing does.
fn filter(rust_log: Option<&str>, level: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| EnvFilter::try_new(text).ok())
        .or_else(|| level.and_then(|text| EnvFilter::try_new(text).ok()))
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_LEVEL))
}

/// The levels `meshd run --log-level` takes (finer filters go in `RUST_LOG`).
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The journal when our stderr is the stream systemd connected to it, stderr otherwise.
pub fn destination() -> Destination {
    let Ok(journal_stream) = std::env::var("JOURNAL_STREAM") else {
        return Destination::Stderr;
    };
    match stderr_identity() {
        Some((device, inode)) if is_journal_stream(&journal_stream, device, inode) => {
            Destination::Journal
        }
        _ => Destination::Stderr,
    }
}

/// Device and inode of the file behind fd 2.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, both decimal) names this device and inode. A
/// child of a service inherits the variable with another stderr, hence the comparison.
pub fn is_journal_stream(journal_stream: &str, device: u64, inode: u64) -> bool {
    let Some((dev, ino)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    dev.parse() == Ok(device) && ino.parse() == Ok(inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(is_journal_stream("8:12345", 8, 12345));
        assert!(is_journal_stream("8:12345\n", 8, 12345));
        assert!(!is_journal_stream("8:12346", 8, 12345));
        assert!(!is_journal_stream("9:12345", 8, 12345));
        assert!(!is_journal_stream("", 8, 12345));
        assert!(!is_journal_stream("8", 8, 12345));
        assert!(!is_journal_stream("x:y", 8, 12345));
    }

    #[test]
    fn rust_log_wins_over_the_level_flag_and_the_default() {
        assert_eq!(filter(Some("trace"), Some("warn")).to_string(), "trace");
        assert_eq!(filter(None, Some("warn")).to_string(), "warn");
        assert_eq!(filter(Some(""), Some("warn")).to_string(), "warn");
        assert_eq!(filter(None, None).to_string(), "info");
    }

    #[test]
    fn every_level_is_a_valid_filter() {
        for level in LEVELS {
            assert_eq!(filter(None, Some(level)).to_string(), level);
        }
    }
}
