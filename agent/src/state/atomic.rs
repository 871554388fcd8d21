//! Atomic file writes: a reader (or a crash) sees either the old file or the new one, never a
//! half-written file, and a private file is never visible with a looser mode than intended.
//!
//! The recipe: create a temporary file in the same directory with its final mode (so it is
//! never world-readable, not even for an instant), write, fsync it, move it into place, fsync
//! the directory so the rename itself survives a power cut.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StateError;

/// Mode of private files (keys, CA database).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of files that hold nothing secret (certificates, node record).
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of every directory meshd creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it atomically (records that are updated over time).
    Replace,
    /// Fail with [`StateError::AlreadyExists`] (keys, CA: losing them is not recoverable).
    Refuse,
}

/// Writes `contents` to `path` atomically with permission bits `mode`.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> Result<(), StateError> {
    let write_err = |source: io::Error| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent_dir(path);
    let (temp_path, mut temp) = create_temp_beside(path, mode).map_err(write_err)?;

    let result = (|| {
        temp.write_all(contents)?;
        temp.sync_all()?;
        drop(temp);
        match overwrite {
            Overwrite::Replace => fs::rename(&temp_path, path),
            // link(2) fails if the destination exists, so "create only if absent" stays
            // atomic even if two processes race; the temporary name is removed afterwards.
            Overwrite::Refuse => fs::hard_link(&temp_path, path).and_then(|()| {
                fs::remove_file(&temp_path)?;
                Ok(())
            }),
        }
    })();

    if let Err(source) = result {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&temp_path);
        if source.kind() == io::ErrorKind::AlreadyExists {
            return Err(StateError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        return Err(write_err(source));
    }
    sync_dir(dir).map_err(|source| StateError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Removes the file at `path` and makes the removal durable (fsync of its directory). A file
/// that is already gone is not an error.
pub fn remove_durably(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StateError::Write {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let dir = parent_dir(path);
    sync_dir(dir).map_err(|source| StateError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates `path` (and missing parents) with mode 0700. An existing directory is accepted only
/// if group and others have no access to it, because it holds private keys.
pub fn ensure_private_dir(path: &Path) -> Result<(), StateError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            check_private(path, meta.permissions().mode(), PRIVATE_DIR_MODE)
        }
        Ok(_) => Err(StateError::Write {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE_DIR_MODE)
                .create(path)
                .map_err(|source| StateError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            sync_dir(parent_dir(path)).map_err(|source| StateError::Write {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Fails if `mode` gives group or others any access; `wanted` is the mode suggested to fix it.
pub fn check_private(path: &Path, mode: u32, wanted: u32) -> Result<(), StateError> {
    let mode = mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StateError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            wanted,
        });
    }
    Ok(())
}

/// The directory a file lives in; a bare file name lives in the current directory.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates a new, uniquely named file next to `path` with permission bits `mode` from the start.
fn create_temp_beside(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy();
    // A few attempts cover a leftover temp file from a crash with the same random suffix.
    let mut last_err = None;
    for _ in 0..8 {
        let suffix: u64 = rand::random();
        let temp_path = dir.join(format!(".{name}.tmp-{}-{suffix:016x}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_err = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

/// Makes a rename or a new directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replace_writes_with_the_requested_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", PRIVATE_FILE_MODE, Overwrite::Replace).unwrap();
        write_atomic(&path, b"two", PRIVATE_FILE_MODE, Overwrite::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o600);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "temporary file left behind");
    }

    #[test]
    fn refuse_keeps_the_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic(&path, b"first", PRIVATE_FILE_MODE, Overwrite::Refuse).unwrap();
        let err = write_atomic(&path, b"second", PRIVATE_FILE_MODE, Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, StateError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dir_is_created_0700_and_a_loose_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode_of(&nested), 0o700);
        ensure_private_dir(&nested).unwrap();

        fs::set_permissions(&nested, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&nested).unwrap_err();
        assert!(err.to_string().contains("0755"), "{err}");
    }

    #[test]
    fn write_into_missing_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/file.json");
        let err = write_atomic(&path, b"x", PUBLIC_FILE_MODE, Overwrite::Replace).unwrap_err();
        assert!(err.to_string().contains("missing/file.json"), "{err}");
    }
}
