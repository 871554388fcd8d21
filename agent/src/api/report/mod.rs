//! What `meshd status`, `meshd peers` and `meshd routes` report: the JSON payloads of the
//! control socket, which `--json` prints unchanged. Every payload starts with
//! `"schema": SCHEMA_VERSION`; fields may be added within a schema version, never renamed,
//! removed or given another meaning (docs/operations.md describes each field).
//!
//! The builders are pure: they take the daemon's facts, the data plane counters and `now`.
//!
//! One file per report: `status.rs`, `peers.rs`, `routes.rs`; `bgp_view.rs` is what the
//! routing plane gives them (and the metrics). This file holds the node's facts they share.
//! The numbers for people (`meshd status` without `--json`) are formatted in `api/human.rs`.

mod bgp_view;
mod peers;
mod routes;
mod status;
#[cfg(test)]
pub(crate) mod tests;

use std::net::SocketAddr;

use ipnet::IpNet;
use mesh_config::Role;
use time::OffsetDateTime;

pub use bgp_view::{BgpRouteEntry, BgpSessionEntry, BgpView, ExitEntry};
pub(crate) use peers::is_up;
pub use peers::{
    PathReport, PeerBgpReport, PeerReport, PeersReport, RelayReport, SwitchReport, health, peers,
    peers_with_bgp,
};
pub use routes::{
    EcmpGroupEntry, EcmpPathEntry, RouteEntry, RoutesReport, ecmp_groups, routes, with_bgp,
};
pub use status::{
    BgpSessionCounts, BgpSummary, DaemonSummary, Drops, NodeSummary, PeerCounts, StateCounts,
    StatusReport, Traffic, status, status_with_bgp,
};

/// Version of the report schema (the `schema` field of every payload).
pub const SCHEMA_VERSION: u32 = 1;

pub use super::peer_state::SESSION_LIFETIME;

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
    /// Whether the kernel handshake guard (nftables `inet meshd_guard`) was installed at start.
    pub handshake_guard: bool,
    /// Routes meshd installed in the kernel towards the TUN.
    pub kernel_routes: Vec<IpNet>,
    pub started_at: OffsetDateTime,
}
