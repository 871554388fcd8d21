//! The local API of a real daemon in a network namespace (needs root): `meshd status --json`
//! and `meshd peers` answer over the control socket, a client created before the start is
//! loaded from the state directory, one created while the daemon runs is accepted at once,
//! and wireguard-go set up from each printed wg-quick configuration reaches the node; a killed
//! peer is shown down within seconds, in `meshd peers`, `status` and the metrics.

#[path = "../api_support/mod.rs"]
mod api_support;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use api_support::{client_from, parse_wg_quick};
use netns_tests::{MeshdNode, MeshdSetup, require_root, underlay_pair};
use serde_json::Value;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const PING_TIMEOUT: Duration = Duration::from_secs(10);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `meshd ARGS` for `node`: (stdout, stderr); panics if it fails.
fn meshd(node: &MeshdNode, args: &[&str]) -> (String, String) {
    let output = Command::new(MESHD)
        .arg("--config")
        .arg(node.config_path())
        .arg("--state-dir")
        .arg(node.state_dir())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "meshd {args:?} failed:\n{stdout}{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn status_peers_and_clients_over_the_control_socket() {
    if !require_root("status_peers_and_clients_over_the_control_socket") {
        return;
    }
    let (ns_node, ns_client) = underlay_pair("api");
    // The harness's mesh pool6 is fd00:99::/48: the first core gets fd00:99:0:1::/64, and its
    // clients come from fd00:99:0:1:0:1::/96.
    let mut alpha = MeshdNode::init(
        Path::new(MESHD),
        &MeshdSetup {
            name: "alpha",
            endpoint: "198.51.100.1:51820",
            addresses: &["10.1.0.1/16", "fd00:99:0:1::1/64"],
        },
    );
    let (laptop_text, note) = meshd(&alpha, &["client", "add", "laptop"]);
    assert!(note.contains("meshd is not running"), "{note}");
    let laptop = parse_wg_quick(&laptop_text).unwrap();
    alpha.start(&ns_node);

    let (status, _) = meshd(&alpha, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["schema"], 1, "{status}");
    assert_eq!(status["node"]["name"], "alpha");
    assert_eq!(status["node"]["interface"], "mesh0");
    assert_eq!(
        status["peers"]["total"], 1,
        "the laptop is loaded from clients.json: {status}"
    );
    assert_eq!(status["peers"]["clients"], 1);
    assert_eq!(status["peers"]["up"], 0);

    // The laptop, known since the start, reaches the node over both families.
    let wg = client_from(&ns_client, &laptop);
    assert!(
        ns_client.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "the laptop cannot ping alpha over IPv4:\n{}",
        alpha.log()
    );
    assert!(
        ns_client.ping_until(ip("fd00:99:0:1::1"), PING_TIMEOUT),
        "the laptop cannot ping alpha over IPv6:\n{}",
        alpha.log()
    );
    let (peers, _) = meshd(&alpha, &["peers"]);
    assert!(peers.starts_with("peer: laptop (client), up\n"), "{peers}");
    assert!(
        // Followed by the local address it arrives at, when the kernel tells us (IP_PKTINFO).
        peers.contains("  endpoint: 198.51.100.2:51821"),
        "{peers}"
    );
    assert!(peers.contains(" ago\n"), "a handshake happened: {peers}");
    drop(wg);

    // A phone added while the daemon runs is accepted without a restart.
    let (phone_text, note) = meshd(&alpha, &["client", "add", "phone"]);
    assert!(
        note.contains("The running daemon accepts the client now"),
        "{note}"
    );
    let phone = parse_wg_quick(&phone_text).unwrap();
    let (peers, _) = meshd(&alpha, &["peers", "--json"]);
    let peers: Value = serde_json::from_str(&peers).unwrap();
    assert_eq!(peers["peers"][1]["name"], "phone", "{peers}");
    assert_eq!(peers["peers"][1]["allowed_prefixes"][0], "10.1.0.3/32");
    let _wg = client_from(&ns_client, &phone);
    assert!(
        ns_client.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "the phone cannot ping alpha:\n{}",
        alpha.log()
    );
    let (status, _) = meshd(&alpha, &["status"]);
    assert!(
        status.contains("  peers: 1 up of 2 (2 clients)\n")
            || status.contains("  peers: 2 up of 2 (2 clients)\n"),
        "{status}"
    );
    let (routes, _) = meshd(&alpha, &["routes"]);
    assert!(routes.contains("10.1.0.3/32"), "{routes}");

    let stopped = alpha.stop().expect("alpha did not stop within 10 s");
    assert!(stopped.success(), "alpha exited with {stopped}");
    assert!(
        !alpha.state_dir().join("meshd.sock").exists(),
        "the control socket is removed on shutdown"
    );
}

