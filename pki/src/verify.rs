//! Verifying a peer's node certificate against the mesh CA (and CRL).
//!
//! rustls-webpki does the chain work: signature, validity window, basic constraints, serverAuth
//! EKU and revocation. On top, meshd requires keyUsage digitalSignature, clientAuth as well (the
//! same certificate serves both ends of the TLS control plane) and a well-formed identity
//! extension.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::certificate::X509Certificate;

use crate::crl::Crl;
use crate::error::PkiError;
use crate::node_cert::NodeCertificate;
use crate::serial::SerialNumber;
use crate::x509::{authority_key_id, parse_certificate, subject_key_id, unix_time};

/// DER content of the serverAuth key purpose, 1.3.6.1.5.5.7.3.1.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Why a node certificate is not accepted. Each variant is one thing a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("certificate was issued by {issuer:?}, not by this mesh's CA")]
    UnknownIssuer { issuer: String },
    #[error("certificate signature does not verify with the mesh CA key: it was altered or forged")]
    BadSignature,
    #[error("certificate expired at {not_after}")]
    Expired { not_after: OffsetDateTime },
    #[error(
        "certificate expired at {not_after}, and its renewal grace window ended at {grace_until}: \
         it can no longer be renewed; the way back is `meshd revoke NAME`, `meshd ca free-name \
         NAME` and a new invitation"
    )]
    ExpiredBeyondGrace {
        not_after: OffsetDateTime,
        grace_until: OffsetDateTime,
    },
    #[error("certificate is not valid before {not_before} (check the clocks)")]
    NotYetValid { not_before: OffsetDateTime },
    #[error("certificate {serial} has been revoked")]
    Revoked { serial: SerialNumber },
    #[error("certificate may not be used by a mesh node: {0}")]
    WrongKeyUsage(String),
    #[error(
        "certificate has no meshd identity extension (OID {})",
        crate::oid::MESHD_IDENTITY_OID
    )]
    MissingExtension,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("the mesh CA certificate is unusable: {0}")]
    InvalidCa(String),
    #[error("the revocation list is unusable: {0}")]
    InvalidCrl(String),
    #[error("the current time {0} is before 1970; fix the clock")]
    InvalidTime(OffsetDateTime),
}

/// Verifies `cert_der` as a node certificate issued by the CA `ca_cert_der`, valid at `now`,
/// not revoked by `crl` (when given; it must be signed by the same CA), and returns what it
/// says about the node.
pub fn verify_node_certificate(
    cert_der: &[u8],
    ca_cert_der: &[u8],
    crl: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<NodeCertificate, VerifyError> {
    let cert = parse_certificate(cert_der).map_err(VerifyError::Malformed)?;
    let ca = parse_certificate(ca_cert_der).map_err(VerifyError::InvalidCa)?;
    check_issuer(&cert, &ca)?;
    if let Some(crl) = crl {
        // Checked here first so that a bad CRL is reported as such, not as a revocation.
        Crl::parse(crl, ca_cert_der).map_err(|e| VerifyError::InvalidCrl(e.to_string()))?;
    }

    let time = unix_time(now).ok_or(VerifyError::InvalidTime(now))?;
    let ca_der = CertificateDer::from(ca_cert_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca_der)
        .map_err(|e| VerifyError::InvalidCa(e.to_string()))?;
    let ee_der = CertificateDer::from(cert_der);
    let ee = EndEntityCert::try_from(&ee_der).map_err(|e| VerifyError::Malformed(e.to_string()))?;

    let parsed_crl = crl
        .map(BorrowedCertRevocationList::from_der)
        .transpose()
        .map_err(|e| VerifyError::InvalidCrl(e.to_string()))?
        .map(CertRevocationList::from);
    let crls: Vec<&CertRevocationList<'_>> = parsed_crl.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|builder| {
        builder
            .with_depth(RevocationCheckDepth::EndEntity)
            .with_status_policy(UnknownStatusPolicy::Deny)
            // A stale CRL is still true; see the crl module.
            .with_expiration_policy(ExpirationPolicy::Ignore)
            .build()
    });

    ee.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[anchor],
        &[],
        time,
        KeyUsage::required(EKU_SERVER_AUTH),
        revocation,
        None,
    )
    .map_err(|e| translate(e, &cert))?;

    check_mesh_usage(&cert)?;
    NodeCertificate::parse(cert_der).map_err(|e| match e {
        PkiError::MissingExtension => VerifyError::MissingExtension,
        other => VerifyError::Malformed(other.to_string()),
    })
}

