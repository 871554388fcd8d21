//! The CA holder's admission and renewal decisions (meshd::control::admission) on a real
//! state directory that `meshd init` and `meshd invite` prepared.

use meshd::commands::run_captured;
use meshd::control::admission::{MeshFacts, RenewalTerms, admit, renew};
use meshd::control::message::JoinRequest;
use meshd::state::StateDir;
use pki::{InvitationToken, NodeCertificate, NodeKeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

const VALIDITY: Duration = Duration::days(1);
const TERMS: RenewalTerms = RenewalTerms {
    validity: VALIDITY,
    grace: meshd::identity::RENEWAL_GRACE,
};

/// Runs a meshd command on the state and config in `dir`.
fn meshd(dir: &std::path::Path, args: &[&str]) -> String {
    run_captured(&dir.join("meshd.toml"), &dir.join("state"), args).unwrap()
}

/// A CA holder `alpha` that admitted core `beta`: its state, beta's key and certificate.
fn admitted() -> (tempfile::TempDir, StateDir, NodeKeyPair, NodeCertificate) {
    let dir = tempfile::tempdir().unwrap();
    meshd(
        dir.path(),
        &["init", "--name", "alpha", "--endpoint", "127.0.0.1:51820"],
    );
    let token = meshd(dir.path(), &["invite", "beta", "--role", "core"]);
    let token = InvitationToken::parse(token.trim()).unwrap();
    let key = NodeKeyPair::generate().unwrap();
    let request = JoinRequest {
        name: "beta".into(),
        secret: token.secret,
        csr_pem: key.csr("beta").unwrap(),
        wireguard_key: [7; 32],
        endpoints: vec![],
        hosted_by: None,
    };
    let facts = MeshFacts {
        asn: 64512,
        certificate_validity: VALIDITY,
        members: vec![],
        crl: None,
    };
    let state = StateDir::new(dir.path().join("state"));
    let accepted = admit(&state, &request, facts, OffsetDateTime::now_utc()).unwrap();
    let der = CertificateDer::from_pem_slice(accepted.certificate_pem.as_bytes()).unwrap();
    let cert = NodeCertificate::parse(&der).unwrap();
    (dir, state, key, cert)
}

#[test]
fn a_renewal_keeps_identity_and_key_and_is_recorded() {
    let (_dir, state, key, current) = admitted();
    let later = OffsetDateTime::now_utc() + Duration::hours(16);
    let issued = renew(&state, &current, &key.csr("beta").unwrap(), later, TERMS).unwrap();
    let renewed = NodeCertificate::parse(&issued.der).unwrap();
    assert_eq!(renewed.identity, current.identity);
    assert_eq!(renewed.public_key_der, current.public_key_der);
    assert_ne!(renewed.serial, current.serial);
    assert!(renewed.not_after > current.not_after);
    let db = state.read_ca_db().unwrap();
    let serials: Vec<_> = db
        .certificates
        .iter()
        .filter(|c| c.name == "beta")
        .map(|c| c.serial.clone())
        .collect();
    assert_eq!(serials, [current.serial, renewed.serial]);
}

#[test]
fn an_expired_certificate_is_renewed_within_the_grace_window_for_what_the_ca_recorded() {
    let (dir, state, key, current) = admitted();
    // Three months after its expiry: renewed, same name, prefixes, WireGuard key and key.
    let later = current.not_after + Duration::days(90);
    let issued = renew(&state, &current, &key.csr("beta").unwrap(), later, TERMS).unwrap();
    let renewed = NodeCertificate::parse(&issued.der).unwrap();
    assert_eq!(renewed.identity, current.identity);
    assert_eq!(renewed.public_key_der, current.public_key_der);
    assert_eq!(renewed.not_after, later + VALIDITY);
    // For another key: refused, expired or not.
    let other = NodeKeyPair::generate().unwrap();
    let refusal = renew(&state, &current, &other.csr("beta").unwrap(), later, TERMS)
        .unwrap_err()
        .0;
    assert!(refusal.contains("another key"), "{refusal}");
    // Past the window: refused, saying what to do, and nothing recorded.
    let before = state.read_ca_db().unwrap();
    let beyond = current.not_after + TERMS.grace + Duration::seconds(1);
    let refusal = renew(&state, &current, &key.csr("beta").unwrap(), beyond, TERMS)
        .unwrap_err()
        .0;
    assert!(
        refusal.contains("grace window ended") && refusal.contains("meshd ca free-name beta"),
        "{refusal}"
    );
    assert_eq!(state.read_ca_db().unwrap(), before);
    // Revoked: refused as revoked, within the window.
    meshd(dir.path(), &["revoke", "beta"]);
    let refusal = renew(&state, &current, &key.csr("beta").unwrap(), later, TERMS)
        .unwrap_err()
        .0;
    assert!(refusal.contains("is revoked"), "{refusal}");
}

#[test]
fn a_renewal_for_another_key_is_refused() {
    let (_dir, state, _key, current) = admitted();
    let other = NodeKeyPair::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let refusal = renew(&state, &current, &other.csr("beta").unwrap(), now, TERMS)
        .unwrap_err()
        .0;
    assert!(refusal.contains("another key"), "{refusal}");
}

#[test]
fn a_revoked_node_cannot_renew_and_nothing_is_issued() {
    let (dir, state, key, current) = admitted();
    meshd(dir.path(), &["revoke", "beta"]);
    let before = state.read_ca_db().unwrap();
    let now = OffsetDateTime::now_utc();
    let refusal = renew(&state, &current, &key.csr("beta").unwrap(), now, TERMS)
        .unwrap_err()
        .0;
    assert!(
        refusal.contains(&format!(
            "certificate {} of beta is revoked",
            current.serial
        )),
        "{refusal}"
    );
    assert_eq!(state.read_ca_db().unwrap(), before);
}

#[test]
fn a_certificate_this_ca_did_not_issue_is_not_renewed() {
    let (_dir, state, key, mut current) = admitted();
    current.serial = pki::SerialNumber::from_bytes(&[1, 2, 3]);
    let now = OffsetDateTime::now_utc();
    let refusal = renew(&state, &current, &key.csr("beta").unwrap(), now, TERMS)
        .unwrap_err()
        .0;
    assert!(refusal.contains("no record of issuing"), "{refusal}");
}

/// A foreign router's token is redeemed by its core alone, and the certificate says foreign;
/// an ordinary token cannot be redeemed as a foreign router.
#[test]
fn a_foreign_router_is_admitted_only_through_its_core() {
    let (dir, state, _key, _beta) = admitted();
    let facts = || MeshFacts {
        asn: 64512,
        certificate_validity: VALIDITY,
        members: vec![],
        crl: None,
    };
    let token = meshd(
        dir.path(),
        &[
            "invite",
            "mikro",
            "--role",
            "spoke",
            "--core",
            "alpha",
            "--foreign",
            "--route",
            "192.168.77.0/24",
        ],
    );
    let token = InvitationToken::parse(token.trim()).unwrap();
    let key = NodeKeyPair::generate().unwrap();
    let request = |hosted_by: Option<&str>| JoinRequest {
        name: "mikro".into(),
        secret: token.secret.clone(),
        csr_pem: key.csr("mikro").unwrap(),
        wireguard_key: [9; 32],
        endpoints: vec![],
        hosted_by: hosted_by.map(str::to_owned),
    };
    let now = OffsetDateTime::now_utc();
    let refused = |hosted_by| {
        admit(&state, &request(hosted_by), facts(), now)
            .unwrap_err()
            .0
    };
    let by_itself = refused(None);
    assert!(
        by_itself.contains("`meshd router add TOKEN` on alpha"),
        "{by_itself}"
    );
    let by_other = refused(Some("beta"));
    assert!(
        by_other.contains("hosted by alpha, not by beta"),
        "{by_other}"
    );

    let accepted = admit(&state, &request(Some("alpha")), facts(), now).unwrap();
    let der = CertificateDer::from_pem_slice(accepted.certificate_pem.as_bytes()).unwrap();
    let cert = NodeCertificate::parse(&der).unwrap();
    assert!(cert.identity.foreign);
    assert_eq!(cert.identity.core.as_deref(), Some("alpha"));
    assert_eq!(cert.identity.wireguard_key, [9; 32]);
    assert_eq!(
        cert.identity.lan_prefixes,
        ["192.168.77.0/24".parse().unwrap()]
    );

    let token = meshd(
        dir.path(),
        &["invite", "plain", "--role", "spoke", "--core", "alpha"],
    );
    let token = InvitationToken::parse(token.trim()).unwrap();
    let request = JoinRequest {
        name: "plain".into(),
        secret: token.secret,
        csr_pem: key.csr("plain").unwrap(),
        wireguard_key: [8; 32],
        endpoints: vec![],
        hosted_by: Some("alpha".into()),
    };
    let refusal = admit(&state, &request, facts(), now).unwrap_err().0;
    assert!(refusal.contains("invite it with --foreign"), "{refusal}");
}
