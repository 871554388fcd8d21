//! Rekeying under load, in network namespaces (needs root). iperf3 (TCP) runs through the
//! tunnel while `meshd rekey` is called every 5 s; checks that iperf3 succeeds, that no
//! one-second interval carried nothing (the old session keeps traffic going while each new
//! handshake is in flight), and that every rekey completed a handshake (`handshakes` in
//! `meshd peers --json`). Two cases: two cores joined with a real token, rekeying in turn
//! (45 s), and meshd with wireguard-go as the other side, meshd initiating (30 s). Prints the
//! figures.

#[path = "member_node.rs"]
mod member_node;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use member_node::{Node, iperf3_server, two_cores, underlay};
use meshd::api::report::PeersReport;
use netns_tests::{Interop, require_root, run_with_timeout, wait_until};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// How often a rekey is asked for.
const REKEY_EVERY: Duration = Duration::from_secs(5);
/// How long a rekey may take to show as a completed handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);

/// `handshakes` of the peer `peer` in a `meshd peers --json` answer.
fn handshakes_in(json: &str, peer: &str) -> u64 {
    let report: PeersReport = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    report
        .peers
        .iter()
        .find(|p| p.name == peer)
        .unwrap_or_else(|| panic!("no peer {peer}: {json}"))
        .handshakes
}

fn handshakes(node: &Node, peer: &str) -> u64 {
    handshakes_in(&node.meshd(&["peers", "--json"]), peer)
}

/// What one iperf3 run under rekeys measured.
struct Run {
    /// (start second, bytes) of each 1 s interval.
    intervals: Vec<(f64, u64)>,
    bits_per_second: f64,
    /// How long each rekey took until its handshake showed.
    rekeys: Vec<Duration>,
}

impl Run {
    /// Checks iperf3's intervals and prints the figures under `label`.
    fn check(&self, label: &str, seconds: u64) {
        let min = self.intervals.iter().map(|(_, b)| *b).min().unwrap_or(0);
        let max = self.intervals.iter().map(|(_, b)| *b).max().unwrap_or(0);
        let slowest = self.rekeys.iter().max().copied().unwrap_or_default();
        eprintln!(
            "{label}: {} intervals, bytes per 1 s interval min {min} max {max}; {:.0} Mbit/s; \
             {} rekeys, slowest seen complete after {slowest:?}",
            self.intervals.len(),
            self.bits_per_second / 1e6,
            self.rekeys.len(),
        );
        assert!(
            self.intervals.len() as u64 >= seconds - 1,
            "{label}: iperf3 reported {} intervals",
            self.intervals.len()
        );
        let empty: Vec<f64> = self
            .intervals
            .iter()
            .filter(|(_, bytes)| *bytes == 0)
            .map(|(start, _)| *start)
            .collect();
        assert!(
            empty.is_empty(),
            "{label}: no bytes in the intervals starting at {empty:?} s"
        );
    }
}

/// iperf3 for `seconds` from namespace `client` to `server` while `rekey(n)` runs at n × 5 s
/// for n in 1..=`rekeys`; `rekey` asks for one and returns once its handshake shows. Panics
/// (with `logs`) if iperf3 fails.
fn iperf_under_rekeys(
    client: &str,
    server: IpAddr,
    seconds: u64,
    rekeys: u32,
    mut rekey: impl FnMut(u32),
    logs: impl Fn() -> String,
) -> Run {
    let duration = seconds.to_string();
    let server = server.to_string();
    let mut taken = Vec::new();
    let result = std::thread::scope(|scope| {
        let iperf = scope.spawn(|| {
            run_with_timeout(
                "ip",
                &[
                    "netns", "exec", client, "iperf3", "-c", &server, "-t", &duration, "-i", "1",
                    "-J",
                ],
                Duration::from_secs(seconds + 30),
            )
        });
        let started = Instant::now();
        for n in 1..=rekeys {
            std::thread::sleep((REKEY_EVERY * n).saturating_sub(started.elapsed()));
            let asked = Instant::now();
            rekey(n);
            taken.push(asked.elapsed());
        }
        iperf.join().expect("iperf3 thread")
    });
    let output = result
        .unwrap_or_else(|error| panic!("iperf3 failed during the rekeys: {error}\n{}", logs()));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("iperf3 -J output");
    let intervals = json["intervals"]
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
    Run {
        intervals,
        bits_per_second: json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0),
        rekeys: taken,
    }
}

