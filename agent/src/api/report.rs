//! What `meshd status`, `meshd peers` and `meshd routes` report: the JSON payloads of the
//! control socket, which `--json` prints unchanged. Every payload starts with
//! `"schema": SCHEMA_VERSION`; fields may be added within a schema version, never renamed,
//! removed or given another meaning (docs/operations.md describes each field).
//!
//! The builders are pure: they take the daemon's facts, the data plane counters and `now`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use mesh_config::Role;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use meshd_tunnel::path::{PathSource, PathStats};

use super::peer_state::{self, PeerState};
use crate::dataplane::{DataplaneStats, DropReason, PeerStats};
use crate::peerset::{KnownPeer, PeerKind};
use crate::state::encode_key;

/// Version of the report schema (the `schema` field of every payload).
pub const SCHEMA_VERSION: u32 = 1;

pub use peer_state::SESSION_LIFETIME;

/// Facts about the node that the daemon fixed when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub role: Role,
    /// The node's WireGuard public key.
    pub public_key: [u8; 32],
    /// The TUN device.
    pub interface: String,
    pub mtu: u16,
    pub listen_port: u16,
    /// Overlay addresses on the TUN, with their prefix length.
    pub addresses: Vec<IpNet>,
    /// Where other nodes reach this one (`HOST:PORT`, as configured).
    pub endpoints: Vec<String>,
    /// The UDP addresses the data plane listens on.
    pub listening: Vec<SocketAddr>,
    /// Routes meshd installed in the kernel towards the TUN.
    pub kernel_routes: Vec<IpNet>,
    pub started_at: OffsetDateTime,
}

/// `meshd status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub schema: u32,
    pub node: NodeSummary,
    pub daemon: DaemonSummary,
    pub peers: PeerCounts,
    pub traffic: Traffic,
    pub drops: Drops,
    /// The BGP sessions with their route counts; null when the daemon runs no BGP (or
    /// predates the field).
    #[serde(default)]
    pub bgp: Option<BgpSummary>,
}

/// `status`' BGP part: every session with how many of its routes were accepted and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpSummary {
    /// Sessions in state Established.
    pub established: usize,
    /// Summed over the sessions.
    pub accepted: usize,
    pub refused: usize,
    pub sessions: Vec<BgpSessionCounts>,
}

/// One session in [`BgpSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpSessionCounts {
    pub name: String,
    pub state: String,
    pub accepted: usize,
    pub refused: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    /// `core` or `spoke`.
    pub role: String,
    /// Base64, as `wg` prints keys.
    pub public_key: String,
    pub interface: String,
    pub mtu: u16,
    pub listen_port: u16,
    pub listening: Vec<SocketAddr>,
    pub addresses: Vec<IpNet>,
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSummary {
    /// meshd's version.
    pub version: String,
    pub pid: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// Peers configured, clients included.
    pub total: usize,
    /// Peers with a live session (handshake within [`SESSION_LIFETIME`]). A killed peer's
    /// session stays live for up to 180 s: `states` says whether peers are really there.
    pub up: usize,
    /// Of `total`, how many are clients.
    pub clients: usize,
    /// Peers by state (see [`peer_state`]): up, stale, down. Sums to `total`.
    #[serde(default)]
    pub states: StateCounts,
    /// Paths of all peers, and how many of them are down.
    #[serde(default)]
    pub paths_total: usize,
    #[serde(default)]
    pub paths_down: usize,
}

/// Peers by [`PeerState`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub up: usize,
    pub stale: usize,
    pub down: usize,
}

/// Inner (decrypted) traffic summed over all peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Packets forwarded from one peer to another inside meshd.
    pub transit_packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    pub total: u64,
    /// Every reason the data plane knows, zero counts included, by its snake_case name.
    pub by_reason: BTreeMap<String, u64>,
}

