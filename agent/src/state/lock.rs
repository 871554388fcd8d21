//! An advisory lock on the state directory, held by commands while they change it, so two
//! meshd processes (say `meshd invite` twice at once) cannot both read the CA database, each
//! add an invitation, and have the second write lose the first one's.
//!
//! The lock is `flock(2)` on a file in the state directory: the kernel releases it when the
//! process exits, so a crash never leaves a stale lock behind (unlike a pid file).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::atomic::PRIVATE_FILE_MODE;
use super::error::StateError;

/// Holds the state directory lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    // Kept open: closing the file releases the flock.
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock at `path` without waiting; fails with [`StateError::Locked`] if another
    /// process holds it.
    pub fn try_acquire(path: &Path) -> Result<Self, StateError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .open(path)
            .map_err(|source| StateError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        // Called through the trait: std's inherent `File::try_lock` needs a newer Rust than
        // the workspace's minimum.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Self {
                _file: file,
                path: path.to_path_buf(),
            }),
            Err(fs4::TryLockError::WouldBlock) => Err(StateError::Locked {
                path: path.to_path_buf(),
            }),
            Err(fs4::TryLockError::Error(source)) => Err(StateError::Write {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Takes the lock at `path`, waiting up to `patience` for another command to finish
    /// (commands hold it for milliseconds; a daemon never holds it for long either).
    pub fn acquire(path: &Path, patience: Duration) -> Result<Self, StateError> {
        // Polling keeps this simple and bounded; flock has no timed wait.
        const POLL: Duration = Duration::from_millis(20);
        let deadline = Instant::now() + patience;
        loop {
            match Self::try_acquire(path) {
                Err(StateError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                }
                result => return result,
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = StateLock::try_acquire(&path).unwrap();
        // flock locks belong to the open file description, so a second open conflicts even
        // within one process.
        let err = StateLock::try_acquire(&path).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        drop(first);
        StateLock::try_acquire(&path).unwrap();
    }

    #[test]
    fn acquire_waits_for_the_holder_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StateLock::try_acquire(&path).unwrap();
        let started = Instant::now();
        let err = StateLock::acquire(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100));

        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        StateLock::acquire(&path, Duration::from_secs(5)).unwrap();
        releaser.join().unwrap();
    }
}
