//! The metrics endpoint over real HTTP on 127.0.0.x (no root): what a Prometheus scrape gets,
//! parsed as OpenMetrics, and how the listener follows address changes (a reload).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use mesh_config::Role;
use meshd::api::report::{BgpRouteEntry, BgpSessionEntry, BgpView, ExitEntry};
use meshd::control::MembershipCounts;
use meshd::control::accept_limits::{AcceptLimiter, Limits, Reason, RefusalCounts};
use meshd::dataplane::{DataplaneStats, DropCounts, DropReason, PeerConfig, PeerStats};
use meshd::metrics::{MetricsSource, Snapshot, serve};
use meshd::peerset::{KnownPeer, PeerKind};
use meshd_tunnel::path::{Path, PathSource, PathState, PathStats};
use netns_tests::{
    dashboard_metrics, histogram_family, http_request, parse_exposition, promql_metric_names,
    wait_until,
};
use tokio::sync::watch;

struct Fixed(Snapshot);

impl MetricsSource for Fixed {
    fn snapshot(&self) -> Snapshot {
        self.0.clone()
    }
}

fn peer(name: &str, key: u8, kind: PeerKind) -> KnownPeer {
    KnownPeer {
        config: PeerConfig {
            name: name.into(),
            public_key: [key; 32],
            endpoints: Vec::new(),
            allowed_ips: Vec::new(),
            ecmp_ips: Vec::new(),
            persistent_keepalive: None,
            relay: false,
        },
        kind,
    }
}

fn stats(name: &str, key: u8, rx: u64, session: Option<u64>, rtt_ms: Option<u64>) -> PeerStats {
    PeerStats {
        name: name.into(),
        public_key: [key; 32],
        endpoint: None,
        rx_bytes: rx,
        rx_packets: rx / 100,
        tx_bytes: 2 * rx,
        tx_packets: rx / 50,
        transit_packets: 0,
        handshakes: 3,
        last_handshake: session.map(Duration::from_secs),
        rtt: rtt_ms.map(Duration::from_millis),
        ..Default::default()
    }
}

fn session(name: &str, address: &str, asn: u32, state: &str, advertised: usize) -> BgpSessionEntry {
    BgpSessionEntry {
        name: name.into(),
        address: address.parse().unwrap(),
        remote_asn: asn,
        state: state.into(),
        internal: asn == 64512,
        rr_client: false,
        router_id: None,
        advertised,
        accepted: advertised + 1,
        refused: 2,
        refused_by_reason: [("as_loop".to_owned(), 1), ("policy".to_owned(), 1)].into(),
    }
}

fn route(prefix: &str, from: Option<&str>, best: bool) -> BgpRouteEntry {
    BgpRouteEntry {
        prefix: prefix.parse().unwrap(),
        next_hop: from.map(|a| a.parse().unwrap()),
        as_path: String::new(),
        local_pref: Some(100),
        med: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        origin: "igp".into(),
        originator_id: None,
        learnt_from: from.map_or("local", |_| "beta").into(),
        learnt_from_address: from.map(|a| a.parse().unwrap()),
        best,
        kernel: best && from.is_some(),
        announcer: from.map(|_| "beta".into()),
        igp_cost: from.map(|_| 5),
        used: best,
        selection: if best { "best" } else { "igp_cost" }.into(),
    }
}

/// beta: a meshd core heard from 1 s ago on one of its two paths.
fn beta(now: Instant) -> PeerStats {
    let path = |remote: &str, state, active: bool| PathStats {
        path: Path {
            local: Some("198.51.100.1".parse().unwrap()),
            remote: remote.parse().unwrap(),
        },
        path_id: 1,
        source: PathSource::Configured {
            name: "vpn.example.net:51820".into(),
        },
        preference: 0,
        state,
        srtt: active.then_some(Duration::from_millis(25)),
        rttvar: Duration::ZERO,
        lost: if active { 8 } else { 32 },
        sampled: 32,
        consecutive_misses: 0,
        up_since: None,
        active,
    };
    PeerStats {
        probing: true,
        last_received: Some(now - Duration::from_secs(1)),
        paths: vec![
            path("203.0.113.2:51820", PathState::Up, true),
            path("203.0.113.3:51820", PathState::Down, false),
        ],
        ..stats("beta", 2, 4096, Some(12), Some(25))
    }
}

