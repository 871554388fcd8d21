//! Versions and features of the member protocol, so that a mesh can be upgraded one node at
//! a time. Pure: no I/O (the shell reads frames and calls in here).
//!
//! - **Version**: the TLS handshake of a member connection negotiates it by ALPN. A node of
//!   this version offers [`MEMBER_ALPN`] when it dials and accepts it when dialed; a node
//!   older than the hello offers none and accepts none (its server only knows the renewal
//!   ALPN and refuses the handshake with `no_application_protocol`), so the dialer tries
//!   again without ALPN at once. Without the ALPN the connection speaks version 1 (what
//!   nodes spoke before the hello): no hello, and the peer understands [`base_features`].
//! - **Hello**: on a version-2 connection each side's first message is a
//!   [`Hello`] with its features: the message types (`gossip.digest`, ...) and other
//!   abilities ([`RECORD_EXTENSIONS`]) it understands. Until the peer's hello is read the
//!   base set is assumed (it is what every version understands), so nobody waits for it.
//! - **Sending**: a node sends a peer only what the peer announced ([`PeerProtocol::admit`]).
//! - **Receiving**: a message of a type this node does not know is skipped, not an error
//!   ([`decode_member`]); unknown fields in known messages are ignored (see
//!   [`super::message`]). A malformed frame still closes the connection.
//!
//! docs/architecture.md ("Control protocol versions") says what may change in a minor step
//! and what needs a new version.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::frame::{FrameError, decode_body};
use super::message::{
    BASE_GOSSIP_FEATURES, GOSSIP_FEATURES, Gossip, Hello, MESSAGE_KINDS, Message,
};

/// The ALPN of a member connection of protocol version 2 (with the hello). Version 1, the
/// member protocol before the hello, has no ALPN.
pub const MEMBER_ALPN: &[u8] = b"meshd-member/2";
/// The protocol version this node speaks on connections that negotiated [`MEMBER_ALPN`].
pub const PROTOCOL_VERSION: u32 = 2;
/// The protocol version of a connection without ALPN (a node older than the hello).
pub const LEGACY_VERSION: u32 = 1;
/// Feature: this node keeps the fields of a membership record it does not know, checks
/// them under the author's signature and relays them (see [`super::record`]). Nodes before
/// it refuse such a record along with the whole message that carries it.
pub const RECORD_EXTENSIONS: &str = "record.extensions";
/// Most features kept from a peer's hello, and the longest name kept: a hello is small, and
/// a bigger one is not worth holding.
pub const MAX_FEATURES: usize = 256;
pub const MAX_FEATURE_LEN: usize = 64;
/// Longest unknown type name kept for the log (a peer chooses it).
const MAX_KIND_LEN: usize = 64;

/// What every node understands, hello or not: the gossip types of version 1.
pub fn base_features() -> BTreeSet<String> {
    BASE_GOSSIP_FEATURES
        .iter()
        .map(|f| (*f).to_owned())
        .collect()
}

/// What this node announces in its hello: every gossip type it knows (the CA registry
/// record, `gossip.registry`, among them) and [`RECORD_EXTENSIONS`].
pub fn own_features() -> BTreeSet<String> {
    let mut features: BTreeSet<String> = GOSSIP_FEATURES.iter().map(|f| (*f).to_owned()).collect();
    features.insert(RECORD_EXTENSIONS.to_owned());
    features
}

/// This node's hello.
pub fn own_hello() -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        features: own_features(),
        software: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// What a member connection carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message of a type this node knows.
    Known(Message),
    /// A message of a type it does not know (a newer node's): `ping`, `gossip.delta`. To be
    /// skipped. The name is cut to a few dozen characters.
    Unknown(String),
}

