//! Private key files: the WireGuard key (base64, the `wg genkey` format) and PEM keys.
//!
//! Keys are created 0600 from the first byte and never overwritten. When read back, a key file
//! that other users can read is refused, like ssh does, because the key must be considered
//! leaked and the person should know.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use boringtun::x25519::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::atomic::{Overwrite, PRIVATE_FILE_MODE, check_private, write_atomic};
use super::error::StateError;

/// Length of an X25519 key in bytes.
const KEY_LEN: usize = 32;

/// Generates a new WireGuard private key from the operating system's RNG.
pub fn generate_wireguard_key() -> StaticSecret {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rand::fill(&mut bytes[..]);
    // Clamp like `wg genkey` does, so the stored key is byte-for-byte what WireGuard tools
    // produce and accept (x25519 clamps again when it uses the key; clamping is idempotent).
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    StaticSecret::from(*bytes)
}

/// The base64 text of a WireGuard key (private or public), as `wg` prints it.
pub fn encode_key(bytes: &[u8; KEY_LEN]) -> String {
    BASE64.encode(bytes)
}

/// The base64 public key of a WireGuard private key (what `wg pubkey` prints).
pub fn wireguard_public_key_base64(secret: &StaticSecret) -> String {
    encode_key(PublicKey::from(secret).as_bytes())
}

/// Parses a base64 WireGuard key; `None` if it is not 32 bytes of base64.
pub fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let bytes = Zeroizing::new(BASE64.decode(text.trim()).ok()?);
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok()
}

/// Writes a new WireGuard private key file; refuses to replace an existing one.
pub fn write_wireguard_key(path: &Path, secret: &StaticSecret) -> Result<(), StateError> {
    let text = Zeroizing::new(format!("{}\n", encode_key(secret.as_bytes())));
    write_atomic(path, text.as_bytes(), PRIVATE_FILE_MODE, Overwrite::Refuse)
}

/// Reads a WireGuard private key file written by [`write_wireguard_key`] or `wg genkey`.
pub fn read_wireguard_key(path: &Path, hint: &'static str) -> Result<StaticSecret, StateError> {
    let text = read_private_text(path, hint)?;
    let bytes = decode_key(&text).ok_or_else(|| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: "expected a WireGuard key: 32 bytes in base64 (as `wg genkey` prints)".to_owned(),
    })?;
    Ok(StaticSecret::from(bytes))
}

/// Writes a new PEM private key file; refuses to replace an existing one.
pub fn write_pem_key(path: &Path, pem: &str) -> Result<(), StateError> {
    write_atomic(path, pem.as_bytes(), PRIVATE_FILE_MODE, Overwrite::Refuse)
}

/// Reads a PEM private key file, checking that only its owner can read it.
pub fn read_pem_key(path: &Path, hint: &'static str) -> Result<Zeroizing<String>, StateError> {
    let text = read_private_text(path, hint)?;
    if !text.contains("-----BEGIN ") {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: "expected a PEM private key (-----BEGIN ...)".to_owned(),
        });
    }
    Ok(text)
}

/// Reads a private file after checking its permissions.
pub(super) fn read_private_text(
    path: &Path,
    hint: &'static str,
) -> Result<Zeroizing<String>, StateError> {
    let meta = fs::metadata(path).map_err(|source| missing_or_read(path, source, hint))?;
    check_private(path, meta.permissions().mode(), PRIVATE_FILE_MODE)?;
    let bytes = fs::read(path).map_err(|source| missing_or_read(path, source, hint))?;
    String::from_utf8(bytes)
        .map(Zeroizing::new)
        .map_err(|_| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".to_owned(),
        })
}

/// Maps an I/O error on `path` to `Missing` (with the hint) or `Read`.
pub(crate) fn missing_or_read(path: &Path, source: io::Error, hint: &'static str) -> StateError {
    if source.kind() == io::ErrorKind::NotFound {
        StateError::Missing {
            path: path.to_path_buf(),
            hint,
        }
    } else {
        StateError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wireguard_key_round_trips_and_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        let secret = generate_wireguard_key();
        let bytes = secret.to_bytes();
        assert_eq!(bytes[0] & 7, 0);
        assert_eq!(bytes[31] & 0xc0, 0x40);
        write_wireguard_key(&path, &secret).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = read_wireguard_key(&path, "hint").unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert!(matches!(
            write_wireguard_key(&path, &generate_wireguard_key()),
            Err(StateError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn public_key_matches_a_known_wg_vector() {
        // Pair produced by `wg genkey | tee /dev/stderr | wg pubkey`.
        let secret =
            StaticSecret::from(decode_key("sATgP8QFxlYEKbPLtKk1mFJbmoQpLhTvh1H/jGHhvGI=").unwrap());
        assert_eq!(
            wireguard_public_key_base64(&secret),
            "C/rowuItgwgl1xQc5GJTslmDALH+mUxmMKsJ1vqhNgE="
        );
    }

    #[test]
    fn readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        write_wireguard_key(&path, &generate_wireguard_key()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_wireguard_key(&path, "hint").err().expect("must fail");
        assert!(
            matches!(err, StateError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_key_is_corrupt_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        write_atomic(
            &path,
            b"not base64!\n",
            PRIVATE_FILE_MODE,
            Overwrite::Refuse,
        )
        .unwrap();
        let err = read_wireguard_key(&path, "hint").err().expect("must fail");
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("wireguard.key"));
    }

    proptest! {
        #[test]
        fn decode_key_never_panics(text in ".{0,80}") {
            let _ = decode_key(&text);
        }
    }
}
