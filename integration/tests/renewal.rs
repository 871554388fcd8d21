//! Certificate renewal in a running mesh, no root: the CA holder `alpha` issues certificates
//! valid for a few seconds; the core `beta` and the spoke `s1` (behind beta, so it reaches
//! the CA holder only on a renewal connection of its own) renew theirs before they expire,
//! every node takes the new membership records, and packets keep flowing past the expiry
//! of the original certificates. Then `s1` is revoked: its next renewal is refused, the
//! refusal is logged on both sides and its certificate stays the one it had.

use std::path::Path;
use std::time::Duration;

use integration::admission::{admit, endpoint, init, node_certificate, renewed_certificate, state};
use integration::logs;
use integration::mesh::{Node, assert_round_trip, meshd_async, start_tuned};
use meshd::control::store::read_members;
use pki::NodeCertificate;
use time::OffsetDateTime;

/// Validity of the certificates alpha issues: renewal is due after 7-9 s of it.
const VALIDITY: time::Duration = time::Duration::seconds(12);
/// Bound for a node to renew (the due time, plus some seconds on a loaded machine).
const RENEWED_WITHIN: Duration = Duration::from_secs(20);

/// The certificate `holder` keeps in its stored membership record of `member`.
fn certificate_held(dir: &Path, holder: &str, member: &str) -> Option<NodeCertificate> {
    read_members(&state(dir, holder))
        .expect("members.json")
        .into_iter()
        .filter_map(|r| NodeCertificate::parse(&r.certificate).ok())
        .find(|c| c.identity.name == member)
}

async fn start(dir: &Path, name: &str, ip: &str) -> Node {
    start_tuned(dir, name, ip, |settings| {
        settings.certificate_validity = VALIDITY;
    })
    .await
}

/// Waits until `name`'s node.crt is another certificate than `before`.
async fn wait_for_renewal(dir: &Path, name: &str, before: &NodeCertificate) -> NodeCertificate {
    renewed_certificate(dir, name, before, RENEWED_WITHIN)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{name} did not renew its certificate (valid until {}) within {RENEWED_WITHIN:?}",
                before.not_after
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_renew_before_expiry_without_dropping_tunnels_and_a_revoked_one_cannot() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();

    init(d, "alpha", &endpoint(81));
    let mut alpha = start(d, "alpha", "127.0.0.81").await;
    admit(d, "alpha", "beta", &["--role", "core"], Some(&endpoint(82))).await;
    admit(
        d,
        "alpha",
        "s1",
        &["--role", "spoke", "--core", "beta"],
        None,
    )
    .await;
    let first_beta = node_certificate(d, "beta");
    let first_s1 = node_certificate(d, "s1");
    let lifetime = first_beta.not_after - (first_beta.not_before + pki::CLOCK_SKEW_ALLOWANCE);
    assert!(
        lifetime <= VALIDITY,
        "joined with the short validity: {lifetime}"
    );
    let mut beta = start(d, "beta", "127.0.0.82").await;
    let mut s1 = start(d, "s1", "127.0.0.83").await;
    assert_round_trip(&mut s1, &mut beta, "spoke to its core").await;
    assert_round_trip(&mut s1, &mut alpha, "spoke to the CA holder").await;

    // Both renew before their certificates expire, for the same name, prefixes and
    // WireGuard key (the CA keeps them), and the new certificate is what node.crt holds.
    let renewed_beta = wait_for_renewal(d, "beta", &first_beta).await;
    let renewed_s1 = wait_for_renewal(d, "s1", &first_s1).await;
    for (first, renewed) in [(&first_beta, &renewed_beta), (&first_s1, &renewed_s1)] {
        assert_eq!(renewed.identity, first.identity);
        assert_eq!(renewed.public_key_der, first.public_key_der);
        assert!(renewed.not_after > first.not_after);
    }

    // Past the expiry of the first certificates: every node holds the renewed records (a
    // node still holding an expired one would have dropped the member and its tunnel), and
    // packets flow on the same tunnels.
    let expiry = first_beta.not_after.max(first_s1.not_after);
    let wait = expiry - OffsetDateTime::now_utc() + time::Duration::seconds(1);
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    assert_round_trip(&mut s1, &mut alpha, "after the first certificates expired").await;
    assert_round_trip(
        &mut beta,
        &mut alpha,
        "after the first certificates expired",
    )
    .await;
    for (holder, member) in [
        ("alpha", "beta"),
        ("s1", "beta"),
        ("alpha", "s1"),
        ("beta", "s1"),
    ] {
        let held = certificate_held(d, holder, member)
            .unwrap_or_else(|| panic!("{holder} holds no record of {member}"));
        let first = if member == "beta" {
            &first_beta
        } else {
            &first_s1
        };
        assert_ne!(
            held.serial, first.serial,
            "{holder} still holds the first certificate of {member}"
        );
    }
    assert!(
        logs.matching(&["certificate expired"]).is_empty(),
        "{:?}",
        logs.matching(&["certificate expired"])
    );

    // s1 is revoked: its next renewal is refused by the CA holder, and it keeps what it had.
    let mark = logs.mark();
    let out = meshd_async(d, "alpha", &["revoke", "s1"]).await;
    assert!(out.contains("Revoked s1"), "{out}");
    let before = node_certificate(d, "s1");
    let deadline = tokio::time::Instant::now() + RENEWED_WITHIN;
    let refused = loop {
        let refused = logs.matching_since(mark, &["certificate renewal failed", "alpha"]);
        if !refused.is_empty() {
            break refused;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed renewal logged within {RENEWED_WITHIN:?} after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refused[0].contains("CA holder alpha"),
        "the member's log says who refused: {refused:?}"
    );
    // The CA holder says why: in the handshake (its TLS verifier has the new revocation
    // list) or, if the request came before it loaded the list, when it checks the request.
    let ca_side: Vec<String> = logs
        .matching_since(mark, &["revoked"])
        .into_iter()
        .filter(|l| {
            l.contains("refused in the TLS handshake") || l.contains("certificate renewal refused")
        })
        .collect();
    assert!(!ca_side.is_empty(), "the CA holder logs why it refused");
    assert_eq!(node_certificate(d, "s1").serial, before.serial);
    assert_eq!(
        certificate_held(d, "alpha", "s1"),
        None,
        "alpha dropped the revoked member"
    );

    s1.stop().await;
    beta.stop().await;
    alpha.stop().await;
}