/// Decodes a frame body read on a member connection. A body that is well-formed JSON and
/// has the shape of a message (an object with one key, the type, or a bare type name for a
/// type without content) but names a type this version does not know is
/// [`Incoming::Unknown`]; a type it knows with content it cannot read, and anything that is
/// not a message at all, are errors. Never panics (fuzzed, and the proptest below).
pub fn decode_member(body: &[u8]) -> Result<Incoming, FrameError> {
    // The common case costs one parse; only a frame that fails is looked at again.
    let error = match decode_body::<Message>(body) {
        Ok(message) => return Ok(Incoming::Known(message)),
        Err(error @ FrameError::Malformed(_)) => error,
        Err(other) => return Err(other),
    };
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return Err(error);
    };
    let cut = |name: &str| name.chars().take(MAX_KIND_LEN).collect::<String>();
    if !MESSAGE_KINDS.contains(&envelope.kind.as_str()) {
        return Ok(Incoming::Unknown(cut(&envelope.kind)));
    }
    if envelope.kind == "gossip"
        && let Some(sub) = envelope.sub
    {
        let feature = format!("gossip.{sub}");
        if !GOSSIP_FEATURES.contains(&feature.as_str()) {
            return Ok(Incoming::Unknown(cut(&feature)));
        }
    }
    Err(error)
}

/// The type names of a message: `{"gossip": {"digest": ...}}` is `gossip` with `digest`;
/// `"bye"` (how serde writes a type without content) is `bye`.
struct Envelope {
    kind: String,
    sub: Option<String>,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message: an object with one key, its type")
    }

    fn visit_str<E: serde::de::Error>(self, kind: &str) -> Result<Envelope, E> {
        Ok(Envelope {
            kind: kind.to_owned(),
            sub: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let Some(kind) = map.next_key::<String>()? else {
            return Err(A::Error::custom("an empty object is no message"));
        };
        let sub = map.next_value::<SubKind>()?.0;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("a message has one key, its type"));
        }
        Ok(Envelope { kind, sub })
    }
}

/// The first key of an object (or a bare string): the type of a nested enum's value. Any
/// other value is consumed and gives `None`.
struct SubKind(Option<String>);

impl<'de> Deserialize<'de> for SubKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SubKindVisitor)
    }
}

struct SubKindVisitor;

