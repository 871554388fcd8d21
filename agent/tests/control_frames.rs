//! Recorded control-plane frames, replayed against the current code, so that a change that
//! breaks what an older node sends (or what it reads) fails here and not in a mesh that is
//! being upgraded one router at a time.
//!
//! `tests/data/control-frames/` holds one frame body per file, exactly as meshd writes it
//! after the 4-byte length:
//! - `v2/`: every message type of protocol version 2 (this one). Everything but `hello.json`
//!   is also what version 1 (before the hello) sends, byte for byte.
//! - `next/`: what a pretend next version sends: unknown message types, unknown fields in
//!   known messages, a membership record with extensions. This version must skip or accept
//!   every one of them, never close the connection.
//! - `ca.pem`: the mesh CA every certificate in them was issued by.
//!
//! The files are committed. `regenerate_recorded_frames` (ignored, and only with
//! `MESHD_WRITE_CONTROL_FRAMES=1`) writes them again; the frames of a released version are
//! never regenerated: a new version adds its own directory and keeps checking the old ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mesh_config::Role;
use mesh_config::alloc::{AddressPlan, Allocator, NodeAllocation};
use meshd::control::frame::{self, MAX_FRAME_LEN, read_body_limited};
use meshd::control::membership::{Action, Membership};
use meshd::control::message::{Gossip, JoinAccepted, JoinRequest, Message, RenewRequest};
use meshd::control::protocol::{
    Incoming, PeerProtocol, RECORD_EXTENSIONS, decode_member, own_features, own_hello,
};
use meshd::control::record::{
    SignedRecord, next_version, sign_record, sign_record_with_extensions,
};
use meshd::identity::node_identity;
use pki::{
    Approvals, CertificateAuthority, Crl, InvitationSecret, NodeCertificate, NodeKeyPair,
    RevokedEntry,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

/// When the recorded certificates were issued; they are checked a day later.
const ISSUED: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);
const CHECKED: OffsetDateTime = datetime!(2025-06-02 12:00 UTC);
const MESH: &str = "friends";
const ALPHA_ENDPOINTS: [&str; 2] = ["203.0.113.1:51820", "vpn.example.net:51820"];
/// The spoke's record version is this much above alpha's.
const HOME_VERSION_STEP: u64 = 5;
const HOME_LAN: &str = "192.168.42.0/24";
const HOME_WIREGUARD_KEY: [u8; 32] = [0x42; 32];
const ALPHA_WIREGUARD_KEY: [u8; 32] = [0x41; 32];
const SECRET: [u8; 32] = [7; 32];
const ASN: u32 = 64512;
const JOIN_REFUSED: &str = "the invitation for home was cancelled at 2025-06-01T12:00:00Z";
const RENEW_REFUSED: &str = "this node's certificate is revoked";
/// The extensions of the next version's record.
fn extensions() -> BTreeMap<String, Value> {
    serde_json::from_value(json!({"zone": "eu-west", "weights": {"b": 2, "a": 1.5}})).unwrap()
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/control-frames")
}

fn alpha_version() -> u64 {
    next_version(None, ISSUED)
}

fn der(pem: &str) -> Vec<u8> {
    pki::certificate_der_from_pem(pem).expect("a PEM certificate")
}

// ---- reading the recorded files ----

struct Recorded {
    ca_der: Vec<u8>,
    /// File name (in its directory) to body.
    v2: BTreeMap<String, Vec<u8>>,
    next: BTreeMap<String, Vec<u8>>,
}

fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, std::fs::read(&path).unwrap());
    }
    files
}

fn recorded() -> Recorded {
    let dir = data_dir();
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    Recorded {
        ca_der: der(&ca_pem),
        v2: read_dir(&dir.join("v2")),
        next: read_dir(&dir.join("next")),
    }
}

fn known(name: &str, body: &[u8]) -> Message {
    match decode_member(body) {
        Ok(Incoming::Known(message)) => message,
        other => panic!("{name}: {other:?}"),
    }
}

