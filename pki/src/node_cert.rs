//! Node certificates: issuing them from a CSR, and reading the meshd identity back out.
//!
//! Profile (see also `pki/EXTENSION.md`):
//! - subject `CN=<node name>`, SAN `dNSName <node name>.meshd.invalid`
//! - keyUsage digitalSignature (critical), extKeyUsage serverAuth + clientAuth: the TLS control
//!   plane uses the same certificate as client and as server
//! - basicConstraints cA=FALSE, authorityKeyIdentifier of the mesh CA
//! - the meshd identity extension (non-critical)

use std::borrow::Cow;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::Oid;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::ca::{CertificateAuthority, pem_encode, truncate_to_seconds};
use crate::error::{PemError, PkiError};
use crate::extension::{decode_identity, encode_identity};
use crate::identity::NodeIdentity;
use crate::oid::{OID_CONTENT, OidSwappingSigner, PLACEHOLDER_ARCS, swap_placeholder};
use crate::serial::SerialNumber;
use crate::x509::{add_validity, backdated, parse_certificate, require_p256};

/// DNS domain under which node names appear as SANs. `.invalid` (RFC 6761) can never resolve,
/// so these names only ever mean "the mesh node called X" and never collide with real DNS.
pub const NODE_DNS_SUFFIX: &str = "meshd.invalid";

/// The SAN DNS name of node `name` (`<name>.meshd.invalid`): what a TLS client passes as the
/// server name when it connects to that node.
pub fn node_dns_name(name: &str) -> String {
    format!("{name}.{NODE_DNS_SUFFIX}")
}

/// A certificate the CA just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// PEM (`CERTIFICATE`), for `node.crt`.
    pub pem: String,
    /// The same certificate in DER.
    pub der: Vec<u8>,
    /// Its serial number, for the CA database and for revocation.
    pub serial: SerialNumber,
    /// Start of validity (issue time minus the clock-skew allowance).
    pub not_before: OffsetDateTime,
    /// End of validity (never later than the CA's own).
    pub not_after: OffsetDateTime,
}

/// A node certificate decoded from DER (not verified: see [`crate::verify_node_certificate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertificate {
    /// What the CA bound to this certificate.
    pub identity: NodeIdentity,
    /// Serial number, as in CRLs.
    pub serial: SerialNumber,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The subject public key as DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The whole certificate DER.
    pub der: Vec<u8>,
}

impl CertificateAuthority {
    /// Issues a node certificate for the key in `csr_pem`, binding `identity`.
    ///
    /// The CSR is only trusted for its public key, after its signature (proof of possession) is
    /// checked; name, role and prefixes come from `identity`, which the CA decided itself.
    /// The certificate is valid from `now` (minus [`crate::CLOCK_SKEW_ALLOWANCE`]) for `validity`,
    /// cut short at the CA's own expiry.
    pub fn issue_node_certificate(
        &self,
        csr_pem: &str,
        identity: &NodeIdentity,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        identity.validate()?;
        if now >= self.not_after() {
            return Err(PkiError::CaExpired(self.not_after()));
        }
        let not_after = add_validity(now, validity)?.min(self.not_after());
        let csr = read_csr(csr_pem)?;

        let serial = SerialNumber::random(&self.rng)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.name.as_str());
        params.distinguished_name = dn;
        let san = node_dns_name(&identity.name)
            .try_into()
            .map_err(|e| PkiError::Build(format!("DNS name: {e}")))?;
        params.subject_alt_names = vec![SanType::DnsName(san)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial.as_bytes().to_vec().into());
        params.not_before = backdated(now);
        params.not_after = not_after;
        // Non-critical: software that does not know meshd still parses the certificate.
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &PLACEHOLDER_ARCS,
            encode_identity(identity),
        )];

        let issuer = self.issuer_with(OidSwappingSigner::new(self.key()))?;
        let built = params.signed_by(&csr.public_key, &issuer);
        let mut der = match built {
            Ok(cert) => cert.der().to_vec(),
            Err(rcgen::Error::RemoteKeyError) => return Err(PkiError::PlaceholderCollision),
            Err(e) => return Err(PkiError::Build(format!("node certificate: {e}"))),
        };
        if !swap_placeholder(&mut der) {
            return Err(PkiError::PlaceholderCollision);
        }
        Ok(IssuedCertificate {
            pem: pem_encode("CERTIFICATE", &der),
            der,
            serial,
            not_before: truncate_to_seconds(backdated(now)),
            not_after: truncate_to_seconds(not_after),
        })
    }
}