/// `meshd peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersReport {
    pub schema: u32,
    pub peers: Vec<PeerReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub name: String,
    /// `core`, `spoke`, `client`, `router` (a foreign router this core stands in for), or
    /// null when this node does not know the peer's role.
    pub role: Option<String>,
    pub public_key: String,
    /// The path packets go to now (learnt from the peer's packets if none is configured).
    pub endpoint: Option<SocketAddr>,
    pub configured_endpoints: Vec<SocketAddr>,
    pub allowed_prefixes: Vec<IpNet>,
    pub persistent_keepalive_seconds: Option<u64>,
    /// A session younger than 180 s exists. This stays true for a killed peer until its
    /// session expires: `state` is the field that says whether the peer is there.
    pub up: bool,
    /// `up`, `stale` or `down` ([`peer_state`]; docs/operations.md, "Peer states").
    #[serde(default = "unknown_state")]
    pub state: PeerState,
    /// Why: `no session`, `session expired`, `all paths down`, `heard from recently`,
    /// `silent, session not expired`.
    #[serde(default)]
    pub state_reason: String,
    /// Seconds (tenths) since the last authenticated packet from the peer (data, keepalive,
    /// handshake or probe reply); null if none came since the daemon started.
    #[serde(default)]
    pub last_received_seconds_ago: Option<f64>,
    /// Silence longer than this (seconds) makes a peer with a live session stale.
    #[serde(default)]
    pub silence_limit_seconds: u64,
    /// The peer answers path probes (it is meshd); else its path is chosen by handshake
    /// timeouts and its paths show state `unknown`.
    #[serde(default)]
    pub probing: bool,
    /// The local address the peer's datagrams leave from (null: the kernel chooses).
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    /// Every candidate path, the active one marked.
    #[serde(default)]
    pub paths: Vec<PathReport>,
    /// When traffic last moved to another path, and why (null: never since start).
    #[serde(default)]
    pub last_switch: Option<SwitchReport>,
    /// How often traffic moved to another path since the daemon started.
    #[serde(default)]
    pub path_switches: u64,
    /// The core our traffic to this peer goes through because direct paths fail or are much
    /// slower (null: direct), why, and how many packets went that way.
    #[serde(default)]
    pub relay: Option<RelayReport>,
    /// Seconds since the current session's handshake; null if there is no session.
    pub last_handshake_seconds_ago: Option<u64>,
    /// Round-trip time of the path in milliseconds, measured by the last completed handshake
    /// (either side); null until one completed.
    pub rtt_ms: Option<f64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub transit_packets: u64,
    pub handshakes: u64,
    /// The iBGP session with the peer, when this node runs one (null otherwise).
    #[serde(default)]
    pub bgp: Option<PeerBgpReport>,
}

/// A peer's BGP session, as `meshd peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBgpReport {
    /// `idle`, `connect`, `active`, `open_sent`, `open_confirm` or `established`.
    pub state: String,
    /// Prefixes the peer announces that were accepted / refused, and prefixes sent to it.
    pub accepted: usize,
    pub refused: usize,
    pub advertised: usize,
}

/// Adds each peer's BGP session (by name) from the routing plane's view.
pub fn peers_with_bgp(mut report: PeersReport, view: &BgpView) -> PeersReport {
    for peer in &mut report.peers {
        peer.bgp = view
            .sessions
            .iter()
            .find(|s| s.name == peer.name)
            .map(|s| PeerBgpReport {
                state: s.state.clone(),
                accepted: s.accepted,
                refused: s.refused,
                advertised: s.advertised,
            });
    }
    report
}

/// Traffic to a peer that goes through another core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayReport {
    pub via: String,
    pub reason: String,
    pub packets: u64,
}

fn unknown_state() -> PeerState {
    PeerState::Down
}