fn frame_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Message {
    let body = files
        .get(name)
        .unwrap_or_else(|| panic!("no recorded frame {name}"));
    known(name, body)
}

/// The two recorded records verify as alpha (a core) and home (its spoke).
fn check_records(records: &[SignedRecord], ca_der: &[u8]) {
    let members: Vec<_> = records
        .iter()
        .map(|r| {
            r.verify(ca_der, None, CHECKED)
                .expect("a recorded record verifies")
        })
        .collect();
    let names: Vec<&str> = members.iter().map(|m| m.identity.name.as_str()).collect();
    assert_eq!(names, ["alpha", "home"]);
    assert_eq!(members[0].endpoints, ALPHA_ENDPOINTS);
    assert_eq!(members[0].version, alpha_version());
    assert_eq!(members[0].identity.wireguard_key, ALPHA_WIREGUARD_KEY);
    assert!(members[1].endpoints.is_empty());
    assert_eq!(members[1].version, alpha_version() + HOME_VERSION_STEP);
    assert_eq!(members[1].identity.core.as_deref(), Some("alpha"));
    assert_eq!(
        members[1].identity.lan_prefixes,
        [HOME_LAN.parse::<IpNet>().unwrap()]
    );
    assert!(records.iter().all(|r| r.extensions.is_empty()));
}

fn check_allocation(allocation: &NodeAllocation) {
    assert_eq!(allocation.name, "home");
    assert_eq!(allocation.role, Role::Spoke);
    assert_eq!(allocation.index, 2);
    assert_eq!(allocation.ipv4.to_string(), "10.2.0.0/16");
    assert_eq!(allocation.ipv4_address.to_string(), "10.2.0.1");
    assert_eq!(allocation.core.as_deref(), Some("alpha"));
}

