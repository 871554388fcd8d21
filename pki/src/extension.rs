//! DER encoding of the meshd node-identity extension (see `pki/EXTENSION.md` for the ASN.1).
//!
//! The decoder reads bytes that arrive from other nodes over the network, so it must turn every
//! possible input into either a valid [`NodeIdentity`] or an [`ExtensionError`], never a panic.

use ipnet::IpNet;

use crate::encoding::{PrefixBytesError, prefix_from_bytes, prefix_to_bytes};
use crate::identity::{Approvals, IdentityError, NodeIdentity, NodeRole};

/// The only version of the extension body this code writes and reads.
pub const EXTENSION_VERSION: i64 = 1;

/// Context tags of the optional approvals after the WireGuard key.
const TAG_EXIT: u64 = 0;
const TAG_ANYCAST: u64 = 1;
const TAG_FOREIGN: u64 = 2;
/// Bits of the `exit` INTEGER.
const EXIT_IPV4: u8 = 1;
const EXIT_IPV6: u8 = 2;

/// `role` ENUMERATED values.
const ROLE_CORE: i64 = 0;
const ROLE_SPOKE: i64 = 1;

/// Why an extension body does not decode to a node identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("the meshd identity extension is not valid DER of the expected structure ({0:?})")]
    Der(yasna::ASN1ErrorKind),
    #[error("the meshd identity extension has version {0}; this meshd understands version 1")]
    UnsupportedVersion(i64),
    #[error("the meshd identity extension has unknown role value {0}")]
    UnknownRole(i64),
    #[error("the meshd identity extension has a bad prefix: {0}")]
    Prefix(#[from] PrefixBytesError),
    #[error("the meshd identity extension has a {0}-byte WireGuard key; it must be 32 bytes")]
    WireguardKeyLength(usize),
    #[error(
        "the meshd identity extension has exit approval bits {0:#04x}; known are 0x01 (IPv4) and 0x02 (IPv6)"
    )]
    BadExitFlags(u8),
    #[error("the meshd identity extension has an empty anycast list; an absent list means none")]
    EmptyAnycast,
    #[error("the meshd identity extension describes an invalid node: {0}")]
    Identity(#[from] IdentityError),
}

impl From<yasna::ASN1Error> for ExtensionError {
    fn from(e: yasna::ASN1Error) -> Self {
        ExtensionError::Der(e.kind())
    }
}

/// Encodes `identity` as the extension body (the content of the extension's OCTET STRING).
pub fn encode_identity(identity: &NodeIdentity) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_i64(EXTENSION_VERSION);
            w.next().write_utf8_string(&identity.name);
            w.next().write_enum(match identity.role {
                NodeRole::Core => ROLE_CORE,
                NodeRole::Spoke => ROLE_SPOKE,
            });
            if let Some(core) = &identity.core {
                w.next().write_utf8_string(core);
            }
            write_prefixes(w.next(), &identity.prefixes);
            write_prefixes(w.next(), &identity.lan_prefixes);
            w.next().write_bytes(&identity.wireguard_key);
            // Optional, tagged, and only written when set: a certificate without approvals
            // encodes exactly as before they existed.
            let approvals = &identity.approvals;
            let exit = (u8::from(approvals.exit_ipv4) * EXIT_IPV4)
                | (u8::from(approvals.exit_ipv6) * EXIT_IPV6);
            if exit != 0 {
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(TAG_EXIT), |w| w.write_u8(exit));
            }
            if !approvals.anycast.is_empty() {
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(TAG_ANYCAST), |w| {
                        write_prefixes(w, &approvals.anycast)
                    });
            }
            if identity.foreign {
                w.next()
                    .write_tagged_implicit(yasna::Tag::context(TAG_FOREIGN), |w| w.write_null());
            }
        })
    })
}

fn write_prefixes(w: yasna::DERWriter<'_>, prefixes: &[IpNet]) {
    w.write_sequence_of(|w| {
        for prefix in prefixes {
            w.next().write_bytes(&prefix_to_bytes(prefix));
        }
    })
}