/// One path to a peer: from a local address to one of the peer's endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    /// Null: the kernel chooses the source address.
    pub local: Option<IpAddr>,
    pub remote: SocketAddr,
    /// The endpoint as configured or advertised (`vpn.example.net:51820`, the DNS name
    /// `remote` was resolved from), or null for a path learnt from the peer's traffic.
    pub endpoint_name: Option<String>,
    /// `configured` or `learned`.
    pub source: String,
    /// 0 is the primary; larger numbers are backups (learned paths 255).
    pub preference: u8,
    /// `unknown`, `up` or `down`, as probing found it.
    pub state: String,
    /// Smoothed probe round-trip time, milliseconds; null before the first answer.
    pub rtt_ms: Option<f64>,
    /// Share of the last `probes_sampled` probes lost, 0.0 to 1.0.
    pub loss: f64,
    pub probes_sampled: u32,
    pub probes_lost: u32,
    /// Traffic to the peer goes on this path.
    pub active: bool,
    /// Seconds since the path last came up (null while not up).
    pub up_seconds: Option<u64>,
}

/// The last time traffic moved to another path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchReport {
    /// Seconds (tenths) ago.
    pub seconds_ago: f64,
    /// For people: `active path down: 3 probes lost`, `failback to preferred`, ...
    pub reason: String,
}

/// `meshd routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesReport {
    pub schema: u32,
    /// The TUN the routes point into.
    pub interface: String,
    /// The data plane's crypto-key routing table, in prefix order.
    pub routes: Vec<RouteEntry>,
    /// Whether the daemon runs a BGP speaker: `"running"` or `"not_running"` (a node outside
    /// a mesh without `[[bgp.neighbor]]`s, or a daemon older than the routing plane).
    pub bgp: String,
    /// The BGP sessions (iBGP from membership, eBGP from `[[bgp.neighbor]]`), by name.
    #[serde(default)]
    pub bgp_sessions: Vec<BgpSessionEntry>,
    /// Every BGP path, by prefix, the best first.
    #[serde(default)]
    pub bgp_routes: Vec<BgpRouteEntry>,
    /// Which exit each default route and `[[exit.route]]` destination uses, and why.
    #[serde(default)]
    pub exits: Vec<ExitEntry>,
}

/// What the routing plane shows; the daemon keeps it current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpView {
    pub asn: u32,
    pub router_id: Option<Ipv4Addr>,
    pub sessions: Vec<BgpSessionEntry>,
    /// `kernel` is filled in when a report is built.
    pub routes: Vec<BgpRouteEntry>,
    pub exits: Vec<ExitEntry>,
}

impl BgpView {
    /// A speaker that has just started.
    pub fn running(asn: u32, router_id: Ipv4Addr) -> BgpView {
        BgpView {
            asn,
            router_id: Some(router_id),
            ..BgpView::default()
        }
    }
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpSessionEntry {
    pub name: String,
    pub address: IpAddr,
    pub remote_asn: u32,
    /// `idle`, `connect`, `active`, `open_sent`, `open_confirm` or `established`.
    pub state: String,
    /// Same AS (a mesh member, or an iBGP router configured by hand).
    pub internal: bool,
    /// A route-reflector client of this node (a spoke of this core).
    pub rr_client: bool,
    /// The peer's BGP identifier once the session is up.
    pub router_id: Option<Ipv4Addr>,
    /// Prefixes announced to the peer now.
    pub advertised: usize,
    /// Prefixes the peer announces that import policy and the certificate check accepted.
    #[serde(default)]
    pub accepted: usize,
    /// Prefixes the peer announces that were refused (each is logged once per session with
    /// its reason).
    #[serde(default)]
    pub refused: usize,
    /// `refused` by kind of reason (`malformed`, `first_as_not_neighbor`, `as_loop`,
    /// `reflection_loop`, `policy`, `certificate`), kinds with none left out.
    #[serde(default)]
    pub refused_by_reason: BTreeMap<String, usize>,
}

/// One BGP path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpRouteEntry {
    pub prefix: IpNet,
    /// `None` for this node's own routes.
    pub next_hop: Option<IpAddr>,
    /// The AS path as BGP tools print it (`65010 65020`, sets in braces); empty inside the AS.
    pub as_path: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// RFC 1997 communities as `ASN:VALUE`.
    pub communities: Vec<String>,
    /// RFC 8092 large communities as `GLOBAL:LOCAL1:LOCAL2`.
    pub large_communities: Vec<String>,
    /// `igp`, `egp` or `incomplete`.
    pub origin: String,
    /// RFC 4456 ORIGINATOR_ID, when a route reflector passed the route on.
    pub originator_id: Option<Ipv4Addr>,
    /// The session's name, or `local` for this node's own routes.
    pub learnt_from: String,
    /// The session's neighbour address (`None` for own routes).
    pub learnt_from_address: Option<IpAddr>,
    /// The best path for its prefix.
    pub best: bool,
    /// A best path whose prefix meshd routes into the TUN (this node's own routes: false).
    pub kernel: bool,
}

