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
    include!("../../src/fixtures/spoke_identity.rs")
}

pub fn issue(ca: &CertificateAuthority, identity: &NodeIdentity) -> IssuedCertificate {
    let key = NodeKeyPair::generate().unwrap();
    let csr = key.csr(&identity.name).unwrap();
    ca.issue_node_certificate(&csr, identity, NOW, Duration::days(30))
        .unwrap()
}
