//! A handshake flood on the WireGuard port, in network namespaces (needs root): two cores,
//! alpha (the CA) and beta, joined with real tokens, and an attacker on the same underlay
//! that sends beta handshake initiations with a valid MAC1 (anyone can compute one from
//! beta's public key) as fast as it can, from one address.
//!
//! While the flood runs, a ping and an iperf3 transfer between the two members go on; the
//! test checks they keep flowing (most pings answered, a good part of the throughput kept),
//! that the kernel handshake guard (nftables table `inet meshd_guard`) dropped the flood
//! before meshd's socket while dropping none of the members' handshakes, that meshd did not
//! grow without bound, and that a clean stop removes the guard's table. It prints the figures: before and during, side by side
//! (docs/benchmarks.md records a run).

#[path = "member_node.rs"]
mod member_node;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use member_node::{Node, PORT, attach, rss_kib, two_cores, underlay};
use meshd::api::report::StatusReport;
use netns_tests::{Namespace, require_root, wait_until};

const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Pings per measurement, 20 ms apart.
const PINGS: u32 = 150;
/// Seconds of iperf3 per measurement.
const IPERF_SECONDS: &str = "3";
/// The flood's rate: what the issue measured meshd collapsing under (278 kpps), on the
/// same machine as the members, so the attacker takes CPU time from them too.
const FLOOD_PER_SECOND: f64 = 280_000.0;
/// The attacker's underlay address.
const ATTACKER: &str = "198.51.100.66";

/// `ping -c PINGS -i 0.02` from `node` to `to`: the fraction lost.
fn ping_loss(node: &Node, to: std::net::IpAddr) -> f64 {
    let output = node.namespace.exec(
        "ping",
        &[
            "-n",
            "-q",
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.02",
            "-W",
            "1",
            &to.to_string(),
        ],
    );
    let text = match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(error) => format!("{error}"),
    };
    // "150 packets transmitted, 149 received, 0.666667% packet loss, time 3010ms"
    let received = text
        .split(" received")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    1.0 - f64::from(received) / f64::from(PINGS)
}

