//! Verification of node certificates: each way a certificate can be unacceptable.

mod common;

use ::time::Duration;
use common::{NOW, ca, issue, spoke_identity};
use pki::{
    CertificateAuthority, Crl, NodeKeyPair, PkiError, RevokedEntry, VerifyError,
    verify_node_certificate, verify_node_certificate_for_renewal,
};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[test]
fn a_good_certificate_verifies() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let node = verify_node_certificate(&issued.der, ca.cert_der(), None, NOW).unwrap();
    assert_eq!(node.identity, spoke_identity());
    assert_eq!(node.serial, issued.serial);
    // Still good just before expiry and just after issue (clock skew allowance).
    let end = NOW + Duration::days(30) - Duration::seconds(1);
    verify_node_certificate(&issued.der, ca.cert_der(), None, end).unwrap();
    verify_node_certificate(&issued.der, ca.cert_der(), None, NOW - Duration::minutes(4)).unwrap();
}

#[test]
fn expired_and_not_yet_valid_are_distinct() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let err = verify_node_certificate(&issued.der, ca.cert_der(), None, NOW + Duration::days(31))
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Expired {
            not_after: NOW + Duration::days(30)
        }
    );
    let err = verify_node_certificate(&issued.der, ca.cert_der(), None, NOW - Duration::hours(1))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
}

#[test]
fn a_certificate_from_another_ca_is_rejected() {
    let ours = ca();
    // Same mesh name, so the issuer names are identical: only the key tells them apart.
    let theirs = CertificateAuthority::create("friends", NOW, Duration::days(10)).unwrap();
    let issued = issue(&theirs, &spoke_identity());
    let err = verify_node_certificate(&issued.der, ours.cert_der(), None, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownIssuer { .. }), "{err}");

    let other_mesh = CertificateAuthority::create("strangers", NOW, Duration::days(10)).unwrap();
    let issued = issue(&other_mesh, &spoke_identity());
    let err = verify_node_certificate(&issued.der, ours.cert_der(), None, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate was issued by \"CN=meshd CA, O=strangers\", not by this mesh's CA"
    );
}

#[test]
fn tampering_breaks_the_signature() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());

    // A byte of the signature (the last bytes of the certificate).
    let mut sig = issued.der.clone();
    let n = sig.len();
    sig[n - 5] ^= 0x01;
    let err = verify_node_certificate(&sig, ca.cert_der(), None, NOW).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);

    // A byte inside the to-be-signed part: the WireGuard key in our extension.
    let mut tbs = issued.der.clone();
    let at = tbs.windows(32).position(|w| w == [0x5a; 32]).unwrap();
    tbs[at] ^= 0xff;
    let err = verify_node_certificate(&tbs, ca.cert_der(), None, NOW).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);

    // The subject name.
    let mut subject = issued.der.clone();
    let at = subject.windows(4).position(|w| w == b"beta").unwrap();
    subject[at] = b'z';
    let err = verify_node_certificate(&subject, ca.cert_der(), None, NOW).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);

    // Truncation is malformed, not a panic.
    let err = verify_node_certificate(&issued.der[..100], ca.cert_der(), None, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed(_)), "{err}");
}

#[test]
fn revoked_certificates_are_rejected() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let other = issue(&ca, &spoke_identity());
    let entries = [RevokedEntry {
        serial: issued.serial.clone(),
        revoked_at: NOW + Duration::hours(1),
    }];
    let crl = ca
        .issue_crl(
            &entries,
            1,
            NOW + Duration::hours(1),
            NOW + Duration::days(7),
        )
        .unwrap();
    let later = NOW + Duration::hours(2);
    let err = verify_node_certificate(&issued.der, ca.cert_der(), Some(&crl), later).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Revoked {
            serial: issued.serial.clone()
        }
    );
    verify_node_certificate(&other.der, ca.cert_der(), Some(&crl), later).unwrap();
    // A stale CRL still revokes.
    let much_later = NOW + Duration::days(20);
    let err =
        verify_node_certificate(&issued.der, ca.cert_der(), Some(&crl), much_later).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
}

#[test]
fn a_crl_from_another_ca_is_not_trusted() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let theirs = CertificateAuthority::create("friends", NOW, Duration::days(10)).unwrap();
    let crl = theirs
        .issue_crl(&[], 1, NOW, NOW + Duration::days(7))
        .unwrap();
    let err = verify_node_certificate(&issued.der, ca.cert_der(), Some(&crl), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::InvalidCrl(_)), "{err}");
}

/// Signs a certificate with the mesh CA's key but a profile of the test's choosing, the way a
/// buggy or hostile issuer might. The meshd extension is left out; usage checks come first.
fn issue_with_usages(
    ca: &CertificateAuthority,
    ku: Vec<KeyUsagePurpose>,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> Vec<u8> {
    let pem = ca.to_pem();
    let ca_key = KeyPair::from_pem(&pem.private_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pem.certificate, ca_key).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "beta");
    params.distinguished_name = dn;
    params.not_before = NOW - Duration::hours(1);
    params.not_after = NOW + Duration::days(1);
    params.key_usages = ku;
    params.extended_key_usages = eku;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &issuer).unwrap().der().to_vec()
}