/// Two connections refused over the per-source limit, one TLS handshake timed out.
fn refusals() -> RefusalCounts {
    let now = Instant::now();
    let mut limiter = AcceptLimiter::new(Limits {
        per_source: 0,
        ..Limits::default()
    });
    let source = "198.51.100.7".parse().unwrap();
    limiter.admit(source, now);
    limiter.admit(source, now);
    limiter.closed(Reason::HandshakeTimeout, source, now);
    limiter.totals()
}

fn snapshot() -> Snapshot {
    let now = Instant::now();
    Snapshot {
        peers: vec![
            peer("beta", 2, PeerKind::Node(Some(Role::Core))),
            peer("home", 3, PeerKind::Node(Some(Role::Spoke))),
            peer("laptop", 4, PeerKind::Client),
        ],
        stats: DataplaneStats {
            peers: vec![
                beta(now),
                stats("home", 3, 0, Some(400), None),
                stats("laptop", 4, 100, None, None),
            ],
            drops: DropCounts::default(),
        },
        control: Some(MembershipCounts {
            members: 4,
            revoked: 1,
            skipped_messages: 3,
        }),
        control_refusals: Some(refusals()),
        handshake_guard: true,
        bgp: Some(BgpView {
            asn: 64512,
            router_id: Some("10.1.0.1".parse().unwrap()),
            sessions: vec![
                session("beta", "10.2.0.1", 64512, "established", 3),
                session("mikrotik", "192.168.42.1", 65010, "active", 0),
            ],
            routes: vec![
                route("10.1.0.0/16", None, true),
                route("10.2.0.0/16", Some("10.2.0.1"), true),
                route("192.168.50.0/24", Some("10.2.0.1"), false),
            ],
            exits: vec![
                ExitEntry {
                    prefix: "0.0.0.0/0".parse().unwrap(),
                    exit: Some("beta".into()),
                    next_hop: Some("10.2.0.1".parse().unwrap()),
                    cost: Some(12),
                    reason: "nearest".into(),
                    via: Vec::new(),
                    unreachable: Vec::new(),
                },
                ExitEntry {
                    prefix: "203.0.113.0/24".parse().unwrap(),
                    exit: None,
                    next_hop: None,
                    cost: None,
                    reason: "none".into(),
                    via: vec!["tokyo".into()],
                    unreachable: vec!["tokyo".into()],
                },
            ],
        }),
        started_at_unix: 1_700_000_000,
        node_certificate_expiry_unix: Some(1_707_776_000),
        now,
    }
}

/// A free TCP port on `ip` (bound and released; the test binds it again at once).
fn free_address(ip: &str) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// Runs `serve` on a runtime of its own; the returned sender moves the listener.
fn start(address: SocketAddr) -> (watch::Sender<Option<SocketAddr>>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = watch::channel(Some(address));
    runtime.spawn(async move {
        let source = Fixed(snapshot());
        let never = serve(rx, &source).await;
        match never {}
    });
    (tx, runtime)
}

fn reachable(address: SocketAddr) -> bool {
    http_request(address, "GET", "/metrics").is_ok_and(|r| r.status == 200)
}

const DASHBOARD: &str = include_str!("../../packaging/grafana/meshd-dashboard.json");

/// Every metric the dashboard's PromQL selects is in a scrape (of this fixed snapshot, which
/// has every family; the netns mesh test checks the same against a running node) and in
/// docs/operations.md's table.
#[test]
fn the_dashboard_queries_documented_metrics_that_a_scrape_has() {
    let address = free_address("127.0.0.72");
    let (_tx, _runtime) = start(address);
    assert!(wait_until(Duration::from_secs(5), || reachable(address)));
    let response = http_request(address, "GET", "/metrics").unwrap();
    let m = parse_exposition(&response.body).unwrap();
    let operations = include_str!("../../docs/operations.md");
    let queried = dashboard_metrics(DASHBOARD).unwrap_or_else(|e| panic!("{e}"));
    assert!(queried.len() >= 20, "{queried:?}");
    for name in &queried {
        assert!(
            m.has_sample(name),
            "the dashboard queries {name}, not exported"
        );
        let documented = |n: &str| operations.contains(&format!("`{n}`"));
        assert!(
            documented(name) || documented(histogram_family(name)),
            "{name} is not in docs/operations.md's metrics table"
        );
    }
}

