//! What `GET /metrics` answers: a [`Snapshot`] of the daemon's counters turned into the
//! OpenMetrics text format (which Prometheus reads). Pure: the snapshot is taken by the caller.
//!
//! Naming follows the Prometheus conventions: every name starts with `meshd_`, counters end
//! in `_total`, and a unit is part of the name (`_bytes`, `_seconds`). Counters are the data
//! plane's own monotonic counters, copied at scrape time; gauges are values that go up and
//! down (peers up, session age, members).

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use std::time::Instant;

use meshd_tunnel::path::{PathState, PathStats};

use crate::api::peer_state::PeerState;
use crate::api::report::{self, BgpSessionEntry, BgpView, is_up};
use crate::bgp::refusals::Kind as RefusalKind;
use crate::control::MembershipCounts;
use crate::control::accept_limits::{Reason as RefusalReason, RefusalCounts};
use crate::dataplane::{DataplaneStats, DropReason};
use crate::peerset::{KnownPeer, PeerKind};

/// The media type of the text [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape reports, copied from the running daemon.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The peers the data plane has, with what each is to this node.
    pub peers: Vec<KnownPeer>,
    /// The data plane's counters.
    pub stats: DataplaneStats,
    /// `None` when the node runs without a control plane (static peers only).
    pub control: Option<MembershipCounts>,
    /// Unauthenticated control connections refused or closed, by reason (`None` without a
    /// control plane).
    pub control_refusals: Option<RefusalCounts>,
    /// The routing plane's sessions and paths (`None` when BGP does not run).
    pub bgp: Option<BgpView>,
    /// Seconds since the Unix epoch when the daemon started.
    pub started_at_unix: i64,
    /// When the node's certificate (`node.crt`, renewed in place) expires, in seconds since
    /// the Unix epoch (`None` without a control plane, or when the file cannot be read).
    pub node_certificate_expiry_unix: Option<i64>,
    /// Whether the kernel handshake guard (`inet meshd_guard`) is installed.
    pub handshake_guard: bool,
    /// The data plane's clock when `stats` was taken (peer states and ages).
    pub now: Instant,
}

/// The OpenMetrics text for `snapshot` (ends with `# EOF`).
pub fn encode(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// A snapshot handed to the registry for one scrape (collectors must own their data).
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let mut out = Families(&mut encoder);
        build_info(&mut out)?;
        out.single_gauge(
            "meshd_start_time",
            "When the daemon started, in seconds since the Unix epoch",
            Some(Unit::Seconds),
            s.started_at_unix,
        )?;
        peers(&mut out, s)?;
        peer_states(&mut out, s)?;
        paths(&mut out, s)?;
        drops(&mut out, &s.stats)?;
        out.single_gauge(
            "meshd_handshake_guard_active",
            "1 when the kernel drops handshake-initiation floods per source before meshd \
             (nftables table inet meshd_guard), 0 when only the userspace limit does",
            None,
            u64::from(s.handshake_guard),
        )?;
        if let Some(control) = s.control {
            out.single_gauge(
                "meshd_control_members",
                "Verified members of the mesh known to this node, itself included",
                None,
                control.members as u64,
            )?;
            out.single_gauge(
                "meshd_control_revoked_certificates",
                "Certificates on the mesh's current revocation list",
                None,
                control.revoked as u64,
            )?;
            let no_labels: [(&str, &str); 0] = [];
            out.counter(
                "meshd_control_skipped_messages",
                "Messages of types this node does not know (from members running a newer \
                 meshd), skipped on member connections",
                None,
                [(no_labels, control.skipped_messages)],
            )?;
        }
        if let Some(expiry) = s.node_certificate_expiry_unix {
            out.single_gauge(
                "meshd_node_certificate_expiry_timestamp",
                "When this node's certificate expires, in seconds since the Unix epoch \
                 (renewal replaces it at about two thirds of its lifetime)",
                Some(Unit::Seconds),
                expiry,
            )?;
        }
        if let Some(refusals) = s.control_refusals {
            out.counter(
                "meshd_control_refused_connections",
                "Unauthenticated control connections refused at accept or closed before they \
                 were authenticated or answered, by reason",
                None,
                RefusalReason::ALL.map(|r| ([("reason", r.as_str())], refusals.get(r))),
            )?;
        }
        match &s.bgp {
            Some(view) => bgp(&mut out, view),
            None => Ok(()),
        }
    }
}