#[test]
fn wrong_key_usage_is_rejected() {
    use ExtendedKeyUsagePurpose::*;
    let ca = ca();
    let sig = vec![KeyUsagePurpose::DigitalSignature];
    let cases = [
        (sig.clone(), vec![CodeSigning]),
        (sig.clone(), vec![]),
        (sig.clone(), vec![ServerAuth]),
        (sig.clone(), vec![ClientAuth]),
        (
            vec![KeyUsagePurpose::KeyEncipherment],
            vec![ServerAuth, ClientAuth],
        ),
        (vec![], vec![ServerAuth, ClientAuth]),
    ];
    for (ku, eku) in cases {
        let der = issue_with_usages(&ca, ku.clone(), eku.clone());
        let err = verify_node_certificate(&der, ca.cert_der(), None, NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::WrongKeyUsage(_)),
            "{ku:?} {eku:?}: {err}"
        );
    }
    // With the right usages but no meshd extension, the missing extension is what's reported.
    let der = issue_with_usages(&ca, sig, vec![ServerAuth, ClientAuth]);
    let err = verify_node_certificate(&der, ca.cert_der(), None, NOW).unwrap_err();
    assert_eq!(err, VerifyError::MissingExtension);
}

#[test]
fn the_ca_certificate_itself_is_not_a_node() {
    let ca = ca();
    let err = verify_node_certificate(ca.cert_der(), ca.cert_der(), None, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::WrongKeyUsage(_) | VerifyError::UnknownIssuer { .. }
        ),
        "{err}"
    );
}

#[test]
fn crl_round_trip() {
    let ca = ca();
    let entries = vec![
        RevokedEntry {
            serial: "4a01".parse().unwrap(),
            revoked_at: NOW,
        },
        RevokedEntry {
            serial: "7fffffffffffffffffffffffffffffff".parse().unwrap(),
            revoked_at: NOW + Duration::seconds(1),
        },
    ];
    let der = ca
        .issue_crl(&entries, 42, NOW, NOW + Duration::days(7))
        .unwrap();
    let crl = Crl::parse(&der, ca.cert_der()).unwrap();
    assert_eq!(crl.crl_number(), 42);
    assert_eq!(crl.this_update(), NOW);
    assert_eq!(crl.next_update(), NOW + Duration::days(7));
    assert!(crl.is_revoked(&entries[0].serial));
    assert_eq!(
        crl.revoked_at(&entries[1].serial),
        Some(entries[1].revoked_at)
    );
    assert!(!crl.is_revoked(&"4a02".parse().unwrap()));
    assert_eq!(crl.entries().collect::<Vec<_>>(), entries);
    assert!(!crl.is_stale(NOW + Duration::days(7)));
    assert!(crl.is_stale(NOW + Duration::days(8)));
    assert_eq!(crl.der(), der.as_slice());

    let empty = ca.issue_crl(&[], 0, NOW, NOW + Duration::days(1)).unwrap();
    let empty = Crl::parse(&empty, ca.cert_der()).unwrap();
    assert_eq!(empty.entries().count(), 0);
    assert_eq!(empty.crl_number(), 0);
}

#[test]
fn bad_crls_are_rejected() {
    let ca = ca();
    let der = ca.issue_crl(&[], 1, NOW, NOW + Duration::days(7)).unwrap();
    let mut tampered = der.clone();
    let n = tampered.len();
    tampered[n - 4] ^= 1;
    let err = Crl::parse(&tampered, ca.cert_der()).unwrap_err();
    assert!(matches!(err, PkiError::Crl(_)), "{err}");
    assert!(Crl::parse(&der[..der.len() - 1], ca.cert_der()).is_err());
    assert!(Crl::parse(b"junk", ca.cert_der()).is_err());

    let other = CertificateAuthority::create("strangers", NOW, Duration::days(1)).unwrap();
    let err = Crl::parse(&der, other.cert_der()).unwrap_err();
    assert!(err.to_string().contains("not by this mesh's CA"), "{err}");

    let dup = RevokedEntry {
        serial: "01".parse().unwrap(),
        revoked_at: NOW,
    };
    assert!(
        ca.issue_crl(&[dup.clone(), dup], 2, NOW, NOW + Duration::days(1))
            .is_err()
    );
    assert!(ca.issue_crl(&[], 2, NOW, NOW).is_err());
}

