//! What the routing plane shows ([`BgpView`]): sessions, paths and exits, as the status,
//! peers and routes reports and the metrics take them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
    /// The mesh member that announces the prefix on this path (the ORIGINATOR_ID a route
    /// reflector added, else the member at the next hop); `None` for this node's own routes
    /// and routes from outside the mesh.
    #[serde(default)]
    pub announcer: Option<String>,
    /// The IGP cost to the next hop (the tunnel's RTT in milliseconds; `None`: this node's
    /// own route, or a next hop that cannot be reached).
    #[serde(default)]
    pub igp_cost: Option<u32>,
    /// The data plane sends the prefix's traffic this way: the best path, or another path of
    /// its equal-cost group (flows are spread over the group by hash). A default route's
    /// other equal paths are not used: defaults go through the one exit in `exits`.
    #[serde(default)]
    pub used: bool,
    /// Where the path stands: `best`; `equal_cost` (as good as the best, in its group);
    /// `max_paths` (as good, but the group is full, `[routing] max_paths`); `same_next_hop`
    /// (as good, through a next hop already in the group); `unreachable` (its next hop
    /// cannot be reached); or the step of the decision process at which the best path won:
    /// `local_route` (this node announces the prefix itself), `local_pref`,
    /// `as_path_length`, `origin`, `med`, `ebgp_preferred`, `igp_cost` (a higher cost).
    /// Empty from a daemon older than this field.
    #[serde(default)]
    pub selection: String,
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
