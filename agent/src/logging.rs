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
//! --log-level`, else `[log] level` in meshd.toml (default `info`); a reload (SIGHUP) can
//! change the last one while meshd runs. At `info` meshd logs one line per event an operator cares about
//! (start, stop, a peer or session up or down, a refused join or route), never per packet.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log filter of the running process (`[log] level`); `Err` says why not.
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

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
/// embedding program). `level` is `--log-level` (one of [`LEVELS`]), `configured` is
/// `[log] level`. Returns how to change `[log] level` later (a reload).
pub fn init(level: Option<&str>, configured: &str) -> LogFilterSetter {
    let rust_log = std::env::var("RUST_LOG").ok();
    let overridden_by = if rust_log.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        Some("RUST_LOG is set and takes precedence")
    } else if level.is_some() {
        Some("meshd run --log-level takes precedence")
    } else {
        None
    };
    let (filter, handle) = reload::Layer::new(filter(rust_log.as_deref(), level, configured));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match destination() {
        Destination::Journal => match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal.with_syslog_identifier("meshd".to_owned());
                registry.with(journal).try_init().is_ok()
            }
            Err(error) => {
                let installed = init_stderr(registry);
                tracing::warn!(%error, "cannot open the journal socket; logging to stderr");
                installed
            }
        },
        Destination::Stderr => init_stderr(registry),
    };
    Box::new(move |level: &str| set_filter(&handle, installed, overridden_by, level))
}

fn init_stderr<S>(subscriber: S) -> bool
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    subscriber.with(stderr).try_init().is_ok()
}

/// Applies a new `[log] level` unless something of higher precedence set the filter.
fn set_filter(
    handle: &reload::Handle<EnvFilter, Registry>,
    installed: bool,
    overridden_by: Option<&str>,
    level: &str,
) -> Result<(), String> {
    if let Some(reason) = overridden_by {
        return Err(reason.to_owned());
    }
    if !installed {
        return Err("logging was set up before meshd started".to_owned());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    handle.reload(filter).map_err(|e| e.to_string())
}

/// `RUST_LOG` wins over `--log-level`, which wins over `[log] level`, then [`DEFAULT_LEVEL`].
/// A `RUST_LOG` that is not a valid filter is ignored (the level below it applies), as
/// tracing does.
fn filter(rust_log: Option<&str>, level: Option<&str>, configured: &str) -> EnvFilter {
    rust_log
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| EnvFilter::try_new(text).ok())
        .or_else(|| level.and_then(|text| EnvFilter::try_new(text).ok()))
        .or_else(|| {
            Some(configured)
                .filter(|text| !text.trim().is_empty())
                .and_then(|text| EnvFilter::try_new(text).ok())
        })
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
    fn rust_log_wins_over_the_level_flag_the_config_and_the_default() {
        assert_eq!(
            filter(Some("trace"), Some("warn"), "debug").to_string(),
            "trace"
        );
        assert_eq!(filter(None, Some("warn"), "debug").to_string(), "warn");
        assert_eq!(filter(Some(""), Some("warn"), "debug").to_string(), "warn");
        assert_eq!(filter(None, None, "debug").to_string(), "debug");
        assert_eq!(
            filter(None, None, "info,meshd::bgp=debug").to_string(),
            "meshd::bgp=debug,info"
        );
        assert_eq!(filter(None, None, "").to_string(), "info");
    }

    #[test]
    fn every_level_is_a_valid_filter() {
        for level in LEVELS {
            assert_eq!(filter(None, Some(level), "info").to_string(), level);
        }
    }
}