/// The state of peer `name` in `node`'s `meshd peers --json`.
fn peer_state(node: &MeshdNode, name: &str) -> String {
    let (peers, _) = meshd(node, &["peers", "--json"]);
    let peers: Value = serde_json::from_str(&peers).unwrap();
    let peer = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no peer {name}: {peers}"));
    peer["state"].as_str().unwrap().to_owned()
}

#[test]
fn a_killed_peer_is_down_within_seconds() {
    if !require_root("a_killed_peer_is_down_within_seconds") {
        return;
    }
    let (ns_a, ns_b) = underlay_pair("kill");
    let mut alpha = MeshdNode::with_addresses(
        Path::new(MESHD),
        "alpha",
        "198.51.100.1:51820",
        &["10.1.0.1/16"],
    );
    let mut beta = MeshdNode::with_addresses(
        Path::new(MESHD),
        "beta",
        "198.51.100.2:51820",
        &["10.2.0.1/16"],
    );
    alpha.add_peer_node(&beta, &["198.51.100.2:51820"], &["10.2.0.0/16"], Some(25));
    beta.add_peer_node(&alpha, &["198.51.100.1:51820"], &["10.1.0.0/16"], Some(25));
    alpha.start(&ns_a);
    beta.start(&ns_b);
    assert!(
        ns_a.ping_until(ip("10.2.0.1"), PING_TIMEOUT),
        "alpha cannot reach beta:\n{}",
        alpha.log()
    );
    assert!(
        netns_tests::wait_until(Duration::from_secs(10), || peer_state(&alpha, "beta")
            == "up"),
        "beta never up at alpha:\n{}",
        meshd(&alpha, &["peers"]).0
    );
    // Idle for a while, so the kill falls into the slow (2 s) probe cycle, as on a quiet night.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        peer_state(&alpha, "beta"),
        "up",
        "an idle live peer stays up"
    );

    beta.kill().expect("beta dies");
    let killed = Instant::now();
    let (mut stale, mut down) = (None, None);
    while down.is_none() && killed.elapsed() < Duration::from_secs(30) {
        let state = peer_state(&alpha, "beta");
        let at = killed.elapsed();
        match state.as_str() {
            "up" => assert!(
                stale.is_none() && at < Duration::from_secs(6),
                "up {at:?} after the kill"
            ),
            "stale" => {
                stale.get_or_insert(at);
            }
            "down" => down = Some(at),
            other => panic!("state {other}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let down = down.unwrap_or_else(|| {
        panic!(
            "beta not down 30 s after the kill:\n{}",
            meshd(&alpha, &["peers"]).0
        )
    });
    eprintln!("killed peer: stale after {stale:?}, down after {down:?}");
    // The virtual-clock figure is 2.4 s; the shell adds its tick and the process starts.
    assert!(
        down < Duration::from_secs(5),
        "down only {down:?} after the kill"
    );

    let (peers, _) = meshd(&alpha, &["peers"]);
    assert!(
        peers.starts_with("peer: beta (mesh node), down (all paths down)\n"),
        "{peers}"
    );
    let (status, _) = meshd(&alpha, &["status"]);
    assert!(status.contains("  peers: 0 up of 1, 1 down\n"), "{status}");
    assert!(status.contains("  paths: 1 of 1 down\n"), "{status}");
    let metrics = alpha.metrics(&ns_a);
    assert_eq!(
        metrics.value("meshd_peer_state", &[("peer", "beta"), ("state", "down")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("meshd_peer_up", &[("peer", "beta")]),
        Some(1.0),
        "the old gauge still says the session is live: the reason for meshd_peer_state"
    );
}
