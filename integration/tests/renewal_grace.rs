//! A node that was off past its certificate's expiry comes back, no root: the CA holder
//! `alpha` admits the core `beta` with a certificate valid for a few seconds (the
//! `certificate_validity` test setting; real certificates last 90 days), beta stays off until
//! that certificate has expired, then starts: it renews within the grace window under its name,
//! prefixes and keys, and the mesh takes it back (packets flow between the two). Then a CA
//! holder with a window shorter than the time `gamma` was off refuses gamma's renewal, saying
//! why, and gamma's certificate stays the one it had.

use std::time::Duration;

use integration::admission::{admit, endpoint, init, node_certificate, renewed_certificate};
use integration::logs;
use integration::mesh::{assert_round_trip, start, start_tuned};
use time::OffsetDateTime;

/// Validity of the certificate beta joins with.
const SHORT: time::Duration = time::Duration::seconds(3);
/// Bound for beta to renew after it starts (the first attempt is at once).
const RENEWED_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_off_past_its_expiry_renews_within_the_grace_and_keeps_its_name_and_prefixes() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();

    init(d, "alpha", &endpoint(91));
    let alpha = start_tuned(d, "alpha", "127.0.0.91", |settings| {
        settings.certificate_validity = SHORT;
    })
    .await;
    let beta_lan = ["--role", "core", "--route", "192.168.77.0/24"];
    admit(d, "alpha", "beta", &beta_lan, Some(&endpoint(92))).await;
    admit(
        d,
        "alpha",
        "gamma",
        &["--role", "core"],
        Some(&endpoint(93)),
    )
    .await;
    let first = node_certificate(d, "beta");
    assert!(first.not_after <= OffsetDateTime::now_utc() + SHORT);
    // The CA holder again with the usual validity, so the renewed certificate lasts.
    alpha.stop().await;
    let mut alpha = start(d, "alpha", "127.0.0.91").await;

    // beta is off until its certificate has expired.
    let wait = first.not_after - OffsetDateTime::now_utc() + time::Duration::seconds(1);
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    assert!(first.not_after < OffsetDateTime::now_utc());
    let mark = logs.mark();
    let mut beta = start(d, "beta", "127.0.0.92").await;

    let renewed = renewed_certificate(d, "beta", &first, RENEWED_WITHIN)
        .await
        .unwrap_or_else(|| {
            panic!(
                "beta did not renew its expired certificate within {RENEWED_WITHIN:?}: {:?}",
                logs.matching_since(mark, &["renewal"])
            )
        });
    // Same name, role, prefixes, approved LAN, WireGuard key and TLS key: the CA's record.
    assert_eq!(renewed.identity, first.identity);
    assert_eq!(
        renewed.identity.lan_prefixes,
        ["192.168.77.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(renewed.public_key_der, first.public_key_der);
    assert!(renewed.not_after > OffsetDateTime::now_utc() + time::Duration::days(80));

    // Both sides say what happened.
    let node_side = logs.matching_since(mark, &["renewing within the grace window (until"]);
    assert!(
        !node_side.is_empty(),
        "{:?}",
        logs.matching_since(mark, &["expired"])
    );
    let ca_side = logs.matching_since(
        mark,
        &["renewing an expired certificate within the grace window"],
    );
    assert!(
        !ca_side.is_empty(),
        "{:?}",
        logs.matching_since(mark, &["renew"])
    );

    // The mesh takes it back.
    assert_round_trip(
        &mut beta,
        &mut alpha,
        "after the renewal of an expired certificate",
    )
    .await;

    // gamma was off past the window of this CA holder (a second, for the test).
    alpha.stop().await;
    let alpha = start_tuned(d, "alpha", "127.0.0.91", |settings| {
        settings.renewal_grace = time::Duration::seconds(1);
    })
    .await;
    let expired = node_certificate(d, "gamma");
    let mark = logs.mark();
    let gamma = start(d, "gamma", "127.0.0.93").await;
    let deadline = tokio::time::Instant::now() + RENEWED_WITHIN;
    let refused = loop {
        // The CA holder's TLS refusals are throttled (gamma's member dials come first), so
        // its reason shows either in the handshake line or in the renewal's refusal.
        let ca_side: Vec<String> = logs
            .matching_since(mark, &["alpha"])
            .into_iter()
            .chain(logs.matching_since(mark, &["refused in the TLS handshake"]))
            .filter(|l| {
                l.contains("grace window ended") || l.contains("refused in the TLS handshake")
            })
            .collect();
        let node_side = logs.matching_since(mark, &["certificate renewal failed", "grace window"]);
        if !ca_side.is_empty() && !node_side.is_empty() {
            break (ca_side, node_side);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal past the grace window within {RENEWED_WITHIN:?}: {:?}",
            logs.matching_since(mark, &["renew"])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refused
            .1
            .iter()
            .all(|l| l.contains("grace window") && !l.contains("renewed serial")),
        "{refused:?}"
    );
    assert_eq!(node_certificate(d, "gamma").serial, expired.serial);

    gamma.stop().await;
    beta.stop().await;
    alpha.stop().await;
}
