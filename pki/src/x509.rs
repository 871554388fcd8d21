//! Helpers shared by the modules that read certificates with x509-parser.

use std::time::Duration as StdDuration;

use ring::digest;
use rustls_pki_types::UnixTime;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// How far back `not_before` is set from `now`: routers' clocks disagree a little, and a
/// certificate that is "not yet valid" on the peer for a few seconds after issue breaks joins.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// `now` minus [`CLOCK_SKEW_ALLOWANCE`], for `notBefore` (saturating instead of panicking at
/// the edge of the representable range).
pub(crate) fn backdated(now: OffsetDateTime) -> OffsetDateTime {
    now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(now)
}

/// Parses one DER certificate, rejecting trailing bytes.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!(
            "{} unexpected bytes after the certificate",
            rest.len()
        )),
        Err(e) => Err(format!("not a DER X.509 certificate ({e})")),
    }
}

/// Checks that a public key is ECDSA on P-256, the only key type meshd uses.
pub(crate) fn require_p256(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
    let is_ec = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if is_ec && curve.as_ref() == Some(&OID_EC_P256) {
        Ok(())
    } else {
        Err(format!(
            "the key is not ECDSA P-256 (algorithm {}, parameters {:?})",
            spki.algorithm.algorithm,
            curve.map(|c| c.to_id_string())
        ))
    }
}

/// SHA-256 over some DER, as used for the CA fingerprint.
pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `now` for webpki. Times before 1970 cannot occur on a router with a sane clock.
pub(crate) fn unix_time(now: OffsetDateTime) -> Option<UnixTime> {
    let secs = u64::try_from(now.unix_timestamp()).ok()?;
    Some(UnixTime::since_unix_epoch(StdDuration::from_secs(secs)))
}

/// Checks a validity period given by the caller.
pub(crate) fn require_positive(validity: Duration) -> Result<(), crate::PkiError> {
    if validity.is_positive() {
        Ok(())
    } else {
        Err(crate::PkiError::InvalidValidity(format!(
            "{validity} is not a positive duration"
        )))
    }
}

/// `now + validity`, with overflow reported rather than panicking.
pub(crate) fn add_validity(
    now: OffsetDateTime,
    validity: Duration,
) -> Result<OffsetDateTime, crate::PkiError> {
    require_positive(validity)?;
    now.checked_add(validity).ok_or_else(|| {
        crate::PkiError::InvalidValidity(format!("{now} + {validity} is beyond the year 9999"))
    })
}

/// Lowercase hex of a fingerprint, the way people compare them.
pub fn fingerprint_hex(fingerprint: &[u8; 32]) -> String {
    hex::encode(fingerprint)
}

/// The subjectKeyIdentifier of a certificate, if it has one.
pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// The keyIdentifier of a certificate's authorityKeyIdentifier, if it has one.
pub(crate) fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}