/// Which exit each default route and rule destination uses, and its cost.
#[test]
fn exits_are_exported_with_the_exit_in_use_and_its_cost() {
    let address = free_address("127.0.0.73");
    let (_tx, _runtime) = start(address);
    assert!(wait_until(Duration::from_secs(5), || reachable(address)));
    let body = http_request(address, "GET", "/metrics").unwrap().body;
    for line in [
        "meshd_exit_in_use{prefix=\"0.0.0.0/0\",exit=\"beta\",reason=\"nearest\"} 1",
        "meshd_exit_in_use{prefix=\"203.0.113.0/24\",exit=\"\",reason=\"none\"} 0",
        "meshd_exit_igp_cost{prefix=\"0.0.0.0/0\",exit=\"beta\"} 12",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in:\n{body}");
    }
    assert!(
        !body.contains("meshd_exit_igp_cost{prefix=\"203.0.113.0/24\""),
        "{body}"
    );
}

/// The dashboard as Grafana imports it, checked without Grafana: it asks for a Prometheus
/// data source at import (`DS_PROMETHEUS`), every panel queries through the data source
/// variable, has a target with PromQL and a place on the grid that no other panel takes, and
/// the PromQL reader misses no `meshd_` name an expression writes.
#[test]
fn the_dashboard_imports_with_a_data_source_and_every_panel_queries_it() {
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input: {inputs:?}"
    );
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 39));
    assert!(d["id"].is_null(), "an importable dashboard has no id");
    let variables = d["templating"]["list"].as_array().expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(datasource["current"]["value"], "${DS_PROMETHEUS}");
    let instance = variable("instance");
    assert_eq!(instance["label"], "node");
    assert_eq!(instance["datasource"]["uid"], "${datasource}");

    let expected_source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = std::collections::BTreeSet::new();
    // Grid cells taken so far (24 columns), to find overlapping panels.
    let mut taken = std::collections::BTreeMap::new();
    let mut panels: Vec<&serde_json::Value> = d["panels"].as_array().unwrap().iter().collect();
    let mut queried = 0;
    while let Some(panel) = panels.pop() {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "id twice: {title}"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {grid}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            if let Some(other) = taken.insert(cell, title.clone()) {
                panic!("{title} overlaps {other} at {cell:?}");
            }
        }
        if panel["type"] == "row" {
            panels.extend(panel["panels"].as_array().unwrap());
            continue;
        }
        assert_eq!(panel["datasource"], expected_source, "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no target");
        for target in targets {
            assert_eq!(target["datasource"], expected_source, "{title}");
            assert!(target["refId"].is_string(), "{title}");
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}"));
            assert!(
                expr.contains("$instance"),
                "{title} ignores the node variable"
            );
            let names = promql_metric_names(expr).unwrap_or_else(|e| panic!("{title}: {e}"));
            // Every meshd_ word the expression writes is one the reader selected.
            for (at, _) in expr.match_indices("meshd_") {
                let word: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(names.contains(&word), "{title}: {word} missed in {expr}");
            }
            queried += names.len();
        }
    }
    assert!(queried >= 25, "{queried} selectors");
}