/// The exit a default route (0.0.0.0/0, ::/0) or an `[[exit.route]]` destination uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEntry {
    pub prefix: IpNet,
    /// The exit's member name (`None`: no exit reachable, or a router outside the mesh).
    pub exit: Option<String>,
    /// The next hop traffic is sent to (`None`: this node is the exit, or none is reachable).
    pub next_hop: Option<IpAddr>,
    /// The IGP cost to the exit (the tunnel's RTT in milliseconds).
    pub cost: Option<u32>,
    /// `nearest` (a default route: BGP's best path, the nearest live exit), `rule` (the
    /// rule's first exit with a usable default route), `fallback` (none of the rule's exits
    /// has one: the nearest) or `none` (no exit reachable).
    pub reason: String,
    /// A rule's exits, most preferred first (empty for a default route).
    #[serde(default)]
    pub via: Vec<String>,
    /// The rule's exits passed over because they have no usable default route.
    #[serde(default)]
    pub unreachable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub prefix: IpNet,
    /// The peer packets for the prefix are encrypted to.
    pub peer: String,
    /// `peer` (a configured mesh node) or `client`.
    pub source: String,
    /// How the kernel sends the prefix into the TUN: `meshd` (a route meshd installed),
    /// `connected` (covered by an address on the TUN), or `none`.
    pub kernel: String,
}

/// Builds the `status` payload. `now` is the wall clock (uptime), `clock` the data plane's
/// monotonic one (peer states).
pub fn status(
    node: &NodeInfo,
    peers: &[KnownPeer],
    stats: &DataplaneStats,
    now: OffsetDateTime,
    clock: Instant,
) -> StatusReport {
    let mut traffic = Traffic::default();
    for peer in &stats.peers {
        traffic.rx_bytes += peer.rx_bytes;
        traffic.tx_bytes += peer.tx_bytes;
        traffic.rx_packets += peer.rx_packets;
        traffic.tx_packets += peer.tx_packets;
        traffic.transit_packets += peer.transit_packets;
    }
    let by_reason = DropReason::ALL
        .iter()
        .map(|reason| (reason.as_str().to_owned(), stats.drops.get(*reason)))
        .collect();
    let uptime = now - node.started_at;
    let mut states = StateCounts::default();
    for peer in peers {
        let state = stats
            .peer(&peer.config.name)
            .map_or(PeerState::Down, |s| health(peer, s, clock).state);
        match state {
            PeerState::Up => states.up += 1,
            PeerState::Stale => states.stale += 1,
            PeerState::Down => states.down += 1,
        }
    }
    let paths = stats.peers.iter().flat_map(|p| &p.paths);
    let paths_down = paths
        .clone()
        .filter(|p| p.state == meshd_tunnel::path::PathState::Down)
        .count();
    StatusReport {
        schema: SCHEMA_VERSION,
        node: NodeSummary {
            name: node.name.clone(),
            role: node.role.to_string(),
            public_key: encode_key(&node.public_key),
            interface: node.interface.clone(),
            mtu: node.mtu,
            listen_port: node.listen_port,
            listening: node.listening.clone(),
            addresses: node.addresses.clone(),
            endpoints: node.endpoints.clone(),
        },
        daemon: DaemonSummary {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            started_at: node.started_at,
            uptime_seconds: u64::try_from(uptime.whole_seconds()).unwrap_or(0),
        },
        peers: PeerCounts {
            total: peers.len(),
            up: stats.peers.iter().filter(|p| is_up(p)).count(),
            clients: peers.iter().filter(|p| p.kind == PeerKind::Client).count(),
            states,
            paths_total: paths.count(),
            paths_down,
        },
        traffic,
        drops: Drops {
            total: stats.drops.total(),
            by_reason,
        },
        bgp: None,
    }
}

