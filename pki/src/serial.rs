//! Certificate serial numbers.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

use crate::error::PkiError;

/// Bytes of randomness in a serial we issue (RFC 5280 allows up to 20 octets; CA/B forum asks
/// for at least 64 random bits).
const SERIAL_LEN: usize = 16;

/// A certificate serial number: the unsigned big-endian magnitude, without leading zero octets.
///
/// Kept normalised so that a serial read back from a certificate or CRL (where DER may add a
/// leading `00` to keep the INTEGER positive) compares equal to the one we issued.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SerialNumber(Vec<u8>);

impl SerialNumber {
    /// Wraps big-endian bytes, dropping leading zero octets (an all-zero input becomes `0`).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let mut v = bytes[first..].to_vec();
        if v.is_empty() {
            v.push(0);
        }
        SerialNumber(v)
    }

    /// A fresh random positive serial.
    pub(crate) fn random(rng: &SystemRandom) -> Result<Self, PkiError> {
        let mut bytes = [0u8; SERIAL_LEN];
        rng.fill(&mut bytes).map_err(|_| PkiError::Random)?;
        // Top bit clear keeps the DER INTEGER positive without a padding octet; bit 6 set keeps
        // the first octet non-zero, so the encoded length is always exactly SERIAL_LEN.
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(SerialNumber(bytes.to_vec()))
    }

    /// The big-endian magnitude.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, the form used in logs and state files.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({})", self.to_hex())
    }
}

/// A serial number text that is not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("serial number {0:?} is not a non-empty string of hex digits")]
pub struct SerialParseError(String);

impl FromStr for SerialNumber {
    type Err = SerialParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        // Accept the colon-separated form `openssl x509 -serial`-style tools print, too.
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        match hex::decode(&padded) {
            Ok(bytes) if !bytes.is_empty() => Ok(SerialNumber::from_bytes(&bytes)),
            _ => Err(SerialParseError(s.to_owned())),
        }
    }
}

impl Serialize for SerialNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SerialNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_do_not_matter() {
        assert_eq!(
            SerialNumber::from_bytes(&[0, 0, 1, 2]),
            SerialNumber::from_bytes(&[1, 2])
        );
        assert_eq!(SerialNumber::from_bytes(&[0, 0]).as_bytes(), &[0]);
    }

    #[test]
    fn random_serials_are_positive_and_full_length() {
        let rng = SystemRandom::new();
        let a = SerialNumber::random(&rng).unwrap();
        let b = SerialNumber::random(&rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), SERIAL_LEN);
        assert_eq!(a.as_bytes()[0] & 0xc0, 0x40);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let s = SerialNumber::from_bytes(&[0x4a, 0x01]);
        assert_eq!(s.to_string(), "4a01");
        assert_eq!("4a01".parse::<SerialNumber>().unwrap(), s);
        assert_eq!("4a:01".parse::<SerialNumber>().unwrap(), s);
        assert_eq!(
            "a01".parse::<SerialNumber>().unwrap().as_bytes(),
            &[0x0a, 0x01]
        );
        assert!("".parse::<SerialNumber>().is_err());
        assert!("xyz".parse::<SerialNumber>().is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"4a01\"");
        assert_eq!(serde_json::from_str::<SerialNumber>(&json).unwrap(), s);
    }
}
