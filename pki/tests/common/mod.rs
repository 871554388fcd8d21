//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use pki::{CertificateAuthority, IssuedCertificate, NodeIdentity, NodeKeyPair, NodeRole};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

pub fn ca() -> CertificateAuthority {
    CertificateAuthority::create("friends", NOW, Duration::days(3650)).unwrap()
}

pub fn spoke_identity() -> NodeIdentity {
    NodeIdentity {
        name: "beta".into(),
        role: NodeRole::Spoke,
        core: Some("alpha".into()),
        prefixes: vec![
            "10.2.0.0/16".parse().unwrap(),
            "fd12:3456:789a:1:1::/80".parse().unwrap(),
            "fd12:3456:789a:1:1:1::/96".parse().unwrap(),
        ],
        lan_prefixes: vec!["192.168.42.0/24".parse().unwrap()],
        wireguard_key: [0x5a; 32],
    }
}

pub fn issue(ca: &CertificateAuthority, identity: &NodeIdentity) -> IssuedCertificate {
    let key = NodeKeyPair::generate().unwrap();
    let csr = key.csr(&identity.name).unwrap();
    ca.issue_node_certificate(&csr, identity, NOW, Duration::days(30))
        .unwrap()
}
