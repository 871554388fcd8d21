//! Byte strings signed with the mesh CA key itself, for facts only a CA holder may state (the
//! CA registry record, docs/architecture.md "The CA: backup, move, and a standby"). Pure.
//!
//! The signature is ECDSA P-256 / SHA-256 (ASN.1), as the CA signs certificates, over a
//! context string, a NUL and the body. The context keeps a signature on one kind of object
//! from ever being taken for another; certificates and CRLs are DER structures signed without
//! such a prefix, so none of their signatures verifies here either.

use rcgen::SigningKey;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

use crate::ca::CertificateAuthority;
use crate::error::PkiError;
use crate::x509::parse_certificate;

/// Longest context accepted (a short fixed name in practice).
const MAX_CONTEXT_LEN: usize = 64;

/// Why a CA-signed body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaSignatureError {
    #[error("the mesh CA certificate cannot be read: {0}")]
    CaCertificate(String),
    #[error("it is not signed with the mesh CA key")]
    Signature,
}

fn signed_bytes(context: &str, body: &[u8]) -> Vec<u8> {
    assert!(
        context.len() <= MAX_CONTEXT_LEN && !context.contains('\0'),
        "a signing context is a short name"
    );
    let mut out = Vec::with_capacity(context.len() + 1 + body.len());
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

impl CertificateAuthority {
    /// Signs `body` under `context` (a fixed name per kind of object) with the CA key.
    pub fn sign_detached(&self, context: &str, body: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.key()
            .sign(&signed_bytes(context, body))
            .map_err(|e| PkiError::Build(format!("signing with the CA key: {e}")))
    }
}

/// Checks that `signature` is the CA's (the key of the CA certificate `ca_der`) over
/// `context` and `body`. Never panics on what a peer sends.
pub fn verify_detached(
    ca_der: &[u8],
    context: &str,
    body: &[u8],
    signature: &[u8],
) -> Result<(), CaSignatureError> {
    let cert = parse_certificate(ca_der).map_err(CaSignatureError::CaCertificate)?;
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
        .verify(&signed_bytes(context, body), signature)
        .map_err(|_| CaSignatureError::Signature)
}

/// SHA-256 of `bytes`, as lowercase hex: how one signed body names the one before it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(crate::x509::sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Duration, macros::datetime};

    #[test]
    fn only_the_ca_key_over_the_same_context_and_body_verifies() {
        let now = datetime!(2026-12-01 12:00 UTC);
        let ca = CertificateAuthority::create("friends", now, Duration::days(365)).unwrap();
        let other = CertificateAuthority::create("friends", now, Duration::days(365)).unwrap();
        let signature = ca.sign_detached("meshd test v1", b"body").unwrap();
        verify_detached(ca.cert_der(), "meshd test v1", b"body", &signature).unwrap();
        for (ca_der, context, body) in [
            (other.cert_der(), "meshd test v1", &b"body"[..]),
            (ca.cert_der(), "meshd test v2", b"body"),
            (ca.cert_der(), "meshd test v1", b"bodY"),
            (ca.cert_der(), "meshd test v", b"1\0body"),
        ] {
            assert_eq!(
                verify_detached(ca_der, context, body, &signature).unwrap_err(),
                CaSignatureError::Signature
            );
        }
        assert!(matches!(
            verify_detached(b"junk", "meshd test v1", b"body", &signature),
            Err(CaSignatureError::CaCertificate(_))
        ));
        assert_eq!(
            verify_detached(ca.cert_der(), "meshd test v1", b"body", &[]).unwrap_err(),
            CaSignatureError::Signature
        );
        assert_eq!(sha256_hex(b"").len(), 64);
    }
}
