//! The mesh certificate authority: a self-signed ECDSA P-256 CA that issues node certificates
//! and revocation lists.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SigningKey,
};
use ring::rand::SystemRandom;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::BasicConstraints as X509BasicConstraints;

use crate::error::PkiError;
use crate::node_key::load_p256_key;
use crate::serial::SerialNumber;
use crate::x509::{add_validity, backdated, fingerprint_hex, parse_certificate};

/// Longest mesh name: it becomes the CA's organizationName (X.520 upper bound 64).
pub const MAX_MESH_NAME_LEN: usize = 64;

/// Common name of every meshd CA; the mesh name goes in the organization.
const CA_COMMON_NAME: &str = "meshd CA";

/// The CA certificate and private key in PEM, as the agent stores them (`ca/ca.crt`, `ca/ca.key`).
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    /// The CA certificate (`CERTIFICATE`).
    pub certificate: String,
    /// The CA private key (PKCS#8 `PRIVATE KEY`). Write it with mode 0600.
    pub private_key: String,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPem")
            .field("certificate", &self.certificate)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The mesh CA: its certificate and signing key.
pub struct CertificateAuthority {
    cert_der: Vec<u8>,
    key: KeyPair,
    mesh_name: String,
    not_after: OffsetDateTime,
    pub(crate) rng: SystemRandom,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("mesh_name", &self.mesh_name)
            .field("fingerprint", &self.fingerprint_hex())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn validate_mesh_name(name: &str) -> Result<(), PkiError> {
    let fail = |reason| {
        Err(PkiError::InvalidMeshName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return fail("it is empty");
    }
    if name.chars().count() > MAX_MESH_NAME_LEN {
        return fail("it is longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return fail("it contains control characters");
    }
    Ok(())
}

fn ca_params(mesh_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, mesh_name);
    params.distinguished_name = dn;
    // Path length 0: the CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl CertificateAuthority {
    /// Creates a new CA for the mesh `mesh_name`, valid from `now` (minus a small clock-skew
    /// allowance) for `validity`.
    pub fn create(
        mesh_name: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Self, PkiError> {
        validate_mesh_name(mesh_name)?;
        let not_after = add_validity(now, validity)?;
        let rng = SystemRandom::new();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::CaKey(format!("could not generate a P-256 key: {e}")))?;
        let mut params = ca_params(mesh_name);
        params.not_before = backdated(now);
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::random(&rng)?.as_bytes().to_vec().into());
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::Build(format!("CA certificate: {e}")))?;
        Ok(CertificateAuthority {
            cert_der: cert.der().to_vec(),
            key,
            mesh_name: mesh_name.to_owned(),
            not_after: truncate_to_seconds(not_after),
            rng,
        })
    }

    /// Loads a CA from its PEM certificate and PKCS#8 PEM private key, checking that the
    /// certificate is a CA certificate with the right key usages and that the key matches it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = crate::certificate_der_from_pem(cert_pem)
            .map_err(|e| PkiError::CaCertificate(e.to_string()))?;
        let key = load_p256_key(key_pem).map_err(PkiError::CaKey)?;

        let cert = parse_certificate(&cert_der).map_err(PkiError::CaCertificate)?;
        check_is_mesh_ca(&cert).map_err(PkiError::CaCertificate)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::CaKeyMismatch);
        }
        let mesh_name = cert
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .ok_or_else(|| {
                PkiError::CaCertificate("no organization (mesh name) in subject".into())
            })?
            .to_owned();
        let not_after = cert.validity().not_after.to_datetime();
        Ok(CertificateAuthority {
            cert_der,
            key,
            mesh_name,
            not_after,
            rng: SystemRandom::new(),
        })
    }

    /// The certificate and private key as PEM, for storage.
    pub fn to_pem(&self) -> CaPem {
        CaPem {
            certificate: self.cert_pem(),
            private_key: self.key.serialize_pem(),
        }
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA certificate as DER: the trust anchor every node keeps.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The mesh name (the CA subject's organization).
    pub fn mesh_name(&self) -> &str {
        &self.mesh_name
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// SHA-256 of the CA certificate DER: what invitation tokens carry so that a joining node
    /// can tell it is talking to the right CA.
    pub fn fingerprint(&self) -> [u8; 32] {
        crate::x509::sha256(&self.cert_der)
    }

    /// [`fingerprint`](Self::fingerprint) as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        fingerprint_hex(&self.fingerprint())
    }

    /// The CA's signing key.
    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
    }

    /// An rcgen issuer for this CA that signs with `signer`. Built from the CA certificate, so
    /// issuer name and authority key identifier always match what the certificate says.
    pub(crate) fn issuer_with<S: SigningKey>(
        &self,
        signer: S,
    ) -> Result<Issuer<'static, S>, PkiError> {
        Issuer::from_ca_cert_der(&CertificateDer::from(self.cert_der.as_slice()), signer)
            .map_err(|e| PkiError::CaCertificate(format!("cannot act as issuer: {e}")))
    }
}

