//! Membership records: a node's certificate, its current endpoints and a version, signed
//! with the node's own certificate key.
//!
//! Why signed by the node and not only carried over TLS: records are relayed. A core passes
//! on what it heard from another core, so the TLS peer is usually not the record's author; the
//! signature lets every node check the author itself, and a relaying node cannot change
//! another node's endpoints. The certificate binds name, role, prefixes and WireGuard key, so
//! a record can only ever speak for what the CA granted.
//!
//! Fields a newer version adds to records ("extensions") are kept, not dropped, and the
//! signature covers them. Dropping them would be safe for this node but not for the mesh: a
//! node relays records, so a newer node behind an older relay would only ever get the
//! stripped copy, and the author's signature over the new fields could not be checked by
//! anyone. Checking the signature over the raw JSON bytes instead would need the record to
//! carry its signed text as a string, a format no node of today reads. So the signed bytes are
//! today's (certificate hash, version, endpoints) followed, when the record has extensions, by
//! a canonical JSON encoding of them (keys sorted at every level): a record without
//! extensions is signed exactly as before, every node from this version on verifies and
//! relays a newer node's extensions intact, and no relay can add, change or remove one.
//! Nodes older than this refuse a record with extensions, so they are not sent any
//! ([`super::protocol::RECORD_EXTENSIONS`]).

use std::collections::BTreeMap;

use pki::{Crl, NodeCertificate, NodeIdentity, NodeKeyPair, SerialNumber, VerifyError};
use ring::digest::{SHA256, digest};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// At most this many endpoints per record.
pub const MAX_ENDPOINTS: usize = 16;
/// The largest canonical encoding of a record's extensions: every node stores and relays
/// every record, so a member may not make its own one big.
pub const MAX_EXTENSIONS_LEN: usize = 4096;
/// Domain separation: a record signature can never be mistaken for another signed object.
const SIGNING_CONTEXT: &[u8] = b"meshd membership record v1\0";

/// A record as it travels. Unknown fields are kept in `extensions` (see the module
/// documentation), so `deny_unknown_fields` is not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The fields this version does not know, as received: signed, stored and relayed
    /// unchanged, never interpreted. Empty for every record this version makes.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
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
    #[error("its extensions take {0} bytes, more than the {MAX_EXTENSIONS_LEN} allowed")]
    ExtensionsTooLarge(usize),
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// The bytes a record's signature covers: context, certificate hash, version, endpoints,
/// and the canonical encoding of the extensions if there are any.
fn signed_bytes(
    certificate: &[u8],
    endpoints: &[String],
    version: u64,
    extensions: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + extensions.len());
    out.extend_from_slice(SIGNING_CONTEXT);
    out.extend_from_slice(digest(&SHA256, certificate).as_ref());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(endpoints.len() as u32).to_be_bytes());
    for endpoint in endpoints {
        out.extend_from_slice(&(endpoint.len() as u32).to_be_bytes());
        out.extend_from_slice(endpoint.as_bytes());
    }
    // After the endpoints, which are self-delimiting: a record without extensions signs
    // what every earlier version signed.
    if !extensions.is_empty() {
        out.extend_from_slice(&(extensions.len() as u32).to_be_bytes());
        out.extend_from_slice(extensions);
    }
    out
}

/// The canonical encoding of a record's extensions (empty when there are none), within
/// [`MAX_EXTENSIONS_LEN`].
fn encode_extensions(
    extensions: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    if !extensions.is_empty() {
        canonical_object(extensions.iter(), &mut out);
    }
    if out.len() > MAX_EXTENSIONS_LEN {
        return Err(RecordError::ExtensionsTooLarge(out.len()));
    }
    Ok(out)
}

/// JSON with the keys of every object sorted and no white space. Numbers and strings are
/// written by serde_json, which writes what it parsed back the same way, so the signer's
/// encoding and a verifier's (after any number of relays) are the same bytes. Recursion is
/// bounded by serde_json's nesting limit on what it parses.
fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => canonical_object(map.iter(), out),
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec"),
    }
}

fn canonical_object<'a>(
    entries: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
    out: &mut Vec<u8>,
) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).expect("writing to a Vec");
        out.push(b':');
        canonical(value, out);
    }
    out.push(b'}');
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
    sign_record_with_extensions(key, certificate, endpoints, version, BTreeMap::new())
}