#[test]
fn every_recorded_frame_of_this_version_decodes_to_what_it_said() {
    let r = recorded();
    let ca = &r.ca_der;
    let expected: BTreeSet<&str> = [
        "gossip-crl.json",
        "gossip-digest.json",
        "gossip-records.json",
        "gossip-summary.json",
        "gossip-want.json",
        "hello.json",
        "join-accepted.json",
        "join-refused.json",
        "join-request.json",
        "renew-accepted.json",
        "renew-refused.json",
        "renew-request.json",
    ]
    .into();
    let names: BTreeSet<&str> = r.v2.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "one recorded frame per message type");

    let Message::Gossip(Gossip::Records { records }) = frame_of(&r.v2, "gossip-records.json")
    else {
        panic!("records")
    };
    check_records(&records, ca);

    let Message::Gossip(Gossip::Crl { der: crl_der }) = frame_of(&r.v2, "gossip-crl.json") else {
        panic!("crl")
    };
    let crl = Crl::parse(&crl_der, ca).expect("the recorded CRL verifies");
    assert_eq!(crl.crl_number(), 1);
    assert_eq!(crl.entries().count(), 1);

    let Message::Gossip(Gossip::Digest {
        versions,
        crl_number,
    }) = frame_of(&r.v2, "gossip-digest.json")
    else {
        panic!("digest")
    };
    assert_eq!(
        versions,
        BTreeMap::from([
            ("alpha".to_owned(), alpha_version()),
            ("home".to_owned(), alpha_version() + HOME_VERSION_STEP)
        ])
    );
    assert_eq!(crl_number, Some(1));

    // The summary is the hash this version computes over the same membership: a change of
    // its definition would make every anti-entropy round between versions a full digest.
    let Message::Gossip(Gossip::Summary { hash }) = frame_of(&r.v2, "gossip-summary.json") else {
        panic!("summary")
    };
    assert_eq!(hash, membership_of(ca, &records, &crl_der).summary_hash());

    assert_eq!(
        frame_of(&r.v2, "gossip-want.json"),
        Message::Gossip(Gossip::Want {
            names: vec!["home".into()],
            crl: true
        })
    );

    let Message::Hello(hello) = frame_of(&r.v2, "hello.json") else {
        panic!("hello")
    };
    assert_eq!(hello.protocol, 2);
    assert!(
        hello.features.is_subset(&own_features()),
        "a feature of a released version is never dropped without a new protocol version: \
         {:?} is not in {:?}",
        hello.features,
        own_features()
    );
    assert!(hello.features.contains(RECORD_EXTENSIONS));

    let Message::JoinRequest(request) = frame_of(&r.v2, "join-request.json") else {
        panic!("join request")
    };
    assert_eq!(request.name, "home");
    assert_eq!(request.secret, InvitationSecret::from_bytes(SECRET));
    assert_eq!(request.wireguard_key, HOME_WIREGUARD_KEY);
    assert!(request.endpoints.is_empty());
    pki::csr_public_key_der(&request.csr_pem).expect("the recorded CSR parses");

    let Message::JoinAccepted(accepted) = frame_of(&r.v2, "join-accepted.json") else {
        panic!("join accepted")
    };
    check_allocation(&accepted.allocation);
    assert_eq!(accepted.mesh_name, MESH);
    assert_eq!(der(&accepted.ca_certificate_pem), *ca);
    let home = NodeCertificate::from_pem(&accepted.certificate_pem).unwrap();
    assert_eq!(home.identity.name, "home");
    assert_eq!(accepted.lan_prefixes, [HOME_LAN.parse::<IpNet>().unwrap()]);
    assert_eq!(accepted.pool4.to_string(), "10.0.0.0/8");
    assert_eq!(accepted.node_prefix_len4, 16);
    assert_eq!(accepted.asn, ASN);
    check_records(&accepted.members, ca);
    assert_eq!(accepted.crl.as_deref(), Some(crl_der.as_slice()));

    assert_eq!(
        frame_of(&r.v2, "join-refused.json"),
        Message::JoinRefused {
            reason: JOIN_REFUSED.into()
        }
    );
    let Message::RenewRequest(renew) = frame_of(&r.v2, "renew-request.json") else {
        panic!("renew request")
    };
    pki::csr_public_key_der(&renew.csr_pem).expect("the recorded CSR parses");
    let Message::RenewAccepted { certificate_pem } = frame_of(&r.v2, "renew-accepted.json") else {
        panic!("renew accepted")
    };
    let renewed = NodeCertificate::from_pem(&certificate_pem).unwrap();
    assert_eq!(renewed.identity.name, "alpha");
    assert_eq!(
        frame_of(&r.v2, "renew-refused.json"),
        Message::RenewRefused {
            reason: RENEW_REFUSED.into()
        }
    );

    // What this version writes for the same message is the recorded frame, byte for byte: a
    // node of version 1 refuses any field it does not know, so a new field (even an optional
    // one) would close its connections during an upgrade.
    for (name, body) in &r.v2 {
        let again = frame::encode(&known(name, body)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&again[4..]),
            String::from_utf8_lossy(body),
            "{name}: this version writes it differently than the recorded version did"
        );
    }
}

/// A node's membership holding the recorded records and CRL.
fn membership_of(ca_der: &[u8], records: &[SignedRecord], crl: &[u8]) -> Membership {
    let mut membership = Membership::new("beta", ca_der.to_vec(), 1);
    membership.install_crl(crl, None);
    membership.receive(
        "alpha",
        Gossip::Records {
            records: records.to_vec(),
        },
        CHECKED,
    );
    membership
}

