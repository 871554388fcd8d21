//! Small shared encodings: IP prefixes as bytes, and serde helpers for fixed-size binary fields.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Encodes a prefix as its address octets followed by the prefix length: 5 bytes for IPv4,
/// 17 for IPv6. Used by the certificate extension and by invitation tokens.
pub(crate) fn prefix_to_bytes(prefix: &IpNet) -> Vec<u8> {
    let mut out = match prefix.addr() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    out.push(prefix.prefix_len());
    out
}

/// Why prefix bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixBytesError {
    #[error("an IP prefix must be 5 (IPv4) or 17 (IPv6) bytes, found {0}")]
    BadLength(usize),
    #[error("prefix length /{0} is too long for the address family")]
    BadPrefixLen(u8),
}

/// Decodes what [`prefix_to_bytes`] wrote.
pub(crate) fn prefix_from_bytes(bytes: &[u8]) -> Result<IpNet, PrefixBytesError> {
    let (addr, len) = match bytes.len() {
        5 => {
            let octets: [u8; 4] = bytes[..4].try_into().expect("length checked");
            (IpAddr::V4(Ipv4Addr::from(octets)), bytes[4])
        }
        17 => {
            let octets: [u8; 16] = bytes[..16].try_into().expect("length checked");
            (IpAddr::V6(Ipv6Addr::from(octets)), bytes[16])
        }
        n => return Err(PrefixBytesError::BadLength(n)),
    };
    IpNet::new(addr, len).map_err(|_| PrefixBytesError::BadPrefixLen(len))
}

/// Serde for a 32-byte key as standard base64 (the `wg genkey`/`wg pubkey` format).
pub(crate) mod base64_key {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn encode(key: &[u8; 32]) -> String {
        STANDARD.encode(key)
    }

    pub(crate) fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(key))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| D::Error::custom(format!("key is not base64: {e}")))?;
        bytes.try_into().map_err(|b: Vec<u8>| {
            D::Error::custom(format!("key must be 32 bytes, found {}", b.len()))
        })
    }
}

/// Serde for a 32-byte hash as lowercase hex.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out)
            .map_err(|e| D::Error::custom(format!("expected 64 hex digits: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip() {
        for text in [
            "10.1.0.0/16",
            "0.0.0.0/0",
            "fd12:3456:789a::/48",
            "2001:db8::1/128",
        ] {
            let p: IpNet = text.parse().unwrap();
            let bytes = prefix_to_bytes(&p);
            assert_eq!(prefix_from_bytes(&bytes), Ok(p));
        }
    }

    #[test]
    fn bad_prefix_bytes_are_rejected() {
        assert_eq!(
            prefix_from_bytes(&[10, 0, 0]),
            Err(PrefixBytesError::BadLength(3))
        );
        assert_eq!(
            prefix_from_bytes(&[10, 0, 0, 0, 33]),
            Err(PrefixBytesError::BadPrefixLen(33))
        );
        let mut v6 = vec![0u8; 17];
        v6[16] = 129;
        assert_eq!(
            prefix_from_bytes(&v6),
            Err(PrefixBytesError::BadPrefixLen(129))
        );
    }
}
