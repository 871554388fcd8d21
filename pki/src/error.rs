//! The error type of certificate and CA operations.

use time::OffsetDateTime;

use crate::extension::ExtensionError;
use crate::identity::IdentityError;

/// Why a PEM text holds no certificate ([`crate::certificate_der_from_pem`]). The message
/// says only what is wrong with the text; callers say which file it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("expected a CERTIFICATE PEM block, found none")]
    NoCertificate,
    #[error("malformed PEM: {0}")]
    Malformed(String),
}

/// Why a CA, certificate, CSR or CRL operation failed. Each message says what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("mesh name {name:?} is invalid: {reason}")]
    InvalidMeshName { name: String, reason: &'static str },
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),
    #[error("CA certificate: {0}")]
    CaCertificate(String),
    #[error("CA private key: {0}")]
    CaKey(String),
    #[error("the CA private key does not belong to the CA certificate")]
    CaKeyMismatch,
    #[error("the CA certificate expired at {0}; nothing more can be issued with it")]
    CaExpired(OffsetDateTime),
    #[error("node private key: {0}")]
    NodeKey(String),
    #[error("certificate signing request rejected: {0}")]
    Csr(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("could not build the certificate or CRL: {0}")]
    Build(String),
    #[error(
        "the certificate contents collide with meshd's internal placeholder OID \
         (a crafted WireGuard key?); refusing to issue"
    )]
    PlaceholderCollision,
    #[error("not a PEM certificate: {0}")]
    Pem(#[from] PemError),
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error(
        "the certificate has no meshd identity extension (OID {})",
        crate::oid::MESHD_IDENTITY_OID
    )]
    MissingExtension,
    #[error(transparent)]
    Extension(#[from] ExtensionError),
    #[error("CRL rejected: {0}")]
    Crl(String),
    #[error("the system random number generator failed")]
    Random,
}