/// [`sign_record`] with fields this version defines no meaning for: what a newer version's
/// record looks like (the recorded frames of the next version are made with it).
pub fn sign_record_with_extensions(
    key: &NodeKeyPair,
    certificate: &[u8],
    endpoints: Vec<String>,
    version: u64,
    extensions: BTreeMap<String, serde_json::Value>,
) -> Result<SignedRecord, RecordError> {
    check_endpoints(&endpoints)?;
    let encoded = encode_extensions(&extensions)?;
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.to_pkcs8_der(), &rng)
        .map_err(|e| RecordError::Signing(e.to_string()))?;
    let signature = pair
        .sign(
            &rng,
            &signed_bytes(certificate, &endpoints, version, &encoded),
        )
        .map_err(|e| RecordError::Signing(e.to_string()))?;
    Ok(SignedRecord {
        certificate: certificate.to_vec(),
        endpoints,
        version,
        signature: signature.as_ref().to_vec(),
        extensions,
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
        let extensions = encode_extensions(&self.extensions)?;
        let cert: NodeCertificate =
            pki::verify_node_certificate(&self.certificate, ca_der, crl.map(Crl::der), now)?;
        let der = CertificateDer::from(self.certificate.as_slice());
        let end_entity = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| RecordError::Certificate(VerifyError::Malformed(e.to_string())))?;
        end_entity
            .verify_signature(
                webpki::ring::ECDSA_P256_SHA256,
                &signed_bytes(
                    &self.certificate,
                    &self.endpoints,
                    self.version,
                    &extensions,
                ),
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
            foreign: false,
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
    fn extensions_are_signed_kept_and_relayed_unchanged() {
        let ca = CertificateAuthority::create("t", NOW, Duration::days(365)).unwrap();
        let (key, cert) = node(&ca, "alpha", NodeRole::Core, None, &["10.1.0.0/16"]);
        let extensions: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"zone": {"b": [1, 2.5, "x"], "a": null}, "labels": ["edge"], "weight": 7}"#,
        )
        .unwrap();
        let record = sign_record_with_extensions(
            &key,
            &cert,
            vec!["203.0.113.1:51820".into()],
            3,
            extensions,
        )
        .unwrap();
        record.verify(ca.cert_der(), None, NOW).unwrap();
        // Relayed: parsed and written again, fields in another order, still verifies.
        let text = serde_json::to_string(&record).unwrap();
        let relayed: SignedRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(relayed, record);
        let reordered = serde_json::to_value(&record).unwrap();
        let mut object: Vec<(String, serde_json::Value)> =
            reordered.as_object().unwrap().clone().into_iter().collect();
        object.reverse();
        let text: String = format!(
            "{{{}}}",
            object
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
                .collect::<Vec<_>>()
                .join(",")
        );
        let reparsed: SignedRecord = serde_json::from_str(&text).unwrap();
        reparsed.verify(ca.cert_der(), None, NOW).unwrap();

        // A relay can neither change, add nor remove an extension.
        let mut changed = record.clone();
        changed.extensions.insert("weight".into(), 8.into());
        assert_eq!(
            changed.verify(ca.cert_der(), None, NOW),
            Err(RecordError::Signature)
        );
        let mut added = record.clone();
        added.extensions.insert("more".into(), true.into());
        assert_eq!(
            added.verify(ca.cert_der(), None, NOW),
            Err(RecordError::Signature)
        );
        let mut removed = record.clone();
        removed.extensions.clear();
        assert_eq!(
            removed.verify(ca.cert_der(), None, NOW),
            Err(RecordError::Signature)
        );
        // A plain record gained no extension on the way: signed as before.
        let plain = sign_record(&key, &cert, vec![], 4).unwrap();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("extensions"), "{text}");
    }

    #[test]
    fn big_extensions_are_refused() {
        let ca = CertificateAuthority::create("t", NOW, Duration::days(365)).unwrap();
        let (key, cert) = node(&ca, "alpha", NodeRole::Core, None, &["10.1.0.0/16"]);
        let big = BTreeMap::from([("blob".to_owned(), "x".repeat(MAX_EXTENSIONS_LEN).into())]);
        assert!(matches!(
            sign_record_with_extensions(&key, &cert, vec![], 1, big.clone()),
            Err(RecordError::ExtensionsTooLarge(_))
        ));
        let mut record = sign_record(&key, &cert, vec![], 1).unwrap();
        record.extensions = big;
        assert!(matches!(
            record.verify(ca.cert_der(), None, NOW),
            Err(RecordError::ExtensionsTooLarge(_))
        ));
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
