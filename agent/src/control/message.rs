//! The control-plane messages. JSON inside length-prefixed frames ([`super::frame`]): the
//! volume is small (membership changes are rare; anti-entropy sends version numbers), so a
//! self-describing, debuggable format is worth more than a few bytes, and serde_json is
//! already in the tree and does not panic on hostile input.
//!
//! What a newer version may add without breaking this one (docs/architecture.md, "Control
//! protocol versions"): unknown fields in a known message are ignored (no type here denies
//! them), and a message of an unknown type on a member connection is skipped
//! ([`super::protocol::decode_member`]), so a mesh can be upgraded one node at a time. A
//! field that must not be ignored (one that restricts what the receiver may do) is no minor
//! change: it needs a new message type, announced in the hello, or a new protocol version.
//! Membership records are the exception where unknown fields are kept, not dropped: they are
//! signed by their author and relayed ([`super::record`]).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_config::alloc::NodeAllocation;
use pki::InvitationSecret;
use serde::{Deserialize, Serialize};

use super::record::SignedRecord;
use super::registry::SignedRegistry;

/// Everything sent on a control connection. On the wire each is an object with one key, the
/// type (`{"gossip": {"digest": {...}}}`); [`Message::kind`] names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The first message each side sends on a member connection whose TLS handshake agreed
    /// on [`super::protocol::MEMBER_ALPN`]: which protocol version and features it speaks.
    /// A connection without that ALPN (a node older than the hello) has none.
    Hello(Hello),
}

/// The types of [`Message`] this version knows, as they are named on the wire.
pub const MESSAGE_KINDS: [&str; 8] = [
    "join_request",
    "join_accepted",
    "join_refused",
    "gossip",
    "renew_request",
    "renew_accepted",
    "renew_refused",
    "hello",
];

impl Message {
    /// The message's type as it is named on the wire (one of [`MESSAGE_KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::JoinRequest(_) => "join_request",
            Message::JoinAccepted(_) => "join_accepted",
            Message::JoinRefused { .. } => "join_refused",
            Message::Gossip(_) => "gossip",
            Message::RenewRequest(_) => "renew_request",
            Message::RenewAccepted { .. } => "renew_accepted",
            Message::RenewRefused { .. } => "renew_refused",
            Message::Hello(_) => "hello",
        }
    }
}

/// What a node says when a member connection opens (see [`super::protocol`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version: the number in the connection's ALPN. Versions differ only
    /// where old and new cannot talk at all; everything smaller is a feature.
    pub protocol: u32,
    /// The message types (`gossip.digest`, ...) and features (`record.extensions`) the
    /// sender understands; the other side sends it nothing else.
    pub features: BTreeSet<String>,
    /// The sender's meshd version, for the log only (never to decide anything).
    #[serde(default)]
    pub software: String,
}

/// A renewal request: a CSR for the key of the certificate the member holds now (the CA
/// holder refuses another key), so the WireGuard key, name and prefixes stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// PKCS#10 request (PEM) signed with the member's current TLS key.
    pub csr_pem: String,
}

/// What `meshd join` sends, after it has checked the CA's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Set when a core redeems a foreign router's invitation on the router's behalf (`meshd
    /// router add`): the core's name. The WireGuard key is then the router's, the TLS key the
    /// core's stand-in key for it. Absent otherwise, so a join reads as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_by: Option<String>,
}

/// What an admitted node receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinAccepted {
    /// The node's certificate (PEM).
    pub certificate_pem: String,
    /// The mesh CA certificate (PEM).
    pub ca_certificate_pem: String,
    /// The mesh's name.
    pub mesh_name: String,
    /// The prefixes the CA allocated. Read leniently: the state files keep the same type
    /// strict, but a newer CA may add a field here.
    #[serde(deserialize_with = "allocation::deserialize")]
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
#[serde(rename_all = "snake_case")]
pub enum Gossip {
    /// Anti-entropy: the version of every record the sender holds, and its CRL number.
    /// Sent when a connection comes up and in answer to a [`Gossip::Summary`] that differs.
    Digest {
        versions: BTreeMap<String, u64>,
        crl_number: Option<u64>,
    },
    /// Periodic anti-entropy: a hash of what a digest would say (see
    /// `Membership::summary_hash`), 32 bytes instead of one entry per member. A receiver
    /// whose own hash differs answers with its full digest. Added after `digest`: nodes
    /// that predate it closed the connection on it; since the hello, a message type the
    /// peer did not announce is not sent, and one that is not known is skipped.
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
    /// The newest CA registry record the sender holds, signed with the CA key
    /// ([`super::registry`]). Sent only to peers that announce `gossip.registry`: nodes
    /// before it skip it (or, before the hello, would close the connection on it).
    Registry { record: SignedRegistry },
}