#[test]
fn a_scrape_gets_every_metric_with_its_type_and_unit() {
    let address = free_address("127.0.0.71");
    let (_tx, _runtime) = start(address);
    assert!(wait_until(Duration::from_secs(5), || reachable(address)));

    let response = http_request(address, "GET", "/metrics").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.headers["content-type"].starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers
    );
    let m = parse_exposition(&response.body).unwrap_or_else(|e| panic!("{e}\n{}", response.body));

    // Types: counters are counters (with _total), gauges gauges, units in the names.
    for (family, kind) in [
        ("meshd_peer_received_bytes", "counter"),
        ("meshd_peer_sent_bytes", "counter"),
        ("meshd_peer_handshakes", "counter"),
        ("meshd_dataplane_dropped_packets", "counter"),
        ("meshd_peer_last_handshake_age_seconds", "gauge"),
        ("meshd_peer_rtt_seconds", "gauge"),
        ("meshd_peers_up", "gauge"),
        ("meshd_peer_state", "gauge"),
        ("meshd_peer_last_received_age_seconds", "gauge"),
        ("meshd_path_state", "gauge"),
        ("meshd_path_active", "gauge"),
        ("meshd_path_rtt_seconds", "gauge"),
        ("meshd_path_loss_ratio", "gauge"),
        ("meshd_path_switches", "counter"),
        ("meshd_control_refused_connections", "counter"),
        ("meshd_node_certificate_expiry_timestamp_seconds", "gauge"),
        ("meshd_control_skipped_messages", "counter"),
        ("meshd_build", "info"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    let peer = |name| [("peer", name)];
    assert_eq!(
        m.value("meshd_peer_received_bytes_total", &peer("beta")),
        Some(4096.0)
    );
    assert_eq!(
        m.value("meshd_peer_sent_bytes_total", &peer("beta")),
        Some(8192.0)
    );
    assert_eq!(
        m.value("meshd_peer_handshakes_total", &peer("home")),
        Some(3.0)
    );
    assert_eq!(
        m.value("meshd_peer_rtt_seconds", &peer("beta")),
        Some(0.025)
    );
    assert_eq!(
        m.value("meshd_peer_rtt_seconds", &peer("home")),
        None,
        "not measured"
    );
    assert_eq!(
        m.value("meshd_peer_last_handshake_age_seconds", &peer("beta")),
        Some(12.0)
    );
    assert_eq!(
        m.value("meshd_peer_last_handshake_age_seconds", &peer("laptop")),
        None
    );
    // A 400 s old session is over (180 s); a 12 s old one is up.
    assert_eq!(m.value("meshd_peer_up", &peer("beta")), Some(1.0));
    assert_eq!(m.value("meshd_peer_up", &peer("home")), Some(0.0));
    assert_eq!(m.value("meshd_peers_up", &[("kind", "core")]), Some(1.0));
    assert_eq!(m.value("meshd_peers_up", &[("kind", "spoke")]), Some(0.0));
    // States: beta heard from 1 s ago; home's session expired; laptop never had one.
    for (name, state) in [("beta", "up"), ("home", "down"), ("laptop", "down")] {
        for other in ["up", "stale", "down"] {
            assert_eq!(
                m.value("meshd_peer_state", &[("peer", name), ("state", other)]),
                Some(f64::from(u8::from(other == state))),
                "{name} {other}"
            );
        }
    }
    assert_eq!(
        m.value("meshd_peer_last_received_age_seconds", &peer("beta")),
        Some(1.0)
    );
    let path = |remote| {
        [
            ("peer", "beta"),
            ("local", "198.51.100.1"),
            ("remote", remote),
        ]
    };
    assert_eq!(
        m.value("meshd_path_rtt_seconds", &path("203.0.113.2:51820")),
        Some(0.025)
    );
    assert_eq!(
        m.value("meshd_path_rtt_seconds", &path("203.0.113.3:51820")),
        None
    );
    assert_eq!(
        m.value("meshd_path_loss_ratio", &path("203.0.113.2:51820")),
        Some(0.25)
    );
    assert_eq!(
        m.value("meshd_path_active", &path("203.0.113.3:51820")),
        Some(0.0)
    );
    let [p, l, r] = path("203.0.113.3:51820");
    assert_eq!(
        m.value("meshd_path_state", &[p, l, r, ("state", "down")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("meshd_path_state", &[p, l, r, ("state", "up")]),
        Some(0.0)
    );
    assert_eq!(
        m.value("meshd_peers_configured", &[("kind", "client")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("meshd_peers_configured", &[("kind", "node")]),
        Some(0.0)
    );

    for reason in DropReason::ALL {
        assert_eq!(
            m.value(
                "meshd_dataplane_dropped_packets_total",
                &[("reason", reason.as_str())]
            ),
            Some(0.0),
            "{reason:?}"
        );
    }
    assert_eq!(m.value("meshd_control_members", &[]), Some(4.0));
    assert_eq!(m.value("meshd_handshake_guard_active", &[]), Some(1.0));
    for reason in Reason::ALL {
        let expected = match reason {
            Reason::PerSourceLimit => 2.0,
            Reason::HandshakeTimeout => 1.0,
            _ => 0.0,
        };
        assert_eq!(
            m.value(
                "meshd_control_refused_connections_total",
                &[("reason", reason.as_str())]
            ),
            Some(expected),
            "{reason:?}"
        );
    }
    assert_eq!(
        m.value("meshd_control_revoked_certificates", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.value("meshd_control_skipped_messages_total", &[]),
        Some(3.0)
    );
    assert_eq!(m.value("meshd_bgp_sessions_established", &[]), Some(1.0));
    assert_eq!(
        m.value("meshd_bgp_session_up", &[("neighbor", "mikrotik")]),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "meshd_bgp_session_advertised_prefixes",
            &[("neighbor", "beta"), ("address", "10.2.0.1")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.value(
            "meshd_bgp_session_received_prefixes",
            &[("neighbor", "beta"), ("address", "10.2.0.1")]
        ),
        Some(4.0)
    );
    // Every kind of reason has a sample per session, zeros included.
    let refused = |reason| {
        m.value(
            "meshd_bgp_session_refused_prefixes",
            &[("neighbor", "beta"), ("reason", reason)],
        )
    };
    assert_eq!(refused("as_loop"), Some(1.0));
    assert_eq!(refused("policy"), Some(1.0));
    assert_eq!(refused("certificate"), Some(0.0));
    assert_eq!(
        m.value("meshd_start_time_seconds", &[]),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        m.value(
            "meshd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

#[test]
fn only_get_metrics_is_served() {
    let address = free_address("127.0.0.72");
    let (_tx, _runtime) = start(address);
    assert!(wait_until(Duration::from_secs(5), || reachable(address)));

    let other = http_request(address, "GET", "/").unwrap();
    assert_eq!(other.status, 404);
    assert!(other.body.contains("/metrics"), "{}", other.body);
    let post = http_request(address, "POST", "/metrics").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    // Garbage instead of HTTP gets an error status or a closed connection, and the server
    // goes on serving.
    let _ = http_request(address, "\u{1}\u{2} ", "x y z");
    assert!(reachable(address));
}

#[test]
fn the_listener_follows_address_changes() {
    let first = free_address("127.0.0.73");
    let (tx, _runtime) = start(first);
    assert!(wait_until(Duration::from_secs(5), || reachable(first)));

    let second = free_address("127.0.0.74");
    tx.send_replace(Some(second));
    assert!(wait_until(Duration::from_secs(5), || reachable(second)));
    assert!(!reachable(first), "the old address is closed");

    tx.send_replace(None);
    assert!(wait_until(Duration::from_secs(5), || !reachable(second)));
}

#[test]
fn idle_and_oversized_clients_cannot_block_scrapes() {
    use std::io::{Read, Write};
    let address = free_address("127.0.0.75");
    let (_tx, _runtime) = start(address);
    assert!(wait_until(Duration::from_secs(5), || reachable(address)));

    // Headers far larger than any scraper sends: refused, not buffered without end.
    let mut big = std::net::TcpStream::connect(address).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        big,
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:.200}"
    );

    // As many silent connections as the server serves at once: they are closed after the
    // header timeout, and a scrape gets through.
    let idle: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(address).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let scraped = wait_until(Duration::from_secs(15), || reachable(address));
    assert!(
        scraped,
        "a scrape never got through {} idle connections",
        idle.len()
    );
    assert!(started.elapsed() < Duration::from_secs(12));
    for mut connection in idle {
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        // EOF or a reset: the server closed it (a read timeout would mean it is still open).
        match connection.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(error) => assert_eq!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset,
                "an idle connection stayed open: {error}"
            ),
        }
    }
}
