//! Combining the sources of peers into the one set the data plane gets. Pure.
//!
//! Precedence, highest first, and why:
//! 1. `[[peer]]`s from the configuration: the operator wrote them by hand;
//! 2. local clients (`clients.json`): this node handed out their addresses itself;
//! 3. members from the control plane: derived from certificates, and re-derived on every
//!    membership change, so they give way rather than make the data plane refuse the set.
//!
//! A lower peer whose name or key is already taken is left out; prefixes a higher peer
//! already claims are trimmed from it. Either way the conflict is reported, so the daemon can
//! log it, and the data plane never sees two peers claiming one prefix.
//!
//! Last come BGP routes (the routing plane's best routes): each prefix is added to the peer
//! that carries its next hop (longest match over the peers' prefixes), which for a member
//! behind another core is that core, and for a spoke is its core. A prefix some peer already
//! claims stays with that peer (certificates and configuration outrank BGP); a route whose
//! next hop no peer carries (a router outside the mesh, such as an eBGP neighbour on a LAN)
//! becomes a kernel route through that next hop instead ([`Combined::gateway_routes`]).
//!
//! A route with several equal-cost next hops (a shared prefix announced by several members,
//! `[routing] max_paths`) goes to every peer that carries one of them, as an equal-cost
//! prefix (`ecmp_ips`): the data plane spreads flows over those peers. Next hops carried by
//! one peer count once (a spoke reaches every announcer through its core: one peer, an
//! ordinary route), and next hops no peer carries are left out while some peer carries one.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{KnownPeer, PeerKind};

/// Where the peer set's entries come from; each source is replaced as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSources {
    /// `[[peer]]`s from `meshd.toml` (endpoint names resolved).
    pub configured: Vec<KnownPeer>,
    /// Devices from `clients.json`.
    pub clients: Vec<KnownPeer>,
    /// Tunnels derived from membership.
    pub members: Vec<KnownPeer>,
    /// Best routes from BGP, by prefix.
    pub bgp: Vec<BgpRoute>,
}

/// A best route from the routing plane: its prefix and the next hops of its multipath group,
/// the best path's first, each once (one for an ordinary route; never empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BgpRoute {
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
}

impl BgpRoute {
    /// A route through one next hop.
    pub fn via(prefix: IpNet, next_hop: IpAddr) -> BgpRoute {
        BgpRoute {
            prefix,
            next_hops: vec![next_hop],
        }
    }
}

/// What [`PeerSources::combine`] gives: the peers, and the conflicts it resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    pub peers: Vec<KnownPeer>,
    /// One sentence per peer left out or trimmed, for the log.
    pub conflicts: Vec<String>,
    /// BGP routes whose next hop no peer carries: routed by the kernel through the next hop.
    pub gateway_routes: Vec<GatewayRoute>,
}

/// A route the kernel sends through a gateway outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayRoute {
    pub prefix: IpNet,
    pub next_hop: IpAddr,
}

impl PeerSources {
    /// Splits what the local API loaded at start-up (configured peers and clients) by kind.
    pub fn from_local(peers: Vec<KnownPeer>) -> Self {
        let (clients, configured) = peers.into_iter().partition(|p| p.kind == PeerKind::Client);
        Self {
            configured,
            clients,
            members: Vec::new(),
            bgp: Vec::new(),
        }
    }