/// The public key (DER SubjectPublicKeyInfo) a certificate request asks to certify, after
/// the same checks as [`CertificateAuthority::issue_node_certificate`] makes: it lets a CA
/// holder that renews a certificate insist on the key of the certificate being renewed.
pub fn csr_public_key_der(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    read_csr(csr_pem)?;
    let block = pem::parse(csr_pem).map_err(|e| PkiError::Csr(format!("not PEM ({e})")))?;
    let (_, parsed) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| PkiError::Csr(format!("not a PKCS#10 request ({e})")))?;
    Ok(parsed.certification_request_info.subject_pki.raw.to_vec())
}

/// Parses a CSR, checks its self-signature and that its key is P-256.
fn read_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, PkiError> {
    let block = pem::parse(csr_pem).map_err(|e| PkiError::Csr(format!("not PEM ({e})")))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(PkiError::Csr(format!(
            "expected a CERTIFICATE REQUEST PEM block, found {:?}",
            block.tag()
        )));
    }
    // Check the key type before anything else so that the message names the real problem.
    let (rest, parsed) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| PkiError::Csr(format!("not a PKCS#10 request ({e})")))?;
    if !rest.is_empty() {
        return Err(PkiError::Csr("trailing bytes after the request".into()));
    }
    require_p256(&parsed.certification_request_info.subject_pki).map_err(PkiError::Csr)?;

    let csr =
        CertificateSigningRequestParams::from_der(&block.contents().into()).map_err(
            |e| match e {
                rcgen::Error::InvalidCertificationRequestSignature => {
                    PkiError::Csr("its signature does not verify".into())
                }
                other => PkiError::Csr(other.to_string()),
            },
        )?;
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::Csr(
            "it is not signed with ECDSA P-256 / SHA-256".into(),
        ));
    }
    Ok(csr)
}

/// The DER of the first `CERTIFICATE` block in `pem` (text around and other blocks are
/// skipped). The one place meshd turns a PEM certificate file into DER.
pub fn certificate_der_from_pem(pem: &str) -> Result<Vec<u8>, PemError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::{Error, PemObject};
    match CertificateDer::from_pem_slice(pem.as_bytes()) {
        Ok(der) => Ok(der.to_vec()),
        Err(Error::NoItemsFound) => Err(PemError::NoCertificate),
        Err(other) => Err(PemError::Malformed(other.to_string())),
    }
}

impl NodeCertificate {
    /// Decodes a node certificate from PEM ([`certificate_der_from_pem`], then [`Self::parse`]).
    pub fn from_pem(pem: &str) -> Result<NodeCertificate, PkiError> {
        Self::parse(&certificate_der_from_pem(pem)?)
    }

    /// Decodes a node certificate and its meshd identity extension.
    ///
    /// This checks structure only (the certificate parses, the extension is present, well-formed
    /// and agrees with the subject name); trust is [`crate::verify_node_certificate`]'s job.
    pub fn parse(der: &[u8]) -> Result<NodeCertificate, PkiError> {
        let cert = parse_certificate(der).map_err(PkiError::MalformedCertificate)?;
        let oid = Oid::new(Cow::Borrowed(&OID_CONTENT));
        let mut ours = cert.extensions().iter().filter(|e| e.oid == oid);
        let ext = match (ours.next(), ours.next()) {
            (Some(ext), None) => ext,
            (None, _) => return Err(PkiError::MissingExtension),
            (Some(_), Some(_)) => {
                return Err(PkiError::MalformedCertificate(
                    "the meshd identity extension appears more than once".into(),
                ));
            }
        };
        let identity = decode_identity(ext.value)?;

        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        if cn != Some(identity.name.as_str()) {
            return Err(PkiError::MalformedCertificate(format!(
                "subject common name {cn:?} differs from the node name {:?} in the meshd extension",
                identity.name
            )));
        }
        Ok(NodeCertificate {
            identity,
            serial: SerialNumber::from_bytes(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            public_key_der: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }
}
