use std::time::{Duration, Instant};

use mesh_config::Role;

use super::*;
use crate::dataplane::{DataplaneStats, DropReason, PeerStats};
use crate::peerset::{KnownPeer, PeerKind};

pub(crate) fn node() -> NodeInfo {
    NodeInfo {
        name: "alpha".into(),
        role: Role::Core,
        public_key: [1; 32],
        interface: "mesh0".into(),
        mtu: 1420,
        listen_port: 51820,
        handshake_guard: true,
        addresses: vec![
            "10.1.0.1/16".parse().unwrap(),
            "fd00:1::1/64".parse().unwrap(),
        ],
        endpoints: vec!["vpn.example.net:51820".into()],
        listening: vec!["0.0.0.0:51820".parse().unwrap()],
        kernel_routes: vec!["10.2.0.0/16".parse().unwrap()],
        started_at: time::macros::datetime!(2026-01-02 03:04:05 UTC),
    }
}

pub(crate) fn known(name: &str, kind: PeerKind, allowed: &[&str]) -> KnownPeer {
    KnownPeer {
        config: crate::dataplane::PeerConfig {
            name: name.into(),
            public_key: [name.len() as u8 + 10; 32],
            endpoints: vec!["203.0.113.2:51820".parse().unwrap()],
            allowed_ips: allowed.iter().map(|p| p.parse().unwrap()).collect(),
            ecmp_ips: Vec::new(),
            persistent_keepalive: Some(Duration::from_secs(25)),
            relay: false,
        },
        kind,
    }
}

pub(crate) fn stats_for(peer: &KnownPeer, handshake: Option<u64>) -> PeerStats {
    PeerStats {
        name: peer.config.name.clone(),
        public_key: peer.config.public_key,
        endpoint: peer.config.endpoints.first().copied(),
        rx_bytes: 1000,
        rx_packets: 10,
        tx_bytes: 2000,
        tx_packets: 20,
        transit_packets: 1,
        handshakes: 2,
        last_handshake: handshake.map(Duration::from_secs),
        rtt: None,
        last_received: Some(clock()),
        ..Default::default()
    }
}

/// The data plane clock of the tests: one fixed instant, `now` of every report.
pub(crate) fn clock() -> Instant {
    static CLOCK: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *CLOCK.get_or_init(Instant::now)
}

#[test]
fn status_counts_peers_traffic_and_drops() {
    let beta = known("beta", PeerKind::Node(Some(Role::Core)), &["10.2.0.0/16"]);
    let laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
    let stats = DataplaneStats {
        peers: vec![stats_for(&beta, Some(30)), stats_for(&laptop, Some(600))],
        drops: Default::default(),
    };
    let now = node().started_at + time::Duration::seconds(3725);
    let report = status(&node(), &[beta, laptop], &stats, now, clock());
    assert_eq!(report.schema, 1);
    assert_eq!(report.daemon.uptime_seconds, 3725);
    assert_eq!(
        report.peers,
        PeerCounts {
            total: 2,
            up: 1,
            clients: 1,
            states: StateCounts {
                up: 1,
                stale: 0,
                down: 1
            },
            paths_total: 0,
            paths_down: 0,
        }
    );
    assert_eq!(report.traffic.rx_bytes, 2000);
    assert_eq!(report.traffic.tx_packets, 40);
    assert_eq!(report.drops.total, 0);
    assert_eq!(report.drops.by_reason.len(), DropReason::ALL.len());
    assert_eq!(report.drops.by_reason["no_route"], 0);
}

#[test]
fn peers_join_configuration_and_counters() {
    let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
    let laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
    let mut beta_stats = stats_for(&beta, Some(200));
    beta_stats.rtt = Some(Duration::from_micros(12_500));
    let stats = DataplaneStats {
        peers: vec![beta_stats],
        drops: Default::default(),
    };
    let report = peers(&[beta, laptop], &stats, clock());
    let [beta, laptop] = &report.peers[..] else {
        panic!("two peers expected: {report:?}")
    };
    assert_eq!(beta.role, None);
    assert!(!beta.up, "a 200 s old session is expired");
    assert_eq!(beta.last_handshake_seconds_ago, Some(200));
    assert_eq!(beta.rtt_ms, Some(12.5));
    assert_eq!(beta.rx_bytes, 1000);
    assert_eq!(laptop.role.as_deref(), Some("client"));
    assert_eq!(laptop.endpoint, None);
    assert_eq!(laptop.rx_bytes, 0);
    assert_eq!(laptop.persistent_keepalive_seconds, Some(25));
}

#[test]
fn routes_say_how_the_kernel_reaches_the_tun() {
    let beta = known(
        "beta",
        PeerKind::Node(None),
        &["10.2.0.0/16", "192.168.9.0/24"],
    );
    let laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
    let report = routes(&node(), &[beta, laptop]);
    let summary: Vec<(String, &str, &str, &str)> = report
        .routes
        .iter()
        .map(|r| (r.prefix.to_string(), &*r.peer, &*r.source, &*r.kernel))
        .collect();
    assert_eq!(
        summary,
        [
            ("10.1.0.2/32".to_owned(), "laptop", "client", "connected"),
            ("10.2.0.0/16".to_owned(), "beta", "peer", "meshd"),
            ("192.168.9.0/24".to_owned(), "beta", "peer", "none"),
        ]
    );
    assert_eq!(report.bgp, "not_running");
}

#[test]
fn shared_prefixes_are_in_the_table_under_each_peer_that_carries_them() {
    let shared = |name: &str, allowed: &[&str]| {
        let mut peer = known(name, PeerKind::Node(None), allowed);
        peer.config.ecmp_ips = vec!["203.0.113.53/32".parse().unwrap()];
        peer
    };
    let beta = shared("beta", &["10.2.0.0/16"]);
    let gamma = shared("gamma", &["10.3.0.0/16"]);
    let report = routes(&node(), &[beta, gamma]);
    let summary: Vec<(String, &str, bool)> = report
        .routes
        .iter()
        .map(|r| (r.prefix.to_string(), &*r.peer, r.ecmp))
        .collect();
    assert_eq!(
        summary,
        [
            ("10.2.0.0/16".to_owned(), "beta", false),
            ("10.3.0.0/16".to_owned(), "gamma", false),
            ("203.0.113.53/32".to_owned(), "beta", true),
            ("203.0.113.53/32".to_owned(), "gamma", true),
        ]
    );
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["routes"][2]["ecmp"], true);
    assert_eq!(value["ecmp_groups"], serde_json::json!([]));
}

#[test]
fn json_has_the_documented_top_level_shape() {
    let stats = DataplaneStats {
        peers: vec![],
        drops: Default::default(),
    };
    let report = status(&node(), &[], &stats, node().started_at, clock());
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["schema"], 1);
    assert_eq!(value["node"]["name"], "alpha");
    assert_eq!(value["node"]["role"], "core");
    assert_eq!(value["node"]["addresses"][0], "10.1.0.1/16");
    assert_eq!(value["daemon"]["started_at"], "2026-01-02T03:04:05Z");
    assert_eq!(value["peers"]["up"], 0);
    assert_eq!(value["drops"]["by_reason"]["replay"], 0);
    let back: StatusReport = serde_json::from_value(value).unwrap();
    assert_eq!(back, report);
}