impl<'de> Visitor<'de> for SubKindVisitor {
    type Value = SubKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, kind: &str) -> Result<SubKind, E> {
        Ok(SubKind(Some(kind.to_owned())))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubKind, A::Error> {
        let first = map.next_key::<String>()?;
        if first.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(SubKind(first))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SubKind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(SubKind(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<SubKind, E> {
        Ok(SubKind(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<SubKind, E> {
        Ok(SubKind(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<SubKind, E> {
        Ok(SubKind(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<SubKind, E> {
        Ok(SubKind(None))
    }

    fn visit_unit<E>(self) -> Result<SubKind, E> {
        Ok(SubKind(None))
    }
}

/// What this node knows of a peer's protocol on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProtocol {
    /// [`LEGACY_VERSION`] until a hello says otherwise.
    pub version: u32,
    /// The peer's meshd version from its hello (for the log).
    pub software: Option<String>,
    features: BTreeSet<String>,
}

/// Why a message (or part of one) was not sent: the peer did not announce this feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld(pub &'static str);

impl Default for PeerProtocol {
    fn default() -> Self {
        Self::legacy()
    }
}

impl PeerProtocol {
    /// A peer that sent no hello (yet, or ever): the base set.
    pub fn legacy() -> Self {
        Self {
            version: LEGACY_VERSION,
            software: None,
            features: base_features(),
        }
    }

    /// A peer's hello, kept within [`MAX_FEATURES`] names of [`MAX_FEATURE_LEN`] bytes.
    pub fn from_hello(hello: Hello) -> Self {
        let features = hello
            .features
            .into_iter()
            .filter(|f| f.len() <= MAX_FEATURE_LEN)
            .take(MAX_FEATURES)
            .collect();
        let software: String = hello.software.chars().take(MAX_FEATURE_LEN).collect();
        Self {
            version: hello.protocol,
            software: (!software.is_empty()).then_some(software),
            features,
        }
    }

    /// Whether the peer announced `feature` (or, without a hello, has it in the base set).
    pub fn supports(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// What of `gossip` may go to this peer: all of it, or without the records it could not
    /// read ([`RECORD_EXTENSIONS`]), or nothing (a type it did not announce). The feature
    /// that withheld something comes with it, for the log.
    pub fn admit(&self, gossip: Gossip) -> (Option<Gossip>, Option<Withheld>) {
        if !self.supports(gossip.feature()) {
            return (None, Some(Withheld(gossip.feature())));
        }
        match gossip {
            Gossip::Records { records } if !self.supports(RECORD_EXTENSIONS) => {
                let before = records.len();
                let records: Vec<_> = records
                    .into_iter()
                    .filter(|r| r.extensions.is_empty())
                    .collect();
                let withheld = (records.len() < before).then_some(Withheld(RECORD_EXTENSIONS));
                let gossip = (!records.is_empty()).then_some(Gossip::Records { records });
                (gossip, withheld)
            }
            gossip => (Some(gossip), None),
        }
    }
}

/// Remembers which (peer, name) pairs were said already, so that a repeated event is logged
/// once and then only counted. Bounded: at most [`OncePerPeer::MAX_PER_PEER`] names per
/// peer (a peer chooses the names of unknown types); past that nothing more is logged.
#[derive(Debug, Default)]
pub struct OncePerPeer {
    seen: BTreeMap<String, BTreeSet<String>>,
    count: u64,
}

impl OncePerPeer {
    pub const MAX_PER_PEER: usize = 32;

    /// Counts one event; true when it is the first with this name from this peer.
    pub fn first(&mut self, peer: &str, name: &str) -> bool {
        self.count += 1;
        let names = self.seen.entry(peer.to_owned()).or_default();
        if names.len() >= Self::MAX_PER_PEER || names.contains(name) {
            return false;
        }
        names.insert(name.to_owned())
    }

    /// Events counted since start.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::record::SignedRecord;
    use proptest::prelude::*;

    fn decode(text: &str) -> Result<Incoming, FrameError> {
        decode_member(text.as_bytes())
    }

    #[test]
    fn known_messages_decode_and_unknown_types_are_named() {
        let want = decode(r#"{"gossip":{"want":{"names":["a"],"crl":false}}}"#).unwrap();
        assert_eq!(
            want,
            Incoming::Known(Message::Gossip(Gossip::Want {
                names: vec!["a".into()],
                crl: false
            }))
        );
        for (text, kind) in [
            (r#"{"ping":{"nonce":1}}"#, "ping"),
            (r#""bye""#, "bye"),
            (r#"{"ping":null}"#, "ping"),
            (r#"{"ping":[1,2,{"x":3}]}"#, "ping"),
            (r#"{"gossip":{"delta":{"since":3}}}"#, "gossip.delta"),
            (r#"{"gossip":"flush"}"#, "gossip.flush"),
        ] {
            assert_eq!(
                decode(text).unwrap(),
                Incoming::Unknown(kind.into()),
                "{text}"
            );
        }
        let long = format!(r#"{{"{}":1}}"#, "x".repeat(500));
        let Incoming::Unknown(kind) = decode(&long).unwrap() else {
            panic!("unknown")
        };
        assert_eq!(kind.len(), MAX_KIND_LEN);
    }

    #[test]
    fn malformed_frames_and_bad_known_messages_are_errors() {
        for text in [
            "not json",
            "",
            "{}",
            "[]",
            "7",
            r#"{"ping":1,"pong":2}"#,
            r#"{"gossip":{"want":{"names":5,"crl":false}}}"#,
            r#"{"gossip":{"digest":{}}}"#,
            r#"{"gossip":7}"#,
            r#"{"join_refused":{}}"#,
            r#"{"hello":{"protocol":"two"}}"#,
            r#"{"ping":{"nonce":1}"#,
        ] {
            assert!(
                matches!(decode(text), Err(FrameError::Malformed(_))),
                "{text}: {:?}",
                decode(text)
            );
        }
    }

    #[test]
    fn a_peer_is_sent_only_what_it_announced() {
        let legacy = PeerProtocol::legacy();
        assert_eq!(legacy.version, 1);
        for feature in BASE_GOSSIP_FEATURES {
            assert!(legacy.supports(feature));
        }
        // The registry record is newer than the hello: only a peer that announces it gets one.
        assert!(!legacy.supports("gossip.registry"));
        assert!(PeerProtocol::from_hello(own_hello()).supports("gossip.registry"));
        assert!(!legacy.supports(RECORD_EXTENSIONS));
        let summary = Gossip::Summary { hash: [1; 32] };
        assert_eq!(legacy.admit(summary.clone()), (Some(summary.clone()), None));

        let mut hello = own_hello();
        hello.features.remove("gossip.summary");
        let peer = PeerProtocol::from_hello(hello);
        assert_eq!(peer.version, PROTOCOL_VERSION);
        assert_eq!(
            peer.admit(summary),
            (None, Some(Withheld("gossip.summary")))
        );
    }

    #[test]
    fn records_with_extensions_go_only_to_peers_that_keep_them() {
        let plain = SignedRecord {
            certificate: vec![1],
            endpoints: vec![],
            version: 1,
            signature: vec![2],
            extensions: BTreeMap::new(),
        };
        let mut extended = plain.clone();
        extended.version = 2;
        extended.extensions.insert("zone".into(), "eu".into());
        let both = Gossip::Records {
            records: vec![plain.clone(), extended.clone()],
        };
        let legacy = PeerProtocol::legacy();
        assert_eq!(
            legacy.admit(both.clone()),
            (
                Some(Gossip::Records {
                    records: vec![plain]
                }),
                Some(Withheld(RECORD_EXTENSIONS))
            )
        );
        let only = Gossip::Records {
            records: vec![extended],
        };
        assert_eq!(
            legacy.admit(only),
            (None, Some(Withheld(RECORD_EXTENSIONS)))
        );
        let current = PeerProtocol::from_hello(own_hello());
        assert_eq!(current.admit(both.clone()), (Some(both), None));
    }

    #[test]
    fn a_big_hello_is_cut() {
        let hello = Hello {
            protocol: 9,
            features: (0..1000)
                .map(|i| format!("f{i}"))
                .chain(["y".repeat(100)])
                .collect(),
            software: "z".repeat(1000),
        };
        let peer = PeerProtocol::from_hello(hello);
        assert_eq!(peer.features.len(), MAX_FEATURES);
        assert!(peer.features.iter().all(|f| f.len() <= MAX_FEATURE_LEN));
        assert_eq!(peer.software.unwrap().len(), MAX_FEATURE_LEN);
    }

    #[test]
    fn each_name_is_said_once_per_peer() {
        let mut once = OncePerPeer::default();
        assert!(once.first("beta", "ping"));
        assert!(!once.first("beta", "ping"));
        assert!(once.first("gamma", "ping"));
        assert!(once.first("beta", "pong"));
        for i in 0..100 {
            once.first("beta", &format!("t{i}"));
        }
        assert!(!once.first("beta", "new"), "capped");
        assert_eq!(once.count(), 105);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_member(&bytes);
        }

        /// Well-formed JSON of every shape: never a panic, and an object with one key that
        /// is no known type is always skipped, whatever its value.
        #[test]
        fn unknown_types_are_always_skipped(
            kind in "[a-z_]{1,12}",
            value in json_value(),
        ) {
            let text = serde_json::to_string(&serde_json::json!({ kind.clone(): value })).unwrap();
            let result = decode_member(text.as_bytes());
            if !MESSAGE_KINDS.contains(&kind.as_str()) {
                prop_assert_eq!(result.unwrap(), Incoming::Unknown(kind));
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
