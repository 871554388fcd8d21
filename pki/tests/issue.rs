//! Issuing node certificates and reading them back.

mod common;

use ::time::Duration;
use common::{NOW, ca, issue, spoke_identity};
use pki::{
    CLOCK_SKEW_ALLOWANCE, MESHD_IDENTITY_OID, NodeCertificate, NodeKeyPair, NodeRole, PkiError,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[test]
fn identity_round_trips_through_a_certificate() {
    let ca = ca();
    let identity = spoke_identity();
    let key = NodeKeyPair::generate().unwrap();
    let issued = ca
        .issue_node_certificate(
            &key.csr("beta").unwrap(),
            &identity,
            NOW,
            Duration::days(30),
        )
        .unwrap();
    let parsed = NodeCertificate::parse(&issued.der).unwrap();
    assert_eq!(parsed.identity, identity);
    assert_eq!(parsed.serial, issued.serial);
    assert_eq!(parsed.not_before, NOW - CLOCK_SKEW_ALLOWANCE);
    assert_eq!(parsed.not_after, NOW + Duration::days(30));
    assert_eq!(issued.not_after, parsed.not_after);
    assert_eq!(issued.not_before, parsed.not_before);
    assert_eq!(parsed.public_key_der, key.public_key_der());
    assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn a_certificate_reads_back_from_pem() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let with_text = format!("node beta\n{}", issued.pem);
    assert_eq!(
        pki::certificate_der_from_pem(&with_text).unwrap(),
        issued.der
    );
    let parsed = NodeCertificate::from_pem(&issued.pem).unwrap();
    assert_eq!(parsed, NodeCertificate::parse(&issued.der).unwrap());

    let key = NodeKeyPair::generate().unwrap().to_pem();
    assert_eq!(
        pki::certificate_der_from_pem(&key),
        Err(pki::PemError::NoCertificate)
    );
    let err = NodeCertificate::from_pem("junk").unwrap_err();
    assert!(matches!(err, PkiError::Pem(_)), "{err}");
    assert!(
        err.to_string().starts_with("not a PEM certificate: "),
        "{err}"
    );
    let cut = &issued.pem[..issued.pem.len() - 10];
    assert!(matches!(
        pki::certificate_der_from_pem(cut),
        Err(pki::PemError::Malformed(_))
    ));
}

#[test]
fn certificate_follows_the_documented_profile() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=beta");
    assert_eq!(cert.issuer().to_string(), "CN=meshd CA, O=friends");
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::DNSName("beta.meshd.invalid")]
    );
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
    assert!(!cert.is_ca());
    let ours: Vec<_> = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string().starts_with("2.25") || e.oid.iter().is_none())
        .collect();
    assert_eq!(ours.len(), 1);
    assert!(!ours[0].critical);
    // The certificate really is signed by the CA, with the real OID in place.
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    assert!(MESHD_IDENTITY_OID.starts_with("2.25."));
}

#[test]
fn openssl_reads_the_certificate() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let dir = std::env::temp_dir().join(format!("pki-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.crt");
    std::fs::write(&path, &issued.pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output();
    std::fs::remove_dir_all(&dir).unwrap();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("openssl not installed; skipping");
            return;
        }
        Err(e) => panic!("running openssl: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("PKI_SHOW_OPENSSL").is_some() {
        eprintln!("{text}");
    }
    assert!(text.contains(MESHD_IDENTITY_OID), "OID not shown:\n{text}");
    assert!(text.contains("DNS:beta.meshd.invalid"), "{text}");
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
}

#[test]
fn identity_comes_from_the_ca_not_the_csr() {
    let ca = ca();
    let key = NodeKeyPair::generate().unwrap();
    // The joiner asks for another name; the CA's decision wins.
    let csr = key.csr("mallory").unwrap();
    let issued = ca
        .issue_node_certificate(&csr, &spoke_identity(), NOW, Duration::days(1))
        .unwrap();
    let parsed = NodeCertificate::parse(&issued.der).unwrap();
    assert_eq!(parsed.identity.name, "beta");
    assert_eq!(parsed.identity.role, NodeRole::Spoke);
}