/// Decodes an extension body and checks that it describes a valid node.
pub fn decode_identity(der: &[u8]) -> Result<NodeIdentity, ExtensionError> {
    // First the structure (yasna enforces DER), then the meaning of each field.
    let raw = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_i64()?;
            if version != EXTENSION_VERSION {
                // A later version may have other fields: skip them so that the error names the
                // version, which is the real problem, rather than some field.
                while r.read_optional(|r| r.read_der())?.is_some() {}
                return Ok(Err(version));
            }
            let name = r.next().read_utf8string()?;
            let role = r.next().read_enum()?;
            let core = r.read_optional(|r| r.read_utf8string())?;
            let prefixes = r.next().collect_sequence_of(|r| r.read_bytes())?;
            let lan_prefixes = r.next().collect_sequence_of(|r| r.read_bytes())?;
            let wireguard_key = r.next().read_bytes()?;
            let exit = r.read_optional(|r| {
                r.read_tagged_implicit(yasna::Tag::context(TAG_EXIT), |r| r.read_u8())
            })?;
            let anycast = r.read_optional(|r| {
                r.read_tagged_implicit(yasna::Tag::context(TAG_ANYCAST), |r| {
                    r.collect_sequence_of(|r| r.read_bytes())
                })
            })?;
            let foreign = r.read_optional(|r| {
                r.read_tagged_implicit(yasna::Tag::context(TAG_FOREIGN), |r| r.read_null())
            })?;
            Ok(Ok(RawIdentity {
                exit,
                anycast,
                foreign: foreign.is_some(),
                name,
                role,
                core,
                prefixes,
                lan_prefixes,
                wireguard_key,
            }))
        })
    })?;
    raw.map_err(ExtensionError::UnsupportedVersion)?.interpret()
}

/// The extension body as parsed, before its fields are checked.
struct RawIdentity {
    name: String,
    role: i64,
    core: Option<String>,
    prefixes: Vec<Vec<u8>>,
    lan_prefixes: Vec<Vec<u8>>,
    wireguard_key: Vec<u8>,
    exit: Option<u8>,
    anycast: Option<Vec<Vec<u8>>>,
    foreign: bool,
}