fn build_info(out: &mut Families<'_, '_>) -> fmt::Result {
    let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
    let metric = out
        .0
        .encode_descriptor("meshd_build", "meshd version", None, MetricType::Info)?;
    info.encode(metric)
}

/// The name a peer kind has in labels.
fn kind_label(kind: PeerKind) -> &'static str {
    match kind {
        PeerKind::Client => "client",
        PeerKind::Router => "router",
        PeerKind::Node(Some(role)) => role.as_str(),
        PeerKind::Node(None) => "node",
    }
}

fn peers(out: &mut Families<'_, '_>, s: &Snapshot) -> fmt::Result {
    const KINDS: [&str; 4] = ["core", "spoke", "node", "client"];
    let kind_of = |name: &str| {
        s.peers
            .iter()
            .find(|p| p.config.name == name)
            .map_or("node", |p| kind_label(p.kind))
    };
    let configured = KINDS.map(|kind| {
        let n = s
            .peers
            .iter()
            .filter(|p| kind_label(p.kind) == kind)
            .count();
        ([("kind", kind)], n as u64)
    });
    out.gauge(
        "meshd_peers_configured",
        "Peers the data plane has, by kind (core, spoke, node: a [[peer]] of unknown role, client)",
        None,
        configured,
    )?;
    let up = KINDS.map(|kind| {
        let n = s
            .stats
            .peers
            .iter()
            .filter(|p| kind_of(&p.name) == kind && is_up(p))
            .count();
        ([("kind", kind)], n as u64)
    });
    out.gauge(
        "meshd_peers_up",
        "Peers with a live WireGuard session (a handshake within 180 s), by kind",
        None,
        up,
    )?;

    let label = |name: &str| [("peer", name.to_owned())];
    let per_peer = |value: fn(&crate::dataplane::PeerStats) -> u64| {
        s.stats
            .peers
            .iter()
            .map(move |p| (label(&p.name), value(p)))
    };
    out.gauge(
        "meshd_peer_up",
        "1 while the peer has a live WireGuard session, else 0",
        None,
        per_peer(|p| u64::from(is_up(p))),
    )?;
    out.counter(
        "meshd_peer_handshakes",
        "WireGuard handshakes completed with the peer",
        None,
        per_peer(|p| p.handshakes),
    )?;
    out.counter(
        "meshd_peer_received",
        "Inner (decrypted) bytes received from the peer",
        Some(Unit::Bytes),
        per_peer(|p| p.rx_bytes),
    )?;
    out.counter(
        "meshd_peer_sent",
        "Inner bytes sent to the peer, transit included",
        Some(Unit::Bytes),
        per_peer(|p| p.tx_bytes),
    )?;
    out.counter(
        "meshd_peer_received_packets",
        "Inner packets received from the peer",
        None,
        per_peer(|p| p.rx_packets),
    )?;
    out.counter(
        "meshd_peer_sent_packets",
        "Inner packets sent to the peer, transit included",
        None,
        per_peer(|p| p.tx_packets),
    )?;
    out.counter(
        "meshd_peer_transit_packets",
        "Packets from the peer that meshd forwarded to another peer",
        None,
        per_peer(|p| p.transit_packets),
    )?;
    out.gauge(
        "meshd_peer_last_handshake_age",
        "Age of the peer's current session (absent without one)",
        Some(Unit::Seconds),
        s.stats
            .peers
            .iter()
            .filter_map(|p| Some((label(&p.name), seconds(p.last_handshake?)))),
    )?;
    out.gauge(
        "meshd_peer_rtt",
        "Round-trip time of the path to the peer, measured by the last completed handshake \
         (absent until one completed)",
        Some(Unit::Seconds),
        s.stats
            .peers
            .iter()
            .filter_map(|p| Some((label(&p.name), seconds(p.rtt?)))),
    )
}

