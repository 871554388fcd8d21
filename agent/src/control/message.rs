//! The control-plane messages. JSON inside length-prefixed frames ([`super::frame`]): the
//! volume is small (membership changes are rare; anti-entropy sends version numbers), so a
//! self-describing, debuggable format is worth more than a few bytes, and serde_json is
//! already in the tree and does not panic on hostile input. Unknown fields are refused so a
//! peer speaking another protocol version fails loudly instead of being half understood.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_config::alloc::NodeAllocation;
use pki::InvitationSecret;
use serde::{Deserialize, Serialize};

use super::record::SignedRecord;

/// Everything sent on a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// A new node asks to be admitted (first message of a join connection).
    JoinRequest(JoinRequest),
    /// The CA admitted the node.
    JoinAccepted(Box<JoinAccepted>),
    /// The CA refused; the reason is for the person running `meshd join`.
    JoinRefused { reason: String },
    /// Spreading membership among admitted nodes.
    Gossip(Gossip),
    /// A member asks the CA holder for a new certificate (the only message of a renewal
    /// connection, see [`super::tls::RENEWAL_ALPN`]). Who asks is the TLS client certificate.
    RenewRequest(RenewRequest),
    /// The CA holder renewed the certificate.
    RenewAccepted { certificate_pem: String },
    /// The CA holder refused; the reason goes to the member's log.
    RenewRefused { reason: String },
}

/// A renewal request: a CSR for the key of the certificate the member holds now (the CA
/// holder refuses another key), so the WireGuard key, name and prefixes stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PKCS#10 request (PEM) signed with the member's current TLS key.
    pub csr_pem: String,
}

/// What `meshd join` sends, after it has checked the CA's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The name the token was issued for.
    pub name: String,
    /// The token's one-time secret (proves the invitation).
    pub secret: InvitationSecret,
    /// PKCS#10 request (PEM) for the node's TLS key: proof of possession.
    pub csr_pem: String,
    /// The node's WireGuard public key, bound into its certificate.
    #[serde(with = "key32")]
    pub wireguard_key: [u8; 32],
    /// Where other nodes reach the new node (`host:port`; may be empty for a spoke).
    pub endpoints: Vec<String>,
}

/// What an admitted node receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinAccepted {
    /// The node's certificate (PEM).
    pub certificate_pem: String,
    /// The mesh CA certificate (PEM).
    pub ca_certificate_pem: String,
    /// The mesh's name.
    pub mesh_name: String,
    /// The prefixes the CA allocated.
    pub allocation: NodeAllocation,
    /// LAN prefixes the CA approved.
    pub lan_prefixes: Vec<IpNet>,
    /// The mesh address plan and AS number, for the new node's `meshd.toml`.
    pub pool4: Ipv4Net,
    pub node_prefix_len4: u8,
    pub pool6: Ipv6Net,
    pub asn: u32,
    /// The membership as the CA holder knows it.
    pub members: Vec<SignedRecord>,
    /// The current revocation list (DER), if any certificate was ever revoked.
    #[serde(with = "opt_bytes")]
    pub crl: Option<Vec<u8>>,
}

/// Membership spreading (see [`super::membership`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Gossip {
    /// Anti-entropy: the version of every record the sender holds, and its CRL number.
    /// Sent when a connection comes up and in answer to a [`Gossip::Summary`] that differs.
    Digest {
        versions: BTreeMap<String, u64>,
        crl_number: Option<u64>,
    },
    /// Periodic anti-entropy: a hash of what a digest would say (see
    /// `Membership::summary_hash`), 32 bytes instead of one entry per member. A receiver
    /// whose own hash differs answers with its full digest. Added after `digest`: a node
    /// that does not know it refuses the frame (unknown variant) and closes the connection,
    /// as for any message it does not understand.
    Summary {
        #[serde(with = "key32")]
        hash: [u8; 32],
    },
    /// Records the receiver lacks or holds in an older version.
    Records { records: Vec<SignedRecord> },
    /// Asks for these records (and the CRL).
    Want { names: Vec<String>, crl: bool },
    /// The sender's revocation list (DER).
    Crl {
        #[serde(with = "bytes")]
        der: Vec<u8>,
    },
}

/// Byte strings as standard base64 in JSON.
pub(crate) mod bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("not base64: {e}")))
    }
}

/// Optional byte strings as base64 or null.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::bytes")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

/// A 32-byte key as base64.
mod key32 {
    use serde::{Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::bytes::serialize(key, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes = super::bytes::deserialize(d)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("a key must be 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_round_trips_and_unknown_fields_are_refused() {
        let message = Message::Gossip(Gossip::Want {
            names: vec!["beta".into()],
            crl: true,
        });
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            serde_json::from_str::<Message>(&text).unwrap(),
            message,
            "{text}"
        );
        let extra = r#"{"gossip":{"want":{"names":[],"crl":false,"x":1}}}"#;
        assert!(serde_json::from_str::<Message>(extra).is_err());
        let crl = Message::Gossip(Gossip::Crl { der: vec![1, 2, 3] });
        let text = serde_json::to_string(&crl).unwrap();
        assert!(text.contains("AQID"), "{text}");
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), crl);
    }
}
