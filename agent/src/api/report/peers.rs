//! `meshd peers`: each peer with its state, counters, paths, relay and BGP session.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use meshd_tunnel::path::{PathSource, PathStats};

use super::{BgpView, SCHEMA_VERSION, SESSION_LIFETIME};
use crate::api::peer_state::{self, PeerState};
use crate::dataplane::{DataplaneStats, PeerStats};
use crate::peerset::{KnownPeer, PeerKind};
use crate::state::encode_key;

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