/// `meshd_peer_state`: one sample per peer and state, 1 for the peer's state and 0 for the
/// others (so `sum by (state)` counts peers per state); the last packet's age.
fn peer_states(out: &mut Families<'_, '_>, s: &Snapshot) -> fmt::Result {
    let health: Vec<(String, crate::api::peer_state::Health)> = s
        .peers
        .iter()
        .filter_map(|peer| {
            let stats = s.stats.peer(&peer.config.name)?;
            Some((peer.config.name.clone(), report::health(peer, stats, s.now)))
        })
        .collect();
    out.gauge(
        "meshd_peer_state",
        "1 for the peer's state (up: heard from within its silence limit; stale: silent longer, \
         session live; down: no session or every path down), 0 for the others",
        None,
        health.iter().flat_map(|(name, h)| {
            PeerState::ALL.map(|state| {
                (
                    [("peer", name.clone()), ("state", state.as_str().to_owned())],
                    u64::from(h.state == state),
                )
            })
        }),
    )?;
    out.gauge(
        "meshd_peer_last_received_age",
        "Time since the last authenticated packet from the peer (data, keepalive, handshake or \
         probe reply; absent if none came)",
        Some(Unit::Seconds),
        health.iter().filter_map(|(name, h)| {
            Some(([("peer", name.clone())], seconds(h.last_received_ago?)))
        }),
    )
}

