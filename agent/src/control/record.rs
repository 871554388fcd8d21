//! Membership records: a node's certificate, its current endpoints and a version, signed
//! with the node's own certificate key.
//!
//! Why signed by the node and not only carried over TLS: records are relayed. A core passes
//! on what it heard from another core, so the TLS peer is usually not the record's author; the
//! signature lets every node check the author itself, and a relaying node cannot change
//! another node's endpoints. The certificate binds name, role, prefixes and WireGuard key, so
//! a record can only ever speak for what the CA granted.

use pki::{Crl, NodeCertificate, NodeIdentity, NodeKeyPair, SerialNumber, VerifyError};
use ring::digest::{SHA256, digest};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// At most this many endpoints per record.
pub const MAX_ENDPOINTS: usize = 16;
/// Domain separation: a record signature can never be mistaken for another signed object.
const SIGNING_CONTEXT: &[u8] = b"meshd membership record v1\0";

/// A record as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    /// The node's certificate (DER).
    #[serde(with = "super::message::bytes")]
    pub certificate: Vec<u8>,
    /// Where the node is reachable, `host:port` each.
    pub endpoints: Vec<String>,
    /// Grows with every new record from the node (milliseconds since the epoch when it was
    /// made, so a node that lost its state still outranks its old records).
    pub version: u64,
    /// ECDSA P-256 / SHA-256 (ASN.1) by the certificate's key over [`signed_bytes`].
    #[serde(with = "super::message::bytes")]
    pub signature: Vec<u8>,
}

/// A record that verified: the facts the rest of the control plane uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub identity: NodeIdentity,
    pub serial: SerialNumber,
    pub not_after: OffsetDateTime,
    pub endpoints: Vec<String>,
    pub version: u64,
    pub record: SignedRecord,
}

/// Why a record was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("its certificate is not accepted: {0}")]
    Certificate(#[from] VerifyError),
    #[error("its signature does not verify with its certificate's key")]
    Signature,
    #[error("it lists {0} endpoints, more than the {MAX_ENDPOINTS} allowed")]
    TooManyEndpoints(usize),
    #[error("{0}")]
    Endpoint(String),
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// The bytes a record's signature covers: context, certificate hash, version, endpoints.
fn signed_bytes(certificate: &[u8], endpoints: &[String], version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(SIGNING_CONTEXT);
    out.extend_from_slice(digest(&SHA256, certificate).as_ref());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(endpoints.len() as u32).to_be_bytes());
    for endpoint in endpoints {
        out.extend_from_slice(&(endpoint.len() as u32).to_be_bytes());
        out.extend_from_slice(endpoint.as_bytes());
    }
    out
}

fn check_endpoints(endpoints: &[String]) -> Result<(), RecordError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(RecordError::TooManyEndpoints(endpoints.len()));
    }
    for endpoint in endpoints {
        pki::token::validate_endpoint(endpoint).map_err(RecordError::Endpoint)?;
    }
    Ok(())
}

/// Signs a record for our own certificate with our key.
pub fn sign_record(
    key: &NodeKeyPair,
    certificate: &[u8],
    endpoints: Vec<String>,
    version: u64,
) -> Result<SignedRecord, RecordError> {
    check_endpoints(&endpoints)?;
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.to_pkcs8_der(), &rng)
        .map_err(|e| RecordError::Signing(e.to_string()))?;
    let signature = pair
        .sign(&rng, &signed_bytes(certificate, &endpoints, version))
        .map_err(|e| RecordError::Signing(e.to_string()))?;
    Ok(SignedRecord {
        certificate: certificate.to_vec(),
        endpoints,
        version,
        signature: signature.as_ref().to_vec(),
    })
}

/// A version for a record made at `now`: milliseconds since the epoch, and always above
/// `previous`.
pub fn next_version(previous: Option<u64>, now: OffsetDateTime) -> u64 {
    let clock = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    clock.max(previous.map_or(0, |v| v.saturating_add(1)))
}

impl SignedRecord {
    /// Checks the certificate against the mesh CA (and CRL) at `now`, then the signature.
    pub fn verify(
        &self,
        ca_der: &[u8],
        crl: Option<&Crl>,
        now: OffsetDateTime,
    ) -> Result<Member, RecordError> {
        check_endpoints(&self.endpoints)?;
        let cert: NodeCertificate =
            pki::verify_node_certificate(&self.certificate, ca_der, crl.map(Crl::der), now)?;
        let der = CertificateDer::from(self.certificate.as_slice());
        let end_entity = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| RecordError::Certificate(VerifyError::Malformed(e.to_string())))?;
        end_entity
            .verify_signature(
                webpki::ring::ECDSA_P256_SHA256,
                &signed_bytes(&self.certificate, &self.endpoints, self.version),
                &self.signature,
            )
            .map_err(|_| RecordError::Signature)?;
        Ok(Member {
            identity: cert.identity,
            serial: cert.serial,
            not_after: cert.not_after,
            endpoints: self.endpoints.clone(),
            version: self.version,
            record: self.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pki::{CertificateAuthority, NodeRole};
    use time::Duration;
    use time::macros::datetime;

    pub const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    /// A test node: its identity, key and certificate from `ca`.
    pub fn node(
        ca: &CertificateAuthority,
        name: &str,
        role: NodeRole,
        core: Option<&str>,
        prefixes: &[&str],
    ) -> (NodeKeyPair, Vec<u8>) {
        let key = NodeKeyPair::generate().unwrap();
        let identity = NodeIdentity {
            name: name.into(),
            role,
            core: core.map(Into::into),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            lan_prefixes: vec![],
            wireguard_key: digest(&SHA256, name.as_bytes())
                .as_ref()
                .try_into()
                .unwrap(),
            approvals: Default::default(),
        };
        let issued = ca
            .issue_node_certificate(&key.csr(name).unwrap(), &identity, NOW, Duration::days(30))
            .unwrap();
        (key, issued.der)
    }

    #[test]
    fn a_signed_record_verifies_and_tampering_is_caught() {
        let ca = CertificateAuthority::create("t", NOW, Duration::days(365)).unwrap();
        let (key, cert) = node(&ca, "alpha", NodeRole::Core, None, &["10.1.0.0/16"]);
        let record = sign_record(&key, &cert, vec!["203.0.113.1:51820".into()], 7).unwrap();
        let member = record.verify(ca.cert_der(), None, NOW).unwrap();
        assert_eq!(member.identity.name, "alpha");
        assert_eq!(member.version, 7);

        let mut moved = record.clone();
        moved.endpoints = vec!["198.51.100.9:51820".into()];
        assert_eq!(
            moved.verify(ca.cert_der(), None, NOW),
            Err(RecordError::Signature)
        );
        let mut bumped = record.clone();
        bumped.version = 8;
        assert_eq!(
            bumped.verify(ca.cert_der(), None, NOW),
            Err(RecordError::Signature)
        );
    }

    #[test]
    fn a_record_from_another_ca_is_refused() {
        let ca = CertificateAuthority::create("t", NOW, Duration::days(365)).unwrap();
        let other = CertificateAuthority::create("evil", NOW, Duration::days(365)).unwrap();
        let (key, cert) = node(&other, "alpha", NodeRole::Core, None, &["10.1.0.0/16"]);
        let record = sign_record(&key, &cert, vec![], 1).unwrap();
        let err = record.verify(ca.cert_der(), None, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::Certificate(VerifyError::UnknownIssuer { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn versions_grow() {
        let v = next_version(None, NOW);
        assert_eq!(v, 1_748_779_200_000);
        assert_eq!(next_version(Some(v + 10), NOW), v + 11);
    }
}