    /// The peers in order of precedence, conflicts resolved (see the module comment).
    pub fn combine(&self) -> Combined {
        let mut peers: Vec<KnownPeer> = Vec::new();
        let mut conflicts = Vec::new();
        let sources = [
            ("configured peer", &self.configured),
            ("client", &self.clients),
            ("member", &self.members),
        ];
        for (what, source) in sources {
            for candidate in source {
                let name = &candidate.config.name;
                if let Some(owner) = peers.iter().find(|p| {
                    p.config.name == *name || p.config.public_key == candidate.config.public_key
                }) {
                    conflicts.push(format!(
                        "{what} {name:?} left out: {:?} already has its name or key",
                        owner.config.name
                    ));
                    continue;
                }
                let mut peer = candidate.clone();
                let taken: Vec<IpNet> = peer
                    .config
                    .allowed_ips
                    .iter()
                    .filter(|net| claimed(&peers, net))
                    .copied()
                    .collect();
                if !taken.is_empty() {
                    peer.config.allowed_ips.retain(|net| !taken.contains(net));
                    let list: Vec<String> = taken.iter().map(ToString::to_string).collect();
                    conflicts.push(format!(
                        "{what} {name:?}: prefixes {} are claimed by another peer and not routed to it",
                        list.join(", ")
                    ));
                }
                peers.push(peer);
            }
        }
        let gateway_routes = attach_bgp_routes(&mut peers, &self.bgp, &mut conflicts);
        Combined {
            peers,
            conflicts,
            gateway_routes,
        }
    }
}

/// Adds each BGP route's prefix to the peer carrying its next hop (to each peer carrying one
/// of its next hops, as an equal-cost prefix, when several do), unless a peer claims it
/// already; returns the routes whose next hops no peer carries. Linear in the routes (a full
/// table may arrive over iBGP): carriers are looked up in the peers' own prefixes (not in
/// the BGP prefixes added here), once per distinct next hop, and claims in a hash map.
fn attach_bgp_routes(
    peers: &mut [KnownPeer],
    routes: &[BgpRoute],
    conflicts: &mut Vec<String>,
) -> Vec<GatewayRoute> {
    let mut claims: HashMap<IpNet, usize> = HashMap::new();
    for (i, peer) in peers.iter().enumerate() {
        for net in &peer.config.allowed_ips {
            claims.entry(*net).or_insert(i);
        }
    }
    let own: Vec<Vec<IpNet>> = peers.iter().map(|p| p.config.allowed_ips.clone()).collect();
    let mut carriers: HashMap<IpAddr, Option<usize>> = HashMap::new();
    let mut gateway_routes = Vec::new();
    let mut via: Vec<usize> = Vec::new();
    for route in routes {
        let Some(&first) = route.next_hops.first() else {
            continue;
        };
        let prefix = route.prefix.trunc();
        via.clear();
        for next_hop in &route.next_hops {
            let carrier = *carriers
                .entry(*next_hop)
                .or_insert_with(|| carrier(&own, *next_hop));
            if let Some(c) = carrier
                && !via.contains(&c)
            {
                via.push(c);
            }
        }
        let Some(&primary) = via.first() else {
            gateway_routes.push(GatewayRoute {
                prefix,
                next_hop: first,
            });
            continue;
        };
        match claims.get(&prefix) {
            Some(&owner) if !via.contains(&owner) => conflicts.push(format!(
                "BGP route {prefix} via {first} stays with peer {:?}, which claims it, not {:?}",
                peers[owner].config.name, peers[primary].config.name
            )),
            Some(_) => {}
            None if via.len() == 1 => {
                peers[primary].config.allowed_ips.push(prefix);
                claims.insert(prefix, primary);
            }
            None => {
                for &v in &via {
                    peers[v].config.ecmp_ips.push(prefix);
                }
                claims.insert(prefix, primary);
            }
        }
    }
    gateway_routes
}

/// The peer whose most specific prefix contains `address` (as the data plane routes it).
pub(crate) fn carrier(prefixes: &[Vec<IpNet>], address: IpAddr) -> Option<usize> {
    prefixes
        .iter()
        .enumerate()
        .filter_map(|(i, nets)| {
            let len = nets
                .iter()
                .filter(|net| net.contains(&address))
                .map(IpNet::prefix_len)
                .max()?;
            Some((len, i))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, i)| i)
}

