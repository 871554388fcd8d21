//! Rekeying under load, in network namespaces (needs root): two cores, alpha (the CA) and
//! beta, joined with a real token, run iperf3 (TCP, alpha to beta, 45 s) through the tunnel
//! while `meshd rekey` is called every 5 s, alternating alpha and beta. Checks that iperf3
//! succeeds, that no one-second interval carried nothing (the old session keeps traffic
//! going while each new handshake is in flight), and that every rekey completed a handshake
//! on both sides (`handshakes` in `meshd peers --json`). Prints the figures.

#[path = "member_node.rs"]
mod member_node;

use std::time::{Duration, Instant};

use member_node::{Node, two_cores, underlay};
use meshd::api::report::PeersReport;
use netns_tests::{require_root, run_with_timeout, wait_until};

/// Seconds of iperf3.
const IPERF_SECONDS: u64 = 45;
/// How often a rekey is asked for.
const REKEY_EVERY: Duration = Duration::from_secs(5);
/// Rekeys during the run: at 5, 10, ... 40 s, leaving the last seconds to measure.
const REKEYS: u64 = 8;

/// `handshakes` and `last_handshake_seconds_ago` of `node`'s peer `peer`.
fn handshakes(node: &Node, peer: &str) -> (u64, Option<u64>) {
    let json = node.meshd(&["peers", "--json"]);
    let report: PeersReport =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}: {json}", node.name));
    let entry = report
        .peers
        .iter()
        .find(|p| p.name == peer)
        .unwrap_or_else(|| panic!("{} has no peer {peer}: {json}", node.name));
    (entry.handshakes, entry.last_handshake_seconds_ago)
}

#[test]
fn traffic_keeps_flowing_while_both_sides_rekey_every_five_seconds() {
    if !require_root("traffic_keeps_flowing_while_both_sides_rekey_every_five_seconds") {
        return;
    }
    let isp = underlay("rk-isp");
    let (alpha, beta) = two_cores(&isp, "rk");
    let [beta_v4, _] = beta.overlay();
    let _server = beta.iperf3_server(beta_v4);
    let before = (handshakes(&alpha, "beta").0, handshakes(&beta, "alpha").0);

    let alpha_ns = alpha.namespace.name().to_owned();
    let seconds = IPERF_SECONDS.to_string();
    let server = beta_v4.to_string();
    // (which side asked, how long until its handshake count moved)
    let mut completed: Vec<(&str, Duration)> = Vec::new();
    let iperf = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            run_with_timeout(
                "ip",
                &[
                    "netns", "exec", &alpha_ns, "iperf3", "-c", &server, "-t", &seconds, "-i", "1",
                    "-J",
                ],
                Duration::from_secs(IPERF_SECONDS + 30),
            )
        });
        let started = Instant::now();
        for n in 1..=REKEYS {
            let at = REKEY_EVERY * u32::try_from(n).unwrap();
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            // Alternate: alpha first, then beta, ...
            let (side, peer, name) = if n % 2 == 1 {
                (&alpha, "beta", "alpha")
            } else {
                (&beta, "alpha", "beta")
            };
            let count = handshakes(side, peer).0;
            let asked = Instant::now();
            let out = side.meshd(&["rekey", peer]);
            assert!(
                out.contains(&format!("{peer}: handshake initiation sent")),
                "{name}: {out}"
            );
            let done = wait_until(Duration::from_secs(4), || handshakes(side, peer).0 > count);
            assert!(
                done,
                "{name}'s rekey {n} with {peer} completed no handshake within 4 s:\n{}",
                side.log()
            );
            completed.push((name, asked.elapsed()));
        }
        client.join().expect("iperf3 thread")
    });
    let output = iperf.unwrap_or_else(|error| {
        panic!(
            "iperf3 failed during the rekeys: {error}\nalpha:\n{}\nbeta:\n{}",
            alpha.log(),
            beta.log()
        )
    });
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("iperf3 -J output");
    let intervals: Vec<(f64, u64)> = json["intervals"]
        .as_array()
        .expect("iperf3 intervals")
        .iter()
        .map(|i| {
            (
                i["sum"]["start"].as_f64().unwrap_or(0.0),
                i["sum"]["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let after = (handshakes(&alpha, "beta").0, handshakes(&beta, "alpha").0);
    let received = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let min = intervals.iter().map(|(_, b)| *b).min().unwrap_or(0);
    let max = intervals.iter().map(|(_, b)| *b).max().unwrap_or(0);
    let slowest = completed.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "rekey under load: {} intervals, bytes per 1 s interval min {min} max {max}; \
         {:.0} Mbit/s received; handshakes alpha->beta {} -> {}, beta->alpha {} -> {}; \
         {} rekeys, slowest seen complete after {slowest:?}",
        intervals.len(),
        received / 1e6,
        before.0,
        after.0,
        before.1,
        after.1,
        completed.len(),
    );
    assert!(
        intervals.len() as u64 >= IPERF_SECONDS - 1,
        "iperf3 reported {} intervals",
        intervals.len()
    );
    let empty: Vec<f64> = intervals
        .iter()
        .filter(|(_, bytes)| *bytes == 0)
        .map(|(start, _)| *start)
        .collect();
    assert!(
        empty.is_empty(),
        "no bytes in the intervals starting at {empty:?} s"
    );
    // Every rekey is a completed handshake on both sides, whoever asked for it.
    assert!(
        after.0 - before.0 >= REKEYS && after.1 - before.1 >= REKEYS,
        "handshakes {before:?} -> {after:?}, {REKEYS} rekeys asked for"
    );
    let rekey_lines = alpha.log().matches("rekey requested").count()
        + beta.log().matches("rekey requested").count();
    assert!(
        rekey_lines as u64 >= REKEYS,
        "{rekey_lines} `rekey requested` log lines"
    );
}