#[test]
fn traffic_keeps_flowing_while_both_sides_rekey_every_five_seconds() {
    if !require_root("traffic_keeps_flowing_while_both_sides_rekey_every_five_seconds") {
        return;
    }
    const SECONDS: u64 = 45;
    // At 5, 10, ... 40 s, leaving the last seconds to measure.
    const REKEYS: u32 = 8;
    let isp = underlay("rk-isp");
    let (alpha, beta) = two_cores(&isp, "rk");
    let [beta_v4, _] = beta.overlay();
    let _server = beta.iperf3_server(beta_v4);
    let before = (handshakes(&alpha, "beta"), handshakes(&beta, "alpha"));

    let run = iperf_under_rekeys(
        alpha.namespace.name(),
        beta_v4,
        SECONDS,
        REKEYS,
        |n| {
            // Alternate: alpha first, then beta, ...
            let (side, peer) = if n % 2 == 1 {
                (&alpha, "beta")
            } else {
                (&beta, "alpha")
            };
            let count = handshakes(side, peer);
            let out = side.meshd(&["rekey", peer]);
            assert!(
                out.contains(&format!("{peer}: handshake initiation sent")),
                "{}: {out}",
                side.name
            );
            let done = wait_until(HANDSHAKE_TIMEOUT, || handshakes(side, peer) > count);
            assert!(
                done,
                "{}'s rekey {n} with {peer} completed no handshake within {HANDSHAKE_TIMEOUT:?}:\n{}",
                side.name,
                side.log()
            );
        },
        || format!("alpha:\n{}\nbeta:\n{}", alpha.log(), beta.log()),
    );
    let after = (handshakes(&alpha, "beta"), handshakes(&beta, "alpha"));
    eprintln!("two cores: handshakes alpha->beta {before:?} -> {after:?} (alpha's, beta's)");
    run.check("two cores", SECONDS);
    // Every rekey is a completed handshake on both sides, whoever asked for it.
    let rekeys = u64::from(REKEYS);
    assert!(
        after.0 - before.0 >= rekeys && after.1 - before.1 >= rekeys,
        "handshakes {before:?} -> {after:?}, {REKEYS} rekeys asked for"
    );
    let rekey_lines = alpha.log().matches("rekey requested").count()
        + beta.log().matches("rekey requested").count();
    assert!(
        rekey_lines as u64 >= rekeys,
        "{rekey_lines} `rekey requested` log lines"
    );
}

#[test]
fn wireguard_go_follows_the_rekeys_meshd_starts_under_load() {
    if !require_root("wireguard_go_follows_the_rekeys_meshd_starts_under_load") {
        return;
    }
    const SECONDS: u64 = 30;
    const REKEYS: u32 = 5;
    let Interop {
        ns_meshd,
        ns_wg,
        meshd,
        wg,
    } = Interop::start(Path::new(MESHD), "rkwg", true);
    let wg_v4: IpAddr = "10.2.0.1".parse().unwrap();
    assert!(
        ns_meshd.ping_until(wg_v4, Duration::from_secs(10)),
        "meshd cannot reach wireguard-go:\n{}",
        meshd.log()
    );
    let _server = iperf3_server(&ns_wg, wg_v4);
    let count = || handshakes_in(&meshd.command(&["peers", "--json"]), "wggo");
    let before = count();
    let wg_before = wg.latest_handshake(&ns_wg).expect("wireguard-go handshook");

    let run = iperf_under_rekeys(
        ns_meshd.name(),
        wg_v4,
        SECONDS,
        REKEYS,
        |n| {
            let was = count();
            let out = meshd.command(&["rekey", "wggo"]);
            assert!(out.contains("wggo: handshake initiation sent"), "{out}");
            let done = wait_until(HANDSHAKE_TIMEOUT, || count() > was);
            assert!(
                done,
                "rekey {n} with wireguard-go completed no handshake within {HANDSHAKE_TIMEOUT:?}:\n{}",
                meshd.log()
            );
        },
        || {
            format!(
                "meshd:\n{}\nwireguard-go:\n{}",
                meshd.log(),
                wg.process.log().contents()
            )
        },
    );
    let after = count();
    let wg_after = wg.latest_handshake(&ns_wg).expect("wireguard-go handshook");
    eprintln!(
        "wireguard-go: meshd's handshakes {before} -> {after}; wireguard-go's latest handshake \
         {} s later",
        wg_after - wg_before
    );
    run.check("wireguard-go", SECONDS);
    assert!(
        after - before >= u64::from(REKEYS),
        "handshakes {before} -> {after}, {REKEYS} rekeys asked for"
    );
    // wireguard-go saw the last one too (its clock has whole seconds; the last rekey was
    // at 25 s).
    assert!(
        wg_after >= wg_before + 20,
        "wireguard-go's latest handshake moved only {} s",
        wg_after - wg_before
    );
}