/// Adds the routing plane's session counts to a `status` payload.
pub fn status_with_bgp(mut report: StatusReport, view: &BgpView) -> StatusReport {
    let sessions: Vec<BgpSessionCounts> = view
        .sessions
        .iter()
        .map(|s| BgpSessionCounts {
            name: s.name.clone(),
            state: s.state.clone(),
            accepted: s.accepted,
            refused: s.refused,
        })
        .collect();
    report.bgp = Some(BgpSummary {
        established: sessions.iter().filter(|s| s.state == "established").count(),
        accepted: sessions.iter().map(|s| s.accepted).sum(),
        refused: sessions.iter().map(|s| s.refused).sum(),
        sessions,
    });
    report
}

/// Builds the `peers` payload: the configured peers in order, with their counters, states
/// and paths at `now` (the data plane's monotonic clock).
pub fn peers(peers: &[KnownPeer], stats: &DataplaneStats, now: Instant) -> PeersReport {
    let reports = peers
        .iter()
        .map(|peer| {
            let counters = stats.peer(&peer.config.name);
            peer_report(peer, counters, now)
        })
        .collect();
    PeersReport {
        schema: SCHEMA_VERSION,
        peers: reports,
    }
}

/// The peer's state: [`peer_state::health`] with the peer's keepalive.
pub fn health(peer: &KnownPeer, stats: &PeerStats, now: Instant) -> peer_state::Health {
    peer_state::health(stats, peer.config.persistent_keepalive, now)
}

/// Seconds to one decimal, for ages in JSON.
fn tenths(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
}

fn path_report(path: &PathStats, now: Instant) -> PathReport {
    let (source, endpoint_name) = match &path.source {
        PathSource::Configured { name } => ("configured", Some(name.clone())),
        PathSource::Learned => ("learned", None),
    };
    PathReport {
        local: path.path.local,
        remote: path.path.remote,
        endpoint_name,
        source: source.to_owned(),
        preference: path.preference,
        state: path.state.to_string(),
        rtt_ms: path.srtt.map(|d| d.as_secs_f64() * 1000.0),
        loss: path.loss(),
        probes_sampled: path.sampled,
        probes_lost: path.lost,
        active: path.active,
        up_seconds: path
            .up_since
            .map(|since| now.saturating_duration_since(since).as_secs()),
    }
}

