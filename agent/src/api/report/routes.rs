//! `meshd routes`: the crypto-key routing table, how the kernel reaches the TUN, and the
//! BGP routes and exits.

use std::net::IpAddr;

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
    /// Every prefix but the defaults with paths through more than one next hop (a shared,
    /// anycast, prefix announced by several members, typically): the next hops the data plane
    /// spreads its flows over, and why the others are not used. In prefix order.
    #[serde(default)]
    pub ecmp_groups: Vec<EcmpGroupEntry>,
}

/// One prefix with paths through several next hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcmpGroupEntry {
    pub prefix: IpNet,
    /// The next hops the data plane uses for the prefix, the best path's first (empty when
    /// this node announces the prefix itself: it answers for it).
    pub next_hops: Vec<IpAddr>,
    /// `equal_cost` (several next hops as good as each other: flows are spread over them by
    /// hash), `best` (one next hop is better than the others), `local` (this node announces
    /// the prefix itself) or `none` (no usable path).
    pub reason: String,
    /// The IGP cost of the used next hops (one cost: they are equal).
    pub cost: Option<u32>,
    /// Every path, the used ones first, each with where it stands.
    pub paths: Vec<EcmpPathEntry>,
}

/// One path of an [`EcmpGroupEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcmpPathEntry {
    /// `None`: this node's own route.
    pub next_hop: Option<IpAddr>,
    /// The member announcing the prefix this way ([`BgpRouteEntry::announcer`]).
    pub announcer: Option<String>,
    pub igp_cost: Option<u32>,
    /// Whether the data plane uses it ([`BgpRouteEntry::used`]).
    pub used: bool,
    /// Why it is or is not used ([`BgpRouteEntry::selection`]).
    pub selection: String,
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
    /// The prefix is shared (an equal-cost group): the data plane spreads its flows by hash
    /// over every peer listed with it.
    #[serde(default)]
    pub ecmp: bool,
}

/// Builds the `routes` payload from the peers' allowed prefixes (the data plane's routing
/// table) and what the daemon put in the kernel.
pub fn routes(node: &NodeInfo, peers: &[KnownPeer]) -> RoutesReport {
    let mut routes: Vec<RouteEntry> = peers
        .iter()
        .flat_map(|peer| {
            let source = match peer.kind {
                PeerKind::Client => "client",
                PeerKind::Node(_) | PeerKind::Router => "peer",
            };
            let allowed = peer.config.allowed_ips.iter().map(|p| (*p, false));
            let shared = peer.config.ecmp_ips.iter().map(|p| (*p, true));
            allowed.chain(shared).map(move |(prefix, ecmp)| RouteEntry {
                prefix,
                peer: peer.config.name.clone(),
                source: source.to_owned(),
                kernel: kernel_route(node, prefix).to_owned(),
                ecmp,
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
        ecmp_groups: Vec::new(),
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
    report.ecmp_groups = ecmp_groups(&report.bgp_routes);
    report
}

/// The prefixes (but the defaults, whose choice is in `exits`) whose paths go through more
/// than one next hop, from the paths in prefix order.
pub fn ecmp_groups(routes: &[BgpRouteEntry]) -> Vec<EcmpGroupEntry> {
    routes
        .chunk_by(|a, b| a.prefix == b.prefix)
        .filter(|paths| paths[0].prefix.prefix_len() != 0)
        .filter(|paths| paths.iter().any(|p| p.next_hop != paths[0].next_hop))
        .map(|paths| {
            let prefix = paths[0].prefix;
            let mut paths: Vec<EcmpPathEntry> = paths
                .iter()
                .map(|p| EcmpPathEntry {
                    next_hop: p.next_hop,
                    announcer: p.announcer.clone(),
                    igp_cost: p.igp_cost,
                    used: p.used,
                    selection: p.selection.clone(),
                })
                .collect();
            // The best first, then the rest of the used ones, then the others (stable).
            paths.sort_by_key(|p| (!p.used, p.selection != "best"));
            let used: Vec<&EcmpPathEntry> = paths.iter().filter(|p| p.used).collect();
            let own = used.iter().any(|p| p.next_hop.is_none());
            let reason = match used.len() {
                _ if own => "local",
                0 => "none",
                1 => "best",
                _ => "equal_cost",
            };
            EcmpGroupEntry {
                prefix,
                next_hops: used.iter().filter_map(|p| p.next_hop).collect(),
                reason: reason.to_owned(),
                cost: used.first().and_then(|p| p.igp_cost),
                paths,
            }
        })
        .collect()
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