#[test]
fn a_crl_whose_unsigned_algorithm_field_was_damaged_is_rejected() {
    // Found by the mutation property test: x509-parser tolerated a wrong tag on the OID of
    // the outer signatureAlgorithm, which the signature does not cover.
    let ca = ca();
    let der = ca.issue_crl(&[], 1, NOW, NOW + Duration::days(7)).unwrap();
    let ecdsa_sha256 = [
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    let outer = der
        .windows(ecdsa_sha256.len())
        .rposition(|w| w == ecdsa_sha256)
        .expect("the CRL names ECDSA with SHA-256");
    let mut damaged = der.clone();
    damaged[outer + 2] = 0x40;
    let err = Crl::parse(&damaged, ca.cert_der()).unwrap_err();
    assert!(
        err.to_string().contains("outer signature algorithm"),
        "{err}"
    );
    assert!(Crl::parse(&der, ca.cert_der()).is_ok());
}

#[test]
fn node_key_from_pem_still_matches_its_certificate() {
    // The agent stores node.key and node.crt separately; a reload must pair them again.
    let ca = ca();
    let key = NodeKeyPair::generate().unwrap();
    let reloaded = NodeKeyPair::from_pem(&key.to_pem()).unwrap();
    let issued = ca
        .issue_node_certificate(
            &reloaded.csr("beta").unwrap(),
            &spoke_identity(),
            NOW,
            Duration::days(1),
        )
        .unwrap();
    let node = verify_node_certificate(&issued.der, ca.cert_der(), None, NOW).unwrap();
    assert_eq!(node.public_key_der, key.public_key_der());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// One CA, certificate and CRL shared by all cases (key generation is the slow part).
    fn fixture() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
        static FIXTURE: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let ca = ca();
            let cert = issue(&ca, &spoke_identity());
            let entry = RevokedEntry {
                serial: cert.serial.clone(),
                revoked_at: NOW,
            };
            let crl = ca
                .issue_crl(&[entry], 1, NOW, NOW + Duration::days(1))
                .unwrap();
            (ca.cert_der().to_vec(), cert.der, crl)
        })
    }

    fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = *value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn mutated_certificates(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let (ca, cert, crl) = fixture();
            let bad = mutate(cert.clone(), &flips, cut);
            let _ = pki::NodeCertificate::parse(&bad);
            if let Ok(node) = verify_node_certificate(&bad, ca, None, NOW) {
                // Only an unchanged certificate may verify.
                prop_assert_eq!(&node.der, cert);
            }
            prop_assert!(verify_node_certificate(&bad, ca, Some(crl), NOW).is_err());
        }

        #[test]
        fn mutated_crls(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let (ca, cert, crl) = fixture();
            let bad = mutate(crl.clone(), &flips, cut);
            if let Ok(parsed) = Crl::parse(&bad, ca) {
                prop_assert_eq!(parsed.der(), crl.as_slice());
            }
            // Whatever the CRL, a revoked certificate never verifies.
            prop_assert!(verify_node_certificate(cert, ca, Some(&bad), NOW).is_err());
        }

        #[test]
        fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (ca, cert, _) = fixture();
            prop_assert!(verify_node_certificate(&bytes, ca, None, NOW).is_err());
            let _ = verify_node_certificate(cert, &bytes, Some(&bytes), NOW);
            let _ = Crl::parse(&bytes, ca);
        }
    }
}

#[test]
fn a_renewal_accepts_an_expired_certificate_within_the_grace_window_only() {
    let ca = ca();
    let issued = issue(&ca, &spoke_identity());
    let not_after = NOW + Duration::days(30);
    let grace = Duration::days(180);
    let check = |der: &[u8], crl: Option<&[u8]>, at| {
        verify_node_certificate_for_renewal(der, ca.cert_der(), crl, at, grace)
    };
    // Valid: as strict as ever (not yet valid is refused).
    check(&issued.der, None, NOW).unwrap();
    let err = check(&issued.der, None, NOW - Duration::hours(1)).unwrap_err();
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
    // Expired three months ago: accepted for what it said.
    let node = check(&issued.der, None, not_after + Duration::days(90)).unwrap();
    assert_eq!(node.identity, spoke_identity());
    check(&issued.der, None, not_after + grace).unwrap();
    // Past the window: refused, saying what to do.
    let err = check(&issued.der, None, not_after + grace + Duration::seconds(1)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::ExpiredBeyondGrace {
            not_after,
            grace_until: not_after + grace
        }
    );
    assert!(err.to_string().contains("meshd ca free-name"), "{err}");

    // Revoked after it expired: refused, as revoked, within the window and past it.
    let later = not_after + Duration::days(10);
    let crl = ca
        .issue_crl(
            &[RevokedEntry {
                serial: issued.serial.clone(),
                revoked_at: later,
            }],
            1,
            later,
            later + Duration::days(7),
        )
        .unwrap();
    let err = check(&issued.der, Some(&crl), later + Duration::days(1)).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");
    let err = check(&issued.der, Some(&crl), not_after + grace * 2).unwrap_err();
    assert!(matches!(err, VerifyError::Revoked { .. }), "{err}");

    // Another CA's expired certificate: refused as such.
    let theirs = CertificateAuthority::create("friends", NOW, Duration::days(10)).unwrap();
    let foreign = issue(&theirs, &spoke_identity());
    let err = check(&foreign.der, None, not_after + Duration::days(1)).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownIssuer { .. }), "{err}");
}