fn claimed(peers: &[KnownPeer], net: &IpNet) -> bool {
    peers.iter().any(|p| p.config.allowed_ips.contains(net))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataplane::PeerConfig;
    use mesh_config::Role;

    pub(crate) fn peer(name: &str, key: u8, kind: PeerKind, allowed: &[&str]) -> KnownPeer {
        KnownPeer {
            config: PeerConfig {
                name: name.into(),
                public_key: [key; 32],
                endpoints: Vec::new(),
                allowed_ips: allowed.iter().map(|p| p.parse().unwrap()).collect(),
                ecmp_ips: Vec::new(),
                persistent_keepalive: None,
                relay: false,
            },
            kind,
        }
    }

    fn names(combined: &Combined) -> Vec<&str> {
        combined
            .peers
            .iter()
            .map(|p| p.config.name.as_str())
            .collect()
    }

    const MEMBER: PeerKind = PeerKind::Node(Some(Role::Core));

    #[test]
    fn all_three_sources_are_combined_in_order() {
        let sources = PeerSources {
            configured: vec![peer("bird", 1, PeerKind::Node(None), &["192.0.2.0/24"])],
            clients: vec![peer("phone", 2, PeerKind::Client, &["10.1.0.2/32"])],
            members: vec![peer("beta", 3, MEMBER, &["10.2.0.0/16"])],
            bgp: Vec::new(),
        };
        let combined = sources.combine();
        assert_eq!(names(&combined), ["bird", "phone", "beta"]);
        assert!(combined.conflicts.is_empty());
    }

    #[test]
    fn a_member_gives_way_to_a_configured_peer_or_client() {
        let sources = PeerSources {
            configured: vec![peer("beta", 1, PeerKind::Node(None), &["10.2.0.0/16"])],
            clients: vec![peer("phone", 2, PeerKind::Client, &["10.1.0.2/32"])],
            members: vec![
                peer("beta", 3, MEMBER, &["10.2.0.0/16"]),
                peer("gamma", 2, MEMBER, &["10.3.0.0/16"]),
                peer("delta", 4, MEMBER, &["10.2.0.0/16", "10.4.0.0/16"]),
            ],
            bgp: Vec::new(),
        };
        let combined = sources.combine();
        assert_eq!(names(&combined), ["beta", "phone", "delta"]);
        let delta = &combined.peers[2].config;
        assert_eq!(delta.allowed_ips, ["10.4.0.0/16".parse::<IpNet>().unwrap()]);
        assert_eq!(combined.conflicts.len(), 3, "{:?}", combined.conflicts);
        assert!(combined.conflicts[0].contains("\"beta\" left out"));
        assert!(combined.conflicts[2].contains("10.2.0.0/16"));
    }

    #[test]
    fn local_peers_are_split_by_kind() {
        let sources = PeerSources::from_local(vec![
            peer("bird", 1, PeerKind::Node(None), &[]),
            peer("phone", 2, PeerKind::Client, &[]),
        ]);
        assert_eq!(sources.configured[0].config.name, "bird");
        assert_eq!(sources.clients[0].config.name, "phone");
        assert!(sources.members.is_empty());
    }

    fn route(prefix: &str, next_hop: &str) -> BgpRoute {
        BgpRoute::via(prefix.parse().unwrap(), next_hop.parse().unwrap())
    }

    #[test]
    fn bgp_routes_follow_their_next_hop_and_give_way_to_claims() {
        let sources = PeerSources {
            members: vec![
                // A core and, through it, its spoke 10.3/16 with its LAN.
                peer(
                    "beta",
                    3,
                    MEMBER,
                    &["10.2.0.0/16", "10.3.0.0/16", "192.168.42.0/24"],
                ),
                peer("gamma", 4, MEMBER, &["10.4.0.0/16", "fd00:0:0:4::/64"]),
            ],
            bgp: vec![
                // A friend's network behind the spoke: through beta.
                route("203.0.113.0/24", "10.3.0.1"),
                // IPv6 next hop.
                route("2001:db8:77::/48", "fd00:0:0:4::1"),
                // Already beta's (from the certificate), announced by its owner: nothing.
                route("192.168.42.0/24", "10.3.0.1"),
                // Claimed by beta but the best route points at gamma: beta keeps it.
                route("10.2.0.0/16", "10.4.0.1"),
                // Next hop nobody carries (an eBGP neighbour's own address): not forwarded.
                route("198.18.0.0/15", "198.51.100.9"),
            ],
            ..PeerSources::default()
        };
        let combined = sources.combine();
        let beta = &combined.peers[0].config.allowed_ips;
        let gamma = &combined.peers[1].config.allowed_ips;
        let net = |p: &str| p.parse::<IpNet>().unwrap();
        assert_eq!(
            *beta,
            [
                "10.2.0.0/16",
                "10.3.0.0/16",
                "192.168.42.0/24",
                "203.0.113.0/24"
            ]
            .map(net)
        );
        assert_eq!(
            *gamma,
            ["10.4.0.0/16", "fd00:0:0:4::/64", "2001:db8:77::/48"].map(net)
        );
        assert_eq!(combined.conflicts.len(), 1, "{:?}", combined.conflicts);
        assert_eq!(
            combined.gateway_routes,
            [GatewayRoute {
                prefix: net("198.18.0.0/15"),
                next_hop: "198.51.100.9".parse().unwrap()
            }]
        );
        assert!(combined.conflicts[0].contains("stays with peer \"beta\""));
    }

    /// Many routes through one core all land on it, each once.
    #[test]
    fn a_large_bgp_table_goes_to_the_carrier_of_its_next_hop() {
        let mut routes = Vec::new();
        for i in 0..20_000u32 {
            let net = std::net::Ipv4Addr::from((100 << 24) | (i << 8));
            routes.push(BgpRoute::via(
                IpNet::V4(ipnet::Ipv4Net::new(net, 24).unwrap()),
                "10.2.0.1".parse().unwrap(),
            ));
        }
        let sources = PeerSources {
            members: vec![peer("beta", 3, MEMBER, &["10.2.0.0/16"])],
            bgp: routes,
            ..PeerSources::default()
        };
        let combined = sources.combine();
        assert_eq!(combined.peers[0].config.allowed_ips.len(), 20_001);
        assert!(combined.conflicts.is_empty() && combined.gateway_routes.is_empty());
    }

    /// A shared prefix with equal-cost next hops on two cores goes to both as an equal-cost
    /// prefix; next hops behind one peer (a spoke's view: all through its core) make an
    /// ordinary route; a next hop no peer carries is left out while another is carried.
    #[test]
    fn a_multipath_route_goes_to_every_peer_carrying_one_of_its_next_hops() {
        let group = |prefix: &str, hops: &[&str]| BgpRoute {
            prefix: prefix.parse().unwrap(),
            next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
        };
        let sources = PeerSources {
            members: vec![
                peer("beta", 3, MEMBER, &["10.2.0.0/16"]),
                peer("gamma", 4, MEMBER, &["10.3.0.0/16", "10.4.0.0/16"]),
            ],
            bgp: vec![
                group("203.0.113.53/32", &["10.2.0.1", "10.3.0.1", "198.51.100.9"]),
                // Both announcers behind gamma (gamma and its spoke 10.4/16).
                group("203.0.113.54/32", &["10.3.0.1", "10.4.0.1"]),
                // Claimed by beta already (its certificate): stays beta's alone.
                group("10.2.0.0/16", &["10.2.0.1", "10.3.0.1"]),
                group("198.18.0.0/15", &["198.51.100.9", "198.51.100.10"]),
            ],
            ..PeerSources::default()
        };
        let combined = sources.combine();
        let net = |p: &str| p.parse::<IpNet>().unwrap();
        let (beta, gamma) = (&combined.peers[0].config, &combined.peers[1].config);
        assert_eq!(beta.ecmp_ips, [net("203.0.113.53/32")]);
        assert_eq!(gamma.ecmp_ips, [net("203.0.113.53/32")]);
        assert_eq!(beta.allowed_ips, [net("10.2.0.0/16")]);
        assert_eq!(
            gamma.allowed_ips,
            ["10.3.0.0/16", "10.4.0.0/16", "203.0.113.54/32"].map(net)
        );
        assert_eq!(
            combined.gateway_routes,
            [GatewayRoute {
                prefix: net("198.18.0.0/15"),
                next_hop: "198.51.100.9".parse().unwrap()
            }]
        );
        assert!(combined.conflicts.is_empty(), "{:?}", combined.conflicts);
    }
}
