//! Versioned JSON files: `{"version": 1, ...fields}`.
//!
//! The version is checked before anything else is interpreted, so a file written by a newer
//! meshd is reported as such instead of as "missing field". Reading never repairs or replaces
//! a file: a problem is an error that names it.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::atomic::{Overwrite, write_atomic};
use super::error::StateError;
use super::keys::missing_or_read;

/// Name of the field that carries the format version.
const VERSION_FIELD: &str = "version";

/// Envelope used when writing: the version first, then the record's own fields.
#[derive(Serialize)]
struct Versioned<'a, T> {
    version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Reads a versioned JSON record. `hint` tells the person what to do if the file is missing.
pub fn read_json<T: DeserializeOwned>(
    path: &Path,
    expected_version: u32,
    hint: &'static str,
) -> Result<T, StateError> {
    let bytes = fs::read(path).map_err(|source| missing_or_read(path, source, hint))?;
    decode(path, &bytes, expected_version)
}

/// Interprets the bytes of a versioned JSON record read from `path`.
pub fn decode<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    expected_version: u32,
) -> Result<T, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| corrupt(format!("not valid JSON: {err}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| corrupt("expected a JSON object".to_owned()))?;
    let version = object
        .remove(VERSION_FIELD)
        .ok_or_else(|| corrupt(format!("no \"{VERSION_FIELD}\" field")))?;
    let version = version
        .as_u64()
        .ok_or_else(|| corrupt(format!("\"{VERSION_FIELD}\" is not a number: {version}")))?;
    if version != u64::from(expected_version) {
        return Err(StateError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            expected: expected_version,
        });
    }
    serde_json::from_value(value).map_err(|err| corrupt(err.to_string()))
}

/// Writes a versioned JSON record atomically with permission bits `mode`.
pub fn write_json<T: Serialize>(
    path: &Path,
    version: u32,
    record: &T,
    mode: u32,
    overwrite: Overwrite,
) -> Result<(), StateError> {
    let mut text = serde_json::to_string_pretty(&Versioned {
        version,
        body: record,
    })
    .map_err(|err| StateError::Write {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, err),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes(), mode, overwrite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::atomic::PRIVATE_FILE_MODE;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn round_trip_puts_the_version_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample.json");
        let sample = Sample {
            name: "alpha".into(),
            count: 3,
        };
        write_json(&path, 1, &sample, PRIVATE_FILE_MODE, Overwrite::Replace).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"version\": 1,"), "{text}");
        let back: Sample = read_json(&path, 1, "hint").unwrap();
        assert_eq!(back, sample);
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let path = Path::new("/x/sample.json");
        let err = decode::<Sample>(path, br#"{"version":2,"name":"a","count":1}"#, 1).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::UnsupportedVersion {
                    found: 2,
                    expected: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn problems_name_the_file() {
        let path = Path::new("/x/sample.json");
        for bad in [
            &b""[..],
            b"[]",
            b"{\"name\":\"a\",\"count\":1}",
            b"{\"version\":\"1\"}",
            b"{\"version\":1,\"name\":\"a\"}",
            b"{\"version\":1,\"name\":\"a\",\"count\":1,\"extra\":0}",
        ] {
            let err = decode::<Sample>(path, bad, 1).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("/x/sample.json"), "{err}");
        }
    }

    #[test]
    fn missing_file_gives_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            read_json::<Sample>(&dir.path().join("nope.json"), 1, "run meshd init").unwrap_err();
        assert!(err.to_string().contains("run meshd init"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(Path::new("f.json"), &bytes, 1);
        }
    }
}