/// The gossip types of version 1, which every node understands, hello or not.
pub const BASE_GOSSIP_FEATURES: [&str; 5] = [
    "gossip.digest",
    "gossip.summary",
    "gossip.records",
    "gossip.want",
    "gossip.crl",
];

/// The gossip types this version knows, as named in a hello (`gossip.` and the wire name).
pub const GOSSIP_FEATURES: [&str; 6] = [
    "gossip.digest",
    "gossip.summary",
    "gossip.records",
    "gossip.want",
    "gossip.crl",
    "gossip.registry",
];

impl Gossip {
    /// The feature a peer announces when it reads [`Gossip::Registry`].
    pub const REGISTRY: &'static str = "gossip.registry";

    /// The type's wire name (`digest`, ...).
    pub fn kind(&self) -> &'static str {
        self.feature()
            .strip_prefix("gossip.")
            .expect("every gossip feature starts with gossip.")
    }

    /// The name a hello announces this type with (one of [`GOSSIP_FEATURES`]).
    pub fn feature(&self) -> &'static str {
        match self {
            Gossip::Digest { .. } => "gossip.digest",
            Gossip::Summary { .. } => "gossip.summary",
            Gossip::Records { .. } => "gossip.records",
            Gossip::Want { .. } => "gossip.want",
            Gossip::Crl { .. } => "gossip.crl",
            Gossip::Registry { .. } => Gossip::REGISTRY,
        }
    }
}

/// [`NodeAllocation`] read from a join answer, where fields a newer CA added are ignored;
/// the type itself refuses unknown fields because it is also what the state files hold.
/// The conversion names every field of `NodeAllocation` once, so a field added there and not
/// to the mirror does not compile, and one added to the mirror only is a field never read.
mod allocation {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};
    use mesh_config::Role;
    use mesh_config::alloc::NodeAllocation;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    struct Lenient {
        name: String,
        role: Role,
        index: u32,
        ipv4: Ipv4Net,
        ipv4_clients: Ipv4Net,
        ipv4_apps: Ipv4Net,
        ipv4_address: Ipv4Addr,
        ipv6: Ipv6Net,
        ipv6_clients: Ipv6Net,
        ipv6_address: Ipv6Addr,
        core: Option<String>,
    }

    impl From<Lenient> for NodeAllocation {
        fn from(read: Lenient) -> Self {
            NodeAllocation {
                name: read.name,
                role: read.role,
                index: read.index,
                ipv4: read.ipv4,
                ipv4_clients: read.ipv4_clients,
                ipv4_apps: read.ipv4_apps,
                ipv4_address: read.ipv4_address,
                ipv6: read.ipv6,
                ipv6_clients: read.ipv6_clients,
                ipv6_address: read.ipv6_address,
                core: read.core,
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeAllocation, D::Error> {
        Lenient::deserialize(d).map(NodeAllocation::from)
    }
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
    fn gossip_round_trips_and_unknown_fields_are_ignored() {
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
        // A field a newer version added is ignored.
        let extra = r#"{"gossip":{"want":{"names":["beta"],"crl":true,"x":1}}}"#;
        assert_eq!(serde_json::from_str::<Message>(extra).unwrap(), message);
        let crl = Message::Gossip(Gossip::Crl { der: vec![1, 2, 3] });
        let text = serde_json::to_string(&crl).unwrap();
        assert!(text.contains("AQID"), "{text}");
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), crl);
    }

    #[test]
    fn kinds_are_the_wire_names() {
        let samples = [
            Message::JoinRefused { reason: "r".into() },
            Message::Gossip(Gossip::Summary { hash: [0; 32] }),
            Message::RenewRequest(RenewRequest {
                csr_pem: "c".into(),
            }),
            Message::RenewAccepted {
                certificate_pem: "c".into(),
            },
            Message::RenewRefused { reason: "r".into() },
            Message::Hello(Hello {
                protocol: 2,
                features: BTreeSet::new(),
                software: String::new(),
            }),
        ];
        for message in samples {
            let value = serde_json::to_value(&message).unwrap();
            let tag = value.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, message.kind());
            assert!(MESSAGE_KINDS.contains(&message.kind()), "{tag}");
        }
        let gossip = [
            Gossip::Digest {
                versions: BTreeMap::new(),
                crl_number: None,
            },
            Gossip::Summary { hash: [0; 32] },
            Gossip::Records { records: vec![] },
            Gossip::Want {
                names: vec![],
                crl: false,
            },
            Gossip::Crl { der: vec![] },
            Gossip::Registry {
                record: SignedRegistry {
                    body: vec![1],
                    signature: vec![2],
                },
            },
        ];
        for gossip in gossip {
            let value = serde_json::to_value(&gossip).unwrap();
            let tag = value.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(tag, gossip.kind());
            assert_eq!(format!("gossip.{tag}"), gossip.feature());
            assert!(GOSSIP_FEATURES.contains(&gossip.feature()));
        }
    }
}