/// [`verify_node_certificate`] for a renewal: a certificate that expired less than `grace`
/// ago is accepted as it was at its last valid moment (`notAfter`), every other check as
/// strict as ever (issuer, signature, key usage, identity, and the revocation list, which has
/// no time in it). Past the grace window: [`VerifyError::ExpiredBeyondGrace`], after the
/// other checks, so that a revoked or forged certificate is reported as such.
///
/// Only the renewal of a certificate may rely on this: a renewal re-issues what the CA
/// recorded for the same key, and nothing else is granted to an expired certificate.
pub fn verify_node_certificate_for_renewal(
    cert_der: &[u8],
    ca_cert_der: &[u8],
    crl: Option<&[u8]>,
    now: OffsetDateTime,
    grace: time::Duration,
) -> Result<NodeCertificate, VerifyError> {
    let not_after = parse_certificate(cert_der)
        .map_err(VerifyError::Malformed)?
        .validity()
        .not_after
        .to_datetime();
    if now <= not_after {
        return verify_node_certificate(cert_der, ca_cert_der, crl, now);
    }
    let cert = verify_node_certificate(cert_der, ca_cert_der, crl, not_after)?;
    let grace_until = not_after + grace;
    if now > grace_until {
        return Err(VerifyError::ExpiredBeyondGrace {
            not_after,
            grace_until,
        });
    }
    Ok(cert)
}

/// Issuer name and authority key id must point at our CA; otherwise the certificate comes from
/// another mesh (or another CA with the same name) and "bad signature" would mislead.
fn check_issuer(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let unknown = || VerifyError::UnknownIssuer {
        issuer: cert.issuer().to_string(),
    };
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(unknown());
    }
    match (authority_key_id(cert), subject_key_id(ca)) {
        (Some(aki), Some(ski)) if aki != ski => Err(unknown()),
        _ => Ok(()),
    }
}

/// keyUsage digitalSignature and extKeyUsage clientAuth (webpki has checked serverAuth).
fn check_mesh_usage(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let wrong = |what: &str| VerifyError::WrongKeyUsage(what.to_owned());
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::Malformed(format!("keyUsage: {e}")))?
        .ok_or_else(|| wrong("no keyUsage extension"))?;
    if !ku.value.digital_signature() {
        return Err(wrong("keyUsage lacks digitalSignature"));
    }
    let eku = cert
        .extended_key_usage()
        .map_err(|e| VerifyError::Malformed(format!("extKeyUsage: {e}")))?
        .ok_or_else(|| wrong("no extKeyUsage extension"))?;
    if !eku.value.client_auth {
        return Err(wrong("extKeyUsage lacks clientAuth"));
    }
    Ok(())
}

fn translate(error: webpki::Error, cert: &X509Certificate<'_>) -> VerifyError {
    use webpki::Error as E;
    match error {
        E::CertExpired { .. } => VerifyError::Expired {
            not_after: cert.validity().not_after.to_datetime(),
        },
        E::CertNotValidYet { .. } => VerifyError::NotYetValid {
            not_before: cert.validity().not_before.to_datetime(),
        },
        E::CertRevoked => VerifyError::Revoked {
            serial: SerialNumber::from_bytes(cert.raw_serial()),
        },
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => VerifyError::BadSignature,
        E::UnknownIssuer => VerifyError::UnknownIssuer {
            issuer: cert.issuer().to_string(),
        },
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            VerifyError::WrongKeyUsage("extKeyUsage lacks serverAuth".into())
        }
        E::CaUsedAsEndEntity => VerifyError::WrongKeyUsage("it is a CA certificate".into()),
        E::InvalidCrlSignatureForPublicKey | E::IssuerNotCrlSigner | E::UnknownRevocationStatus => {
            VerifyError::InvalidCrl(error.to_string())
        }
        other => VerifyError::Malformed(other.to_string()),
    }
}