#[test]
fn the_next_versions_frames_are_skipped_or_understood() {
    let r = recorded();
    let ca = &r.ca_der;
    let unknown = |name: &str| match decode_member(&r.next[name]) {
        Ok(Incoming::Unknown(kind)) => kind,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(unknown("unknown-type.json"), "ping");
    assert_eq!(unknown("unknown-unit-type.json"), "bye");
    assert_eq!(unknown("unknown-gossip-type.json"), "gossip.delta");

    // Extra fields in known messages are ignored: the same as this version's message.
    assert_eq!(
        frame_of(&r.next, "digest-extra-field.json"),
        frame_of(&r.v2, "gossip-digest.json")
    );
    assert_eq!(
        frame_of(&r.next, "join-request-extra-field.json"),
        frame_of(&r.v2, "join-request.json")
    );
    assert_eq!(
        frame_of(&r.next, "join-accepted-extra-fields.json"),
        frame_of(&r.v2, "join-accepted.json")
    );
    assert_eq!(
        frame_of(&r.next, "renew-request-extra-field.json"),
        frame_of(&r.v2, "renew-request.json")
    );

    // A hello with more features than this version knows: kept, and only what this
    // version sends is sent anyway.
    let Message::Hello(hello) = frame_of(&r.next, "hello-more-features.json") else {
        panic!("hello")
    };
    let peer = PeerProtocol::from_hello(hello);
    assert!(peer.supports("gossip.delta") && peer.supports("gossip.digest"));
    assert_eq!(peer.software.as_deref(), Some("9.9.9"));

    // A record with extensions: verified under its author's signature, accepted, kept and
    // relayed as it came.
    let Message::Gossip(Gossip::Records { records }) =
        frame_of(&r.next, "records-with-extensions.json")
    else {
        panic!("records")
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].extensions, extensions());
    let member = records[0].verify(ca, None, CHECKED).unwrap();
    assert_eq!(member.identity.name, "alpha");
    let mut membership = Membership::new("beta", ca.clone(), 1);
    let actions = membership.receive(
        "gamma",
        Gossip::Records {
            records: records.clone(),
        },
        CHECKED,
    );
    assert!(actions.contains(&Action::MembersChanged), "{actions:?}");
    assert_eq!(membership.records(), records);
    let relayed = serde_json::to_value(&membership.records()[0]).unwrap();
    let original: Value = serde_json::from_slice::<Value>(&r.next["records-with-extensions.json"])
        .unwrap()["gossip"]["records"]["records"][0]
        .clone();
    assert_eq!(relayed, original, "relayed with every field it came with");
    // ... but not to a node of version 1, which would refuse it.
    let (sent, withheld) = PeerProtocol::legacy().admit(Gossip::Records { records });
    assert_eq!(sent, None);
    assert!(withheld.is_some());
}

/// Every recorded frame, this version's and the next's, one after the other on one stream,
/// read as a member connection reads them: nothing is an error (the connection stays), the
/// unknown types are skipped.
#[tokio::test]
async fn all_recorded_frames_on_one_stream_are_read_without_closing() {
    let r = recorded();
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (name, body) in r.v2.iter().chain(r.next.iter()) {
        // The framing of version 1: a 4-byte big-endian length, then the body.
        stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
        stream.extend_from_slice(body);
        expected.push(name.starts_with("unknown-"));
    }
    let mut reader = stream.as_slice();
    let mut skipped = Vec::new();
    for (i, unknown) in expected.iter().enumerate() {
        let body = read_body_limited(&mut reader, MAX_FRAME_LEN)
            .await
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        match decode_member(&body).unwrap_or_else(|e| panic!("frame {i}: {e}")) {
            Incoming::Unknown(kind) => {
                assert!(unknown, "frame {i} is known, read as unknown {kind}");
                skipped.push(kind);
            }
            Incoming::Known(_) => assert!(!unknown, "frame {i}"),
        }
    }
    assert!(reader.is_empty());
    skipped.sort();
    assert_eq!(skipped, ["bye", "gossip.delta", "ping"]);
}

// ---- writing them ----

