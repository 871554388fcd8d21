//! `meshd routes`: the crypto-key routing table, how the kernel reaches the TUN, and the
//! BGP routes and exits.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{BgpRouteEntry, BgpSessionEntry, BgpView, ExitEntry, NodeInfo, SCHEMA_VERSION};
use crate::peerset::{KnownPeer, PeerKind};

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
