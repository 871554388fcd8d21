//! `meshd status`: the node, the daemon, peer and state counts, traffic and drops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::peers::{health, is_up};
use super::{BgpView, NodeInfo, SCHEMA_VERSION};
use crate::api::peer_state::PeerState;
use crate::dataplane::{DataplaneStats, DropReason};
use crate::peerset::{KnownPeer, PeerKind};
use crate::state::encode_key;

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
    /// Whether the kernel drops handshake-initiation floods per source before meshd
    /// (nftables `inet meshd_guard`); false: only the userspace limit (or an older daemon).
    #[serde(default)]
    pub handshake_guard: bool,
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
            handshake_guard: node.handshake_guard,
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