impl RawIdentity {
    fn interpret(self) -> Result<NodeIdentity, ExtensionError> {
        let role = match self.role {
            ROLE_CORE => NodeRole::Core,
            ROLE_SPOKE => NodeRole::Spoke,
            other => return Err(ExtensionError::UnknownRole(other)),
        };
        let decode_all = |list: &[Vec<u8>]| -> Result<Vec<IpNet>, ExtensionError> {
            Ok(list
                .iter()
                .map(|b| prefix_from_bytes(b))
                .collect::<Result<_, _>>()?)
        };
        let wireguard_key: [u8; 32] = self
            .wireguard_key
            .as_slice()
            .try_into()
            .map_err(|_| ExtensionError::WireguardKeyLength(self.wireguard_key.len()))?;
        let exit = match self.exit {
            // Written only when set, so DER has no room for an explicit 0.
            Some(0) => return Err(ExtensionError::BadExitFlags(0)),
            Some(bits) if bits & !(EXIT_IPV4 | EXIT_IPV6) != 0 => {
                return Err(ExtensionError::BadExitFlags(bits));
            }
            Some(bits) => bits,
            None => 0,
        };
        let anycast = match &self.anycast {
            Some(list) if list.is_empty() => return Err(ExtensionError::EmptyAnycast),
            Some(list) => decode_all(list)?,
            None => Vec::new(),
        };
        let identity = NodeIdentity {
            approvals: Approvals {
                exit_ipv4: exit & EXIT_IPV4 != 0,
                exit_ipv6: exit & EXIT_IPV6 != 0,
                anycast,
            },
            name: self.name,
            role,
            core: self.core,
            prefixes: decode_all(&self.prefixes)?,
            lan_prefixes: decode_all(&self.lan_prefixes)?,
            wireguard_key,
            foreign: self.foreign,
        };
        identity.validate()?;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn spoke() -> NodeIdentity {
        include!("fixtures/spoke_identity.rs")
    }

    #[test]
    fn round_trips_spoke_and_core() {
        let s = spoke();
        assert_eq!(decode_identity(&encode_identity(&s)), Ok(s));
        let c = NodeIdentity {
            name: "alpha".into(),
            role: NodeRole::Core,
            core: None,
            prefixes: vec![],
            lan_prefixes: vec![],
            wireguard_key: [0; 32],
            approvals: Default::default(),
            foreign: false,
        };
        assert_eq!(decode_identity(&encode_identity(&c)), Ok(c));
    }

    #[test]
    fn approvals_round_trip_and_are_absent_when_empty() {
        let mut s = spoke();
        let plain = encode_identity(&s);
        s.approvals = Approvals {
            exit_ipv4: true,
            exit_ipv6: false,
            anycast: vec!["203.0.113.53/32".parse().unwrap()],
        };
        let with = encode_identity(&s);
        assert_eq!(decode_identity(&with), Ok(s.clone()));
        // The optional fields come after everything an older certificate holds.
        assert!(with.len() > plain.len());
        s.approvals.anycast = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(matches!(
            decode_identity(&encode_identity(&s)),
            Err(ExtensionError::Identity(IdentityError::AnycastDefault(_)))
        ));
    }

    #[test]
    fn foreign_round_trips_as_a_trailing_null_and_only_for_spokes() {
        let mut s = spoke();
        let plain = encode_identity(&s);
        s.foreign = true;
        let foreign = encode_identity(&s);
        // [2] IMPLICIT NULL: tag 0x82, length 0, after everything else.
        assert_eq!(&foreign[foreign.len() - 2..], &[0x82, 0x00]);
        assert_eq!(foreign.len(), plain.len() + 2);
        assert_eq!(decode_identity(&foreign), Ok(s.clone()));
        s.role = NodeRole::Core;
        s.core = None;
        assert!(matches!(
            decode_identity(&encode_identity(&s)),
            Err(ExtensionError::Identity(IdentityError::ForeignCore(_)))
        ));
    }

    #[test]
    fn encoding_is_the_documented_der() {
        let c = NodeIdentity {
            name: "a".into(),
            role: NodeRole::Core,
            core: None,
            prefixes: vec!["10.1.0.0/16".parse().unwrap()],
            lan_prefixes: vec![],
            wireguard_key: [0xaa; 32],
            approvals: Default::default(),
            foreign: false,
        };
        let mut expected = vec![
            0x30, 0x36, // SEQUENCE
            0x02, 0x01, 0x01, // version 1
            0x0c, 0x01, b'a', // name
            0x0a, 0x01, 0x00, // role core
            0x30, 0x07, 0x04, 0x05, 10, 1, 0, 0, 16, // prefixes
            0x30, 0x00, // lan prefixes
            0x04, 0x20, // wireguard key
        ];
        expected.extend_from_slice(&[0xaa; 32]);
        assert_eq!(encode_identity(&c), expected);
    }

    #[test]
    fn semantic_errors_are_specific() {
        let mut s = spoke();
        s.core = None;
        let err = decode_identity(&encode_identity(&s)).unwrap_err();
        assert!(matches!(
            err,
            ExtensionError::Identity(IdentityError::SpokeWithoutCore(_))
        ));

        let bad_version = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_i64(2);
            })
        });
        assert_eq!(
            decode_identity(&bad_version),
            Err(ExtensionError::UnsupportedVersion(2))
        );

        let mut short_key = encode_identity(&spoke());
        // Drop the last key byte and fix up the outer and key lengths.
        short_key.pop();
        short_key[1] -= 1;
        let n = short_key.len();
        short_key[n - 32] = 31;
        assert_eq!(
            decode_identity(&short_key),
            Err(ExtensionError::WireguardKeyLength(31))
        );
    }

    #[test]
    fn trailing_and_truncated_input_is_rejected() {
        let good = encode_identity(&spoke());
        let mut long = good.clone();
        long.push(0);
        assert!(decode_identity(&long).is_err());
        for cut in 0..good.len() {
            assert!(
                decode_identity(&good[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_identity(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut bytes = encode_identity(&spoke());
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(1 + cut % bytes.len());
            if let Ok(identity) = decode_identity(&bytes) {
                // Whatever decodes must be a valid identity that encodes back to these bytes.
                prop_assert!(identity.validate().is_ok());
                prop_assert_eq!(encode_identity(&identity), bytes);
            }
        }
    }
}
