//! WireGuard public keys as they appear in configs: standard base64 of 32 bytes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::serde_str::serde_via_str;

/// A WireGuard (Curve25519) public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireGuardKey(pub [u8; 32]);

/// Why a string is not a WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not valid base64 (a WireGuard key looks like the output of `wg pubkey`)")]
    NotBase64(String),
    #[error("key decodes to {0} bytes; a WireGuard key is 32 bytes (44 base64 characters)")]
    WrongLength(usize),
}

impl WireGuardKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for WireGuardKey {
    fn from(bytes: [u8; 32]) -> Self {
        WireGuardKey(bytes)
    }
}

impl FromStr for WireGuardKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::NotBase64(s.to_owned()))?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(WireGuardKey(array))
    }
}

impl fmt::Display for WireGuardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

// Public keys are not secret; showing them in debug output helps when comparing peers.
impl fmt::Debug for WireGuardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireGuardKey({self})")
    }
}

serde_via_str!(WireGuardKey, "a WireGuard public key (base64 of 32 bytes)");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let key = WireGuardKey([7; 32]);
        let text = key.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<WireGuardKey>().unwrap(), key);
        assert_eq!(
            "AAAA".parse::<WireGuardKey>().unwrap_err(),
            KeyError::WrongLength(3)
        );
        assert!(matches!(
            "not base64!".parse::<WireGuardKey>().unwrap_err(),
            KeyError::NotBase64(_)
        ));
    }
}