/// iperf3 from `client` to the server at `server`: bits per second received.
fn iperf(client: &Node, server: std::net::IpAddr) -> f64 {
    let report = client.namespace.exec_ok(
        "iperf3",
        &["-c", &server.to_string(), "-t", IPERF_SECONDS, "-J"],
    );
    let json: serde_json::Value = serde_json::from_str(&report).expect("iperf3 -J output");
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// Initiations the kernel handshake guard (nftables table `inet meshd_guard`) dropped on
/// `node`, from its named counter.
fn guard_dropped(node: &Node) -> u64 {
    let json = node.namespace.exec_ok(
        "nft",
        &[
            "-j",
            "list",
            "counter",
            "inet",
            "meshd_guard",
            "initiations_dropped",
        ],
    );
    let listed: serde_json::Value = serde_json::from_str(&json).expect("nft -j output");
    listed["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|object| object["counter"]["packets"].as_u64())
        .unwrap_or_else(|| panic!("no counter in {json}"))
}

fn status(node: &Node) -> StatusReport {
    let json = node.meshd(&["status", "--json"]);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}: {json}", node.name))
}

/// A handshake initiation to the holder of `target` with a valid MAC1, from a key nobody
/// knows: what anyone on the Internet can make.
fn valid_mac1_initiation(target: [u8; 32]) -> Vec<u8> {
    let mut tunn = Tunn::new(
        StaticSecret::from(rand::random::<[u8; 32]>()),
        PublicKey::from(target),
        None,
        None,
        1,
        None,
    );
    let mut buf = vec![0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(init) => init.to_vec(),
        _ => panic!("boringtun made no initiation"),
    }
}

/// What the members' traffic did while the attacker flooded `port` on beta.
struct UnderFlood {
    sent: u64,
    rate: f64,
    loss: f64,
    bits: f64,
    rss_kib: u64,
}

/// Floods `198.51.100.2:port` with `initiation` at [`FLOOD_PER_SECOND`] from the attacker
/// while alpha pings and runs iperf3 to beta.
fn under_flood(
    attacker: &Namespace,
    initiation: &[u8],
    port: u16,
    alpha: &Node,
    beta_v4: std::net::IpAddr,
    beta_pid: u32,
) -> UnderFlood {
    let target: SocketAddr = format!("198.51.100.2:{port}").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let initiation = initiation.to_vec();
    let (elapsed, loss, bits, rss_kib) = std::thread::scope(|scope| {
        let flood = {
            let (stop, sent) = (stop.clone(), sent.clone());
            scope.spawn(move || {
                attacker.run_in(move || {
                    let socket = UdpSocket::bind((ATTACKER, 0)).expect("attacker socket");
                    let started = Instant::now();
                    let mut count = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Paced: ahead of the rate, wait.
                        let due = Duration::from_secs_f64(count as f64 / FLOOD_PER_SECOND);
                        if let Some(ahead) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(ahead);
                        }
                        for _ in 0..256 {
                            // A full socket buffer (ENOBUFS) is part of flooding.
                            if socket.send_to(&initiation, target).is_ok() {
                                count += 1;
                            }
                        }
                    }
                    sent.store(count, Ordering::Relaxed);
                    started.elapsed()
                })
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let loss = ping_loss(alpha, beta_v4);
        let bits = iperf(alpha, beta_v4);
        let rss = rss_kib(beta_pid);
        stop.store(true, Ordering::Relaxed);
        (flood.join().expect("the flood thread"), loss, bits, rss)
    });
    let sent = sent.load(Ordering::Relaxed);
    UnderFlood {
        sent,
        rate: sent as f64 / elapsed.as_secs_f64(),
        loss,
        bits,
        rss_kib,
    }
}

#[test]
fn members_traffic_keeps_flowing_under_a_handshake_flood_from_one_address() {
    if !require_root("members_traffic_keeps_flowing_under_a_handshake_flood_from_one_address") {
        return;
    }
    let isp = underlay("hf-isp");
    let attacker = Namespace::new("hf-attacker");
    attach(&attacker, &isp, &[&format!("{ATTACKER}/24")], "n66");
    let (alpha, mut beta) = two_cores(&isp, "hf");
    let [beta_v4, _] = beta.overlay();
    let _server = beta.iperf3_server(beta_v4);

    let loss_before = ping_loss(&alpha, beta_v4);
    let bits_before = iperf(&alpha, beta_v4);
    // The guard was on while the members joined, handshook and carried the traffic above:
    // none of their initiations was dropped, and data never matches.
    assert_eq!(
        beta.metrics().value("meshd_handshake_guard_active", &[]),
        Some(1.0),
        "beta runs without the kernel handshake guard:\n{}",
        beta.log()
    );
    let text = beta.meshd(&["status"]);
    assert!(
        status(&beta).node.handshake_guard
            && text.contains("handshake guard: kernel (nftables inet meshd_guard)"),
        "meshd status does not show the guard:\n{text}"
    );
    assert_eq!(
        guard_dropped(&beta),
        0,
        "the guard dropped a member's handshake"
    );
    let beta_pid = beta.daemon.as_ref().expect("beta runs").pid();
    let rss_before = rss_kib(beta_pid);

    let public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(status(&beta).node.public_key)
        .expect("base64 public key")
        .try_into()
        .expect("32 bytes");
    let initiation = valid_mac1_initiation(public);
    // The reference: the same flood to a UDP port nothing listens on, which costs the
    // machine (the attacker's sending, the kernel's bridge) what it costs, and meshd nothing.
    let reference = under_flood(&attacker, &initiation, 9, &alpha, beta_v4, beta_pid);
    let flooded = under_flood(&attacker, &initiation, PORT, &alpha, beta_v4, beta_pid);
    let (sent, rate, loss_during, bits_during, rss_during) = (
        flooded.sent,
        flooded.rate,
        flooded.loss,
        flooded.bits,
        flooded.rss_kib,
    );

    let drops = status(&beta).drops.by_reason;
    let limited = drops.get("rate_limited").copied().unwrap_or(0);
    let kernel_dropped = guard_dropped(&beta);
    let answered = sent.saturating_sub(limited + kernel_dropped);
    eprintln!(
        "handshake flood: {sent} valid-MAC1 initiations from one address \
         ({:.0} kpps); beta's kernel guard dropped {kernel_dropped}; meshd dropped {limited} as \
         rate_limited, {} under_load, {} handshake_queue_full\n\
         ping loss before {:.1} %, during {:.1} %; iperf3 before {:.0} Mbit/s, during {:.0} \
         Mbit/s ({:.0} %); beta RSS before {} KiB, during {} KiB\n\
         reference, the same flood to a closed port: ping loss {:.1} %, iperf3 {:.0} Mbit/s \
         ({:.0} %); meshd under the flood / reference: {:.2}",
        rate / 1000.0,
        drops.get("under_load").copied().unwrap_or(0),
        drops.get("handshake_queue_full").copied().unwrap_or(0),
        loss_before * 100.0,
        loss_during * 100.0,
        bits_before / 1e6,
        bits_during / 1e6,
        100.0 * bits_during / bits_before.max(1.0),
        rss_before,
        rss_during,
        reference.loss * 100.0,
        reference.bits / 1e6,
        100.0 * reference.bits / bits_before.max(1.0),
        bits_during / reference.bits.max(1.0),
    );
    assert!(
        sent > 100_000,
        "the flood was too weak to test anything: {sent}"
    );
    // The kernel guard (40 per second, burst 10, per source) drops the flood before meshd's
    // socket: all but about 40 a second of it. What gets through meets the userspace limit
    // (20 per second, burst 5). (Datagrams the kernel dropped elsewhere count as neither.)
    assert!(
        kernel_dropped > sent * 9 / 10,
        "the kernel handshake guard did not cut the flood: {kernel_dropped} of {sent} dropped"
    );
    assert!(answered > 0);
    // The figures to aim for are < 1 % loss and >= 80 % of the throughput (what was
    // measured is in docs/benchmarks.md). With the kernel guard the flood costs meshd about
    // what a closed port does, so what remains is what the attacker's sending and the bridge
    // take from the two cores; the bounds leave room for a machine shared with builds.
    assert!(
        loss_during < 0.02,
        "the members lost {:.1} % of their pings during the flood",
        loss_during * 100.0
    );
    // Before the per-source limits it fell to 0.09 Mbit/s (0.003 %); with the userspace
    // limit alone to 37-40 % on a quiet machine, as low as 15 % on a busy one; with the
    // kernel guard 31-88 % on a busy one (load 5-10), where one 3 s iperf3 sample swings a lot.
    assert!(
        bits_during > 0.20 * bits_before,
        "iperf3 fell from {:.0} to {:.0} Mbit/s during the flood",
        bits_before / 1e6,
        bits_during / 1e6
    );
    assert!(
        rss_during < rss_before + 64 * 1024,
        "beta grew from {rss_before} KiB to {rss_during} KiB during the flood"
    );
    assert!(
        wait_until(PING_TIMEOUT, || alpha.pings(beta_v4)),
        "the tunnel did not survive"
    );

    // A clean stop takes the guard's table away.
    beta.stop();
    let tables = beta.namespace.exec_ok("nft", &["list", "tables"]);
    assert!(
        !tables.contains("meshd_guard"),
        "beta stopped and left its guard table: {tables}"
    );
}
