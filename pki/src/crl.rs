//! Certificate revocation lists: the CA signs a standard X.509 v2 CRL, nodes check it.
//!
//! The CRL spreads through the mesh with the membership records. A CRL past its `nextUpdate`
//! is still honoured (its revocations stay true); nodes keep the one with the highest
//! CRL number. That way the mesh keeps working while the CA holder is offline.

use std::collections::BTreeMap;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::ca::{CertificateAuthority, truncate_to_seconds};
use crate::error::PkiError;
use crate::serial::SerialNumber;
use crate::x509::{parse_certificate, subject_key_id};

/// One revoked certificate, as the CA database records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// Serial number of the revoked certificate.
    pub serial: SerialNumber,
    /// When the CA revoked it.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
}

impl CertificateAuthority {
    /// Signs a CRL listing `revoked`, numbered `crl_number` (must grow with every CRL), issued at
    /// `now` and promising the next one by `next_update`. Returns the DER.
    pub fn issue_crl(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        now: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        if next_update <= now {
            return Err(PkiError::InvalidValidity(format!(
                "CRL next update {next_update} is not after its issue time {now}"
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for entry in revoked {
            if !seen.insert(&entry.serial) {
                return Err(PkiError::Crl(format!(
                    "serial {} is listed twice",
                    entry.serial
                )));
            }
        }
        let ca_cert = parse_certificate(self.cert_der()).map_err(PkiError::CaCertificate)?;
        // The CRL's authority key identifier must equal the CA certificate's subject key id.
        let key_identifier_method = subject_key_id(&ca_cert)
            .map(KeyIdMethod::PreSpecified)
            .unwrap_or(KeyIdMethod::Sha256);
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update,
            crl_number: crl_number.into(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|entry| RevokedCertParams {
                    serial_number: entry.serial.as_bytes().to_vec().into(),
                    revocation_time: entry.revoked_at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method,
        };
        let crl = params
            .signed_by(&self.issuer_with(self.key())?)
            .map_err(|e| PkiError::Build(format!("CRL: {e}")))?;
        Ok(crl.der().to_vec())
    }
}

/// One DER element: its tag, its contents, and the bytes after it.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    encoded: &'a [u8],
    rest: &'a [u8],
}

/// Reads the DER element at the start of `input` (definite lengths up to four bytes, which
/// covers anything this CA signs); `None` for anything malformed or truncated.
fn element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, after_len) = after_tag.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || after_len.len() < count {
            return None;
        }
        let (len_bytes, body) = after_len.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, body)
    };
    if body.len() < len {
        return None;
    }
    let header = input.len() - body.len();
    Some(Element {
        tag,
        contents: &body[..len],
        encoded: &input[..header + len],
        rest: &body[len..],
    })
}

/// Whether the CRL's outer signatureAlgorithm is byte for byte the `signature` field inside
/// tbsCertList, as RFC 5280 (5.1.1.2) requires.
fn signature_algorithms_agree(der: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    let agree = || -> Option<bool> {
        let outer = element(der)?;
        let tbs = element(outer.contents)?;
        let outer_algorithm = element(tbs.rest)?;
        if outer.tag != SEQUENCE || tbs.tag != SEQUENCE || outer_algorithm.tag != SEQUENCE {
            return Some(false);
        }
        let mut field = element(tbs.contents)?;
        if field.tag == INTEGER {
            // The optional version comes first.
            field = element(field.rest)?;
        }
        Some(field.encoded == outer_algorithm.encoded)
    };
    agree().unwrap_or(false)
}

/// A CRL whose signature has been checked against the mesh CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: BTreeMap<SerialNumber, OffsetDateTime>,
    der: Vec<u8>,
}

impl Crl {
    /// Parses a DER CRL and checks that `ca_cert_der` (the mesh CA certificate) issued and signed
    /// it. CRLs arrive from other nodes, so any input gives a result or an error, never a panic.
    pub fn parse(der: &[u8], ca_cert_der: &[u8]) -> Result<Crl, PkiError> {
        let crl = match CertificateRevocationList::from_der(der) {
            Ok(([], crl)) => crl,
            Ok((rest, _)) => {
                return Err(PkiError::Crl(format!(
                    "{} unexpected bytes after the CRL",
                    rest.len()
                )));
            }
            Err(e) => return Err(PkiError::Crl(format!("not a DER X.509 CRL ({e})"))),
        };
        if !signature_algorithms_agree(der) {
            // The outer algorithm is not covered by the signature, so a parser that tolerates
            // a damaged one would accept bytes the CA never wrote (RFC 5280, 5.1.1.2).
            return Err(PkiError::Crl(
                "its outer signature algorithm is not the one in the signed part".into(),
            ));
        }
        let ca = parse_certificate(ca_cert_der).map_err(PkiError::CaCertificate)?;
        if crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(PkiError::Crl(format!(
                "issued by {:?}, not by this mesh's CA ({:?})",
                crl.issuer().to_string(),
                ca.subject().to_string()
            )));
        }
        crl.verify_signature(ca.public_key())
            .map_err(|_| PkiError::Crl("its signature does not verify with the CA key".into()))?;

        let crl_number = crl
            .crl_number()
            .ok_or_else(|| PkiError::Crl("it has no CRL number".into()))?;
        let crl_number = match crl_number.to_u64_digits().as_slice() {
            [] => 0,
            [n] => *n,
            _ => return Err(PkiError::Crl("its CRL number does not fit 64 bits".into())),
        };
        let next_update = crl
            .next_update()
            .ok_or_else(|| PkiError::Crl("it has no next-update time".into()))?
            .to_datetime();
        let mut revoked = BTreeMap::new();
        for entry in crl.iter_revoked_certificates() {
            revoked.insert(
                SerialNumber::from_bytes(entry.raw_serial()),
                entry.revocation_date.to_datetime(),
            );
        }
        Ok(Crl {
            crl_number,
            this_update: crl.last_update().to_datetime(),
            next_update,
            revoked,
            der: der.to_vec(),
        })
    }

    /// Whether the certificate with `serial` is revoked.
    pub fn is_revoked(&self, serial: &SerialNumber) -> bool {
        self.revoked.contains_key(serial)
    }

    /// When the certificate with `serial` was revoked, if it was.
    pub fn revoked_at(&self, serial: &SerialNumber) -> Option<OffsetDateTime> {
        self.revoked.get(serial).copied()
    }

    /// Every revoked certificate, in serial order.
    pub fn entries(&self) -> impl Iterator<Item = RevokedEntry> + '_ {
        self.revoked.iter().map(|(serial, at)| RevokedEntry {
            serial: serial.clone(),
            revoked_at: *at,
        })
    }

    /// The CRL number: of two CRLs from the same CA, keep the higher.
    pub fn crl_number(&self) -> u64 {
        self.crl_number
    }

    /// When the CRL was issued.
    pub fn this_update(&self) -> OffsetDateTime {
        self.this_update
    }

    /// When the CA promised the next CRL. Past it, the CRL is stale but still honoured.
    pub fn next_update(&self) -> OffsetDateTime {
        self.next_update
    }

    /// Whether `now` is past [`next_update`](Self::next_update) (worth a warning, no more).
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        truncate_to_seconds(now) > self.next_update
    }

    /// The CRL as DER, to pass on to other nodes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}