fn peer_report(peer: &KnownPeer, stats: Option<&PeerStats>, now: Instant) -> PeerReport {
    let config = &peer.config;
    let health = stats.map(|s| health(peer, s, now));
    let role = match peer.kind {
        PeerKind::Client => Some("client".to_owned()),
        PeerKind::Router => Some("router".to_owned()),
        PeerKind::Node(role) => role.map(|r| r.to_string()),
    };
    PeerReport {
        name: config.name.clone(),
        role,
        public_key: encode_key(&config.public_key),
        endpoint: stats.and_then(|s| s.endpoint),
        configured_endpoints: config.endpoints.clone(),
        allowed_prefixes: config.allowed_ips.clone(),
        persistent_keepalive_seconds: config.persistent_keepalive.map(|d| d.as_secs()),
        up: stats.is_some_and(is_up),
        state: health.map_or(PeerState::Down, |h| h.state),
        state_reason: health
            .map_or(peer_state::Reason::NoSession, |h| h.reason)
            .as_str()
            .to_owned(),
        last_received_seconds_ago: health.and_then(|h| h.last_received_ago).map(tenths),
        silence_limit_seconds: health
            .map_or_else(
                || peer_state::silence_limit(false, config.persistent_keepalive),
                |h| h.silence_limit,
            )
            .as_secs(),
        probing: stats.is_some_and(|s| s.probing),
        local_address: stats.and_then(|s| s.local_address),
        paths: stats.map_or_else(Vec::new, |s| {
            s.paths.iter().map(|p| path_report(p, now)).collect()
        }),
        last_switch: stats
            .and_then(|s| s.last_switch.as_ref())
            .map(|(at, reason)| SwitchReport {
                seconds_ago: tenths(now.saturating_duration_since(*at)),
                reason: reason.to_string(),
            }),
        path_switches: stats.map_or(0, |s| s.path_switches),
        relay: stats.and_then(|s| {
            Some(RelayReport {
                via: s.relay.clone()?,
                reason: s.relay_reason.map(|r| r.to_string()).unwrap_or_default(),
                packets: s.relayed_packets,
            })
        }),
        last_handshake_seconds_ago: stats.and_then(|s| s.last_handshake).map(|d| d.as_secs()),
        rtt_ms: stats.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
        rx_bytes: stats.map_or(0, |s| s.rx_bytes),
        tx_bytes: stats.map_or(0, |s| s.tx_bytes),
        rx_packets: stats.map_or(0, |s| s.rx_packets),
        tx_packets: stats.map_or(0, |s| s.tx_packets),
        transit_packets: stats.map_or(0, |s| s.transit_packets),
        handshakes: stats.map_or(0, |s| s.handshakes),
        bgp: None,
    }
}

/// The session is live (the old meaning of "up", kept for `up` fields and `meshd_peer_up`).
pub(crate) fn is_up(stats: &PeerStats) -> bool {
    stats
        .last_handshake
        .is_some_and(|age| age < SESSION_LIFETIME)
}

/// Builds the `routes` payload from the peers' allowed prefixes (the data plane's routing
/// table) and what the daemon put in the kernel.
pub fn routes(node: &NodeInfo, peers: &[KnownPeer]) -> RoutesReport {
    let mut routes: Vec<RouteEntry> = peers
        .iter()
        .flat_map(|peer| {
            peer.config
                .allowed_ips
                .iter()
                .map(move |prefix| RouteEntry {
                    prefix: *prefix,
                    peer: peer.config.name.clone(),
                    source: match peer.kind {
                        PeerKind::Client => "client",
                        PeerKind::Node(_) | PeerKind::Router => "peer",
                    }
                    .to_owned(),
                    kernel: kernel_route(node, *prefix).to_owned(),
                })
        })
        .collect();
    routes.sort_by(|a, b| a.prefix.cmp(&b.prefix).then_with(|| a.peer.cmp(&b.peer)));
    RoutesReport {
        schema: SCHEMA_VERSION,
        interface: node.interface.clone(),
        routes,
        bgp: "not_running".to_owned(),
        bgp_sessions: Vec::new(),
        bgp_routes: Vec::new(),
        exits: Vec::new(),
    }
}

/// Adds the routing plane's view to a `routes` payload.
pub fn with_bgp(mut report: RoutesReport, node: &NodeInfo, view: &BgpView) -> RoutesReport {
    report.bgp = "running".to_owned();
    report.bgp_sessions = view.sessions.clone();
    report.exits = view.exits.clone();
    report.bgp_routes = view
        .routes
        .iter()
        .map(|route| BgpRouteEntry {
            kernel: route.best
                && route.next_hop.is_some()
                && node.kernel_routes.contains(&route.prefix),
            ..route.clone()
        })
        .collect();
    report
}

fn kernel_route(node: &NodeInfo, prefix: IpNet) -> &'static str {
    if node.kernel_routes.contains(&prefix) {
        "meshd"
    } else if node
        .addresses
        .iter()
        .any(|address| address.trunc().contains(&prefix))
    {
        "connected"
    } else {
        "none"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn node() -> NodeInfo {
        NodeInfo {
            name: "alpha".into(),
            role: Role::Core,
            public_key: [1; 32],
            interface: "mesh0".into(),
            mtu: 1420,
            listen_port: 51820,
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
}