/// The labels of one path: peer, local address (`*`: the kernel chooses) and remote endpoint.
fn path_labels(peer: &str, path: &PathStats) -> [(&'static str, String); 3] {
    [
        ("peer", peer.to_owned()),
        (
            "local",
            path.path
                .local
                .map_or_else(|| "*".to_owned(), |ip| ip.to_string()),
        ),
        ("remote", path.path.remote.to_string()),
    ]
}

fn paths(out: &mut Families<'_, '_>, s: &Snapshot) -> fmt::Result {
    let all = || {
        s.stats
            .peers
            .iter()
            .flat_map(|peer| peer.paths.iter().map(move |path| (&*peer.name, path)))
    };
    const STATES: [PathState; 3] = [PathState::Unknown, PathState::Up, PathState::Down];
    out.gauge(
        "meshd_path_state",
        "1 for the path's probing state (unknown: not answered yet or the peer does not answer \
         probes; up; down: probes lost in a row or its local address gone), 0 for the others",
        None,
        all().flat_map(|(peer, path)| {
            STATES.map(|state| {
                let [p, l, r] = path_labels(peer, path);
                (
                    [p, l, r, ("state", state.to_string())],
                    u64::from(path.state == state),
                )
            })
        }),
    )?;
    out.gauge(
        "meshd_path_active",
        "1 for the path the peer's traffic takes, 0 for its other paths",
        None,
        all().map(|(peer, path)| (path_labels(peer, path), u64::from(path.active))),
    )?;
    out.gauge(
        "meshd_path_rtt",
        "Smoothed round-trip time of the path's probes (absent before the first answer)",
        Some(Unit::Seconds),
        all().filter_map(|(peer, path)| Some((path_labels(peer, path), seconds(path.srtt?)))),
    )?;
    out.counter(
        "meshd_path_switches",
        "How often the peer's traffic moved to another path (failover, failback, lower latency, \
         roaming)",
        None,
        s.stats
            .peers
            .iter()
            .map(|peer| ([("peer", peer.name.clone())], peer.path_switches)),
    )?;
    out.gauge(
        "meshd_path_loss",
        "Share of the path's recent probes (at most 32) that were lost, 0 to 1",
        Some(Unit::Other("ratio".to_owned())),
        all().map(|(peer, path)| (path_labels(peer, path), path.loss())),
    )
}

fn drops(out: &mut Families<'_, '_>, stats: &DataplaneStats) -> fmt::Result {
    out.counter(
        "meshd_dataplane_dropped_packets",
        "Packets the data plane dropped, by reason",
        None,
        DropReason::ALL.map(|r| ([("reason", r.as_str())], stats.drops.get(r))),
    )
}

fn bgp(out: &mut Families<'_, '_>, view: &BgpView) -> fmt::Result {
    let established = |s: &BgpSessionEntry| s.state == "established";
    let sessions = &view.sessions;
    out.single_gauge(
        "meshd_bgp_sessions_established",
        "BGP sessions in state Established",
        None,
        sessions.iter().filter(|s| established(s)).count() as u64,
    )?;
    let label = |s: &BgpSessionEntry| {
        [
            ("neighbor", s.name.clone()),
            ("address", s.address.to_string()),
        ]
    };
    out.gauge(
        "meshd_bgp_session_up",
        "1 while the BGP session with the neighbour is Established, else 0",
        None,
        sessions
            .iter()
            .map(|s| (label(s), u64::from(established(s)))),
    )?;
    out.gauge(
        "meshd_bgp_session_received_prefixes",
        "Prefixes the neighbour announces to this node (accepted by import policy)",
        None,
        sessions.iter().map(|s| (label(s), s.accepted as u64)),
    )?;
    out.gauge(
        "meshd_bgp_session_refused_prefixes",
        "Prefixes the neighbour announces that were refused, by kind of reason",
        None,
        sessions.iter().flat_map(|s| {
            RefusalKind::ALL.iter().map(move |kind| {
                let [neighbor, address] = label(s);
                let reason = ("reason", kind.as_str().to_owned());
                let n = s.refused_by_reason.get(kind.as_str()).copied().unwrap_or(0);
                ([neighbor, address, reason], n as u64)
            })
        }),
    )?;
    out.gauge(
        "meshd_bgp_session_advertised_prefixes",
        "Prefixes this node announces to the neighbour",
        None,
        sessions.iter().map(|s| (label(s), s.advertised as u64)),
    )?;
    out.single_gauge(
        "meshd_bgp_best_routes",
        "Prefixes with a best path, this node's own included",
        None,
        view.routes.iter().filter(|r| r.best).count() as u64,
    )?;
    exits(out, view)
}

/// Which exit each default route and `[[exit.route]]` destination uses (as `meshd routes`
/// shows it): one sample per prefix, its exit and why.
fn exits(out: &mut Families<'_, '_>, view: &BgpView) -> fmt::Result {
    let label = |e: &crate::api::report::ExitEntry| {
        [
            ("prefix", e.prefix.to_string()),
            ("exit", e.exit.clone().unwrap_or_default()),
        ]
    };
    out.gauge(
        "meshd_exit_in_use",
        "1 for the exit a default route or [[exit.route]] destination uses (exit=\"\" and 0 \
         while none is reachable), with why it was chosen",
        None,
        view.exits.iter().map(|e| {
            let [prefix, exit] = label(e);
            (
                [prefix, exit, ("reason", e.reason.clone())],
                u64::from(e.exit.is_some()),
            )
        }),
    )?;
    out.gauge(
        "meshd_exit_igp_cost",
        "IGP cost to the exit in use (the tunnel's round-trip time in milliseconds)",
        None,
        view.exits
            .iter()
            .filter_map(|e| Some((label(e), u64::from(e.cost?)))),
    )
}

/// A duration as fractional seconds.
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Writes metric families: one descriptor, then one sample per label set.
struct Families<'e, 'w>(&'e mut DescriptorEncoder<'w>);

impl Families<'_, '_> {
    fn counter<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family =
            self.0
                .encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauge<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge family with one sample and no labels.
    fn single_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        value: V,
    ) -> fmt::Result {
        let family = self
            .0
            .encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        ConstGauge::new(value).encode(family)
    }
}