#[test]
#[ignore = "writes tests/data/control-frames; run with MESHD_WRITE_CONTROL_FRAMES=1"]
fn regenerate_recorded_frames() {
    assert_eq!(
        std::env::var("MESHD_WRITE_CONTROL_FRAMES").as_deref(),
        Ok("1"),
        "set MESHD_WRITE_CONTROL_FRAMES=1 to overwrite the recorded frames (never those of a \
         released version)"
    );
    let dir = data_dir();
    let ca = CertificateAuthority::create(MESH, ISSUED, time::Duration::days(3650)).unwrap();
    std::fs::create_dir_all(dir.join("v2")).unwrap();
    std::fs::create_dir_all(dir.join("next")).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();

    let plan = AddressPlan::new(
        "10.0.0.0/8".parse().unwrap(),
        16,
        "fd12:3456:789a::/48".parse().unwrap(),
    )
    .unwrap();
    let mut allocator = Allocator::new(plan).unwrap();
    let alpha_allocation = allocator
        .allocate_node("alpha", Role::Core, None, None)
        .unwrap();
    let home_allocation = allocator
        .allocate_node("home", Role::Spoke, Some("alpha"), None)
        .unwrap();
    let old_allocation = allocator
        .allocate_node("old", Role::Core, None, None)
        .unwrap();
    let lan: IpNet = HOME_LAN.parse().unwrap();
    let issue = |key: &NodeKeyPair, allocation: &NodeAllocation, lans: &[IpNet], wg: [u8; 32]| {
        let identity = node_identity(allocation, lans, &Approvals::default(), wg, false);
        ca.issue_node_certificate(
            &key.csr(&allocation.name).unwrap(),
            &identity,
            ISSUED,
            meshd::identity::NODE_CERT_VALIDITY,
        )
        .unwrap()
    };
    let alpha_key = NodeKeyPair::generate().unwrap();
    let home_key = NodeKeyPair::generate().unwrap();
    let alpha_cert = issue(&alpha_key, &alpha_allocation, &[], ALPHA_WIREGUARD_KEY);
    let home_cert = issue(&home_key, &home_allocation, &[lan], HOME_WIREGUARD_KEY);
    let old = issue(
        &NodeKeyPair::generate().unwrap(),
        &old_allocation,
        &[],
        [9; 32],
    );
    let crl = ca
        .issue_crl(
            &[RevokedEntry {
                serial: old.serial,
                revoked_at: ISSUED,
            }],
            1,
            ISSUED,
            ISSUED + time::Duration::days(7),
        )
        .unwrap();

    let alpha_record = sign_record(
        &alpha_key,
        &alpha_cert.der,
        ALPHA_ENDPOINTS.map(String::from).to_vec(),
        alpha_version(),
    )
    .unwrap();
    let home_record = sign_record(
        &home_key,
        &home_cert.der,
        vec![],
        alpha_version() + HOME_VERSION_STEP,
    )
    .unwrap();
    let records = vec![alpha_record, home_record];
    let summary = membership_of(ca.cert_der(), &records, &crl).summary_hash();
    let join_request = JoinRequest {
        name: "home".into(),
        secret: InvitationSecret::from_bytes(SECRET),
        csr_pem: home_key.csr("home").unwrap(),
        wireguard_key: HOME_WIREGUARD_KEY,
        endpoints: vec![],
        hosted_by: None,
    };
    let join_accepted = JoinAccepted {
        certificate_pem: home_cert.pem.clone(),
        ca_certificate_pem: ca.cert_pem(),
        mesh_name: MESH.into(),
        allocation: home_allocation,
        lan_prefixes: vec![lan],
        pool4: plan.pool4,
        node_prefix_len4: plan.node_prefix_len4,
        pool6: plan.pool6,
        asn: ASN,
        members: records.clone(),
        crl: Some(crl.clone()),
    };
    let renew_request = RenewRequest {
        csr_pem: alpha_key.csr("alpha").unwrap(),
    };
    let renewed = issue(&alpha_key, &alpha_allocation, &[], ALPHA_WIREGUARD_KEY);
    let digest = Gossip::Digest {
        versions: BTreeMap::from([
            ("alpha".to_owned(), alpha_version()),
            ("home".to_owned(), alpha_version() + HOME_VERSION_STEP),
        ]),
        crl_number: Some(1),
    };

    let v2: Vec<(&str, Message)> = vec![
        ("hello.json", Message::Hello(own_hello())),
        ("gossip-digest.json", Message::Gossip(digest.clone())),
        (
            "gossip-summary.json",
            Message::Gossip(Gossip::Summary { hash: summary }),
        ),
        (
            "gossip-records.json",
            Message::Gossip(Gossip::Records {
                records: records.clone(),
            }),
        ),
        (
            "gossip-want.json",
            Message::Gossip(Gossip::Want {
                names: vec!["home".into()],
                crl: true,
            }),
        ),
        (
            "gossip-crl.json",
            Message::Gossip(Gossip::Crl { der: crl.clone() }),
        ),
        (
            "join-request.json",
            Message::JoinRequest(join_request.clone()),
        ),
        (
            "join-accepted.json",
            Message::JoinAccepted(Box::new(join_accepted.clone())),
        ),
        (
            "join-refused.json",
            Message::JoinRefused {
                reason: JOIN_REFUSED.into(),
            },
        ),
        (
            "renew-request.json",
            Message::RenewRequest(renew_request.clone()),
        ),
        (
            "renew-accepted.json",
            Message::RenewAccepted {
                certificate_pem: renewed.pem,
            },
        ),
        (
            "renew-refused.json",
            Message::RenewRefused {
                reason: RENEW_REFUSED.into(),
            },
        ),
    ];
    for (name, message) in &v2 {
        let frame = frame::encode(message).unwrap();
        std::fs::write(dir.join("v2").join(name), &frame[4..]).unwrap();
    }

    // The next version: new types, new fields, a record with extensions.
    let value = |message: &Message| serde_json::to_value(message).unwrap();
    let mut digest_extra = value(&Message::Gossip(digest));
    digest_extra["gossip"]["digest"]["compression"] = json!("zstd");
    let mut join_request_extra = value(&Message::JoinRequest(join_request));
    join_request_extra["join_request"]["preferred_core"] = json!("alpha");
    let mut join_accepted_extra = value(&Message::JoinAccepted(Box::new(join_accepted)));
    join_accepted_extra["join_accepted"]["dns_zone"] = json!("mesh.example");
    join_accepted_extra["join_accepted"]["allocation"]["ipv6_anycast"] = json!("fd12::/64");
    let mut renew_extra = value(&Message::RenewRequest(renew_request));
    renew_extra["renew_request"]["reason"] = json!("operator");
    let mut hello = own_hello();
    hello
        .features
        .extend(["gossip.delta".into(), "ping".into()]);
    hello.software = "9.9.9".into();
    let mut hello_more = value(&Message::Hello(hello));
    hello_more["hello"]["roles"] = json!(["relay"]);
    let extended = sign_record_with_extensions(
        &alpha_key,
        &alpha_cert.der,
        ALPHA_ENDPOINTS.map(String::from).to_vec(),
        alpha_version() + 1,
        extensions(),
    )
    .unwrap();
    let next: Vec<(&str, Value)> = vec![
        ("unknown-type.json", json!({"ping": {"nonce": 7}})),
        ("unknown-unit-type.json", json!("bye")),
        (
            "unknown-gossip-type.json",
            json!({"gossip": {"delta": {"since": alpha_version(), "records": []}}}),
        ),
        ("digest-extra-field.json", digest_extra),
        ("join-request-extra-field.json", join_request_extra),
        ("join-accepted-extra-fields.json", join_accepted_extra),
        ("renew-request-extra-field.json", renew_extra),
        ("hello-more-features.json", hello_more),
        (
            "records-with-extensions.json",
            value(&Message::Gossip(Gossip::Records {
                records: vec![extended],
            })),
        ),
    ];
    for (name, value) in &next {
        let frame = frame::encode(value).unwrap();
        std::fs::write(dir.join("next").join(name), &frame[4..]).unwrap();
    }
}