/// X.509 times have one-second resolution; keep what we report equal to what is in the cert.
pub(crate) fn truncate_to_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).expect("0 is a valid nanosecond")
}

/// Checks basicConstraints cA=TRUE, keyCertSign and cRLSign, and a P-256 key.
fn check_is_mesh_ca(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("bad basicConstraints: {e}"))?;
    if !matches!(
        bc.map(|b| b.value),
        Some(X509BasicConstraints { ca: true, .. })
    ) {
        return Err("not a CA certificate (basicConstraints cA is not set)".into());
    }
    let ku = cert
        .key_usage()
        .map_err(|e| format!("bad keyUsage: {e}"))?
        .ok_or("no keyUsage extension")?;
    if !ku.value.key_cert_sign() || !ku.value.crl_sign() {
        return Err("keyUsage lacks keyCertSign or cRLSign".into());
    }
    crate::x509::require_p256(cert.public_key())
}

/// Encodes DER as a PEM block with the usual 64-column lines.
pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::CLOCK_SKEW_ALLOWANCE;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    #[test]
    fn created_ca_is_a_p256_ca_with_the_mesh_name() {
        let ca = CertificateAuthority::create("friends", NOW, Duration::days(3650)).unwrap();
        let cert = parse_certificate(ca.cert_der()).unwrap();
        check_is_mesh_ca(&cert).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=meshd CA, O=friends");
        assert_eq!(
            cert.validity().not_before.to_datetime(),
            NOW - CLOCK_SKEW_ALLOWANCE
        );
        assert_eq!(
            cert.validity().not_after.to_datetime(),
            NOW + Duration::days(3650)
        );
        assert_eq!(cert.issuer(), cert.subject());
        assert_eq!(ca.fingerprint(), crate::x509::sha256(ca.cert_der()));
        assert_eq!(ca.fingerprint_hex().len(), 64);
    }

    #[test]
    fn pem_round_trip_keeps_the_same_ca() {
        let ca = CertificateAuthority::create("friends", NOW, Duration::days(1)).unwrap();
        let pem = ca.to_pem();
        assert!(pem.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = CertificateAuthority::from_pem(&pem.certificate, &pem.private_key).unwrap();
        assert_eq!(back.cert_der(), ca.cert_der());
        assert_eq!(back.mesh_name(), "friends");
        assert_eq!(back.not_after(), ca.not_after());
        assert_eq!(back.to_pem(), pem);
        assert!(!format!("{pem:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = CertificateAuthority::create("a", NOW, Duration::days(1)).unwrap();
        let b = CertificateAuthority::create("b", NOW, Duration::days(1)).unwrap();
        let err = CertificateAuthority::from_pem(&a.to_pem().certificate, &b.to_pem().private_key)
            .unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch), "{err}");
    }

    #[test]
    fn corrupt_inputs_are_reported() {
        let a = CertificateAuthority::create("a", NOW, Duration::days(1)).unwrap();
        let pem = a.to_pem();
        let err = CertificateAuthority::from_pem("junk", &pem.private_key).unwrap_err();
        assert!(matches!(err, PkiError::CaCertificate(_)), "{err}");
        let err = CertificateAuthority::from_pem(&pem.private_key, &pem.private_key).unwrap_err();
        assert!(err.to_string().contains("expected a CERTIFICATE"), "{err}");
        let err = CertificateAuthority::from_pem(&pem.certificate, "junk").unwrap_err();
        assert!(matches!(err, PkiError::CaKey(_)), "{err}");
    }

    #[test]
    fn bad_names_and_validity_are_rejected() {
        for name in ["", "  ", "a\nb", &"m".repeat(65)] {
            assert!(matches!(
                CertificateAuthority::create(name, NOW, Duration::days(1)),
                Err(PkiError::InvalidMeshName { .. })
            ));
        }
        assert!(matches!(
            CertificateAuthority::create("m", NOW, Duration::ZERO),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(matches!(
            CertificateAuthority::create("m", NOW, Duration::days(10_000_000)),
            Err(PkiError::InvalidValidity(_))
        ));
    }
}