#[test]
fn bad_csrs_are_rejected() {
    let ca = ca();
    let id = spoke_identity();
    let key = NodeKeyPair::generate().unwrap();
    let csr = key.csr("beta").unwrap();

    let err = ca
        .issue_node_certificate("nonsense", &id, NOW, Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::Csr(_)), "{err}");

    // Flip one byte of the signature (the last bytes of the DER).
    let block = pem::parse(&csr).unwrap();
    let mut der = block.contents().to_vec();
    let n = der.len();
    der[n - 3] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let err = ca
        .issue_node_certificate(&tampered, &id, NOW, Duration::days(1))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate signing request rejected: its signature does not verify"
    );

    // A P-384 key is refused with a message that says so.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let other = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&p384)
        .unwrap()
        .pem()
        .unwrap();
    let err = ca
        .issue_node_certificate(&other, &id, NOW, Duration::days(1))
        .unwrap_err();
    assert!(err.to_string().contains("not ECDSA P-256"), "{err}");
}

#[test]
fn invalid_identity_and_expired_ca_are_rejected() {
    let ca = ca();
    let key = NodeKeyPair::generate().unwrap();
    let csr = key.csr("beta").unwrap();
    let mut id = spoke_identity();
    id.lan_prefixes = vec!["192.168.42.7/24".parse().unwrap()];
    let err = ca
        .issue_node_certificate(&csr, &id, NOW, Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::Identity(_)), "{err}");

    let later = NOW + Duration::days(4000);
    let err = ca
        .issue_node_certificate(&csr, &spoke_identity(), later, Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::CaExpired(_)), "{err}");

    // Validity is cut at the CA's expiry.
    let near_end = ca.not_after() - Duration::days(1);
    let issued = ca
        .issue_node_certificate(&csr, &spoke_identity(), near_end, Duration::days(30))
        .unwrap();
    assert_eq!(issued.not_after, ca.not_after());
}

#[test]
fn wireguard_key_crafted_to_hold_the_placeholder_is_refused() {
    // The placeholder OID TLV: 06 13 69 followed by the two arcs' base-128 digits.
    let ca = ca();
    let placeholder = yasna::construct_der(|w| {
        w.write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
            2,
            25,
            0x8000_6d65_7368_6431,
            0x0070_6c61_6365_686f,
        ]))
    });
    let mut id = spoke_identity();
    id.wireguard_key[..placeholder.len()].copy_from_slice(&placeholder);
    let key = NodeKeyPair::generate().unwrap();
    let err = ca
        .issue_node_certificate(&key.csr("beta").unwrap(), &id, NOW, Duration::days(1))
        .unwrap_err();
    assert!(matches!(err, PkiError::PlaceholderCollision), "{err}");
}

#[test]
fn certificate_without_extension_is_reported() {
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let err = NodeCertificate::parse(plain.der()).unwrap_err();
    assert!(matches!(err, PkiError::MissingExtension), "{err}");
    let err = NodeCertificate::parse(b"\x30\x03\x02\x01\x01").unwrap_err();
    assert!(matches!(err, PkiError::MalformedCertificate(_)), "{err}");
}

#[test]
fn a_ca_reloaded_from_pem_issues_verifiable_certificates() {
    let original = ca();
    let pem = original.to_pem();
    let reloaded = pki::CertificateAuthority::from_pem(&pem.certificate, &pem.private_key).unwrap();
    let issued = issue(&reloaded, &spoke_identity());
    pki::verify_node_certificate(&issued.der, original.cert_der(), None, NOW).unwrap();
    let crl = reloaded
        .issue_crl(&[], 3, NOW, NOW + Duration::days(1))
        .unwrap();
    let crl = pki::Crl::parse(&crl, original.cert_der()).unwrap();
    assert_eq!(crl.crl_number(), 3);
}

#[test]
fn a_node_certificate_cannot_be_loaded_as_the_ca() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let err =
        pki::CertificateAuthority::from_pem(&issued.pem, &ca.to_pem().private_key).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
}

#[test]
fn a_requests_public_key_is_the_one_its_certificate_gets() {
    let key = NodeKeyPair::generate().unwrap();
    let other = NodeKeyPair::generate().unwrap();
    let csr = key.csr("beta").unwrap();
    let asked = pki::csr_public_key_der(&csr).unwrap();
    assert_eq!(asked, key.public_key_der());
    assert_ne!(asked, other.public_key_der());
    let issued = issue_from(&csr);
    assert_eq!(
        NodeCertificate::parse(&issued).unwrap().public_key_der,
        asked
    );
    assert!(matches!(
        pki::csr_public_key_der("not a request"),
        Err(PkiError::Csr(_))
    ));
}

fn issue_from(csr: &str) -> Vec<u8> {
    ca().issue_node_certificate(csr, &spoke_identity(), NOW, Duration::days(1))
        .unwrap()
        .der
}
