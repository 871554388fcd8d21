//! Which prefixes the kernel should route into the TUN, given the peer set. Pure.
//!
//! The mesh pools are routed as a whole, so that traffic to an address nobody holds yet is
//! dropped by the data plane instead of leaking to the default route. Every prefix a peer
//! carries (a member's /16 and /64, its LAN such as `192.168.42.0/24`, a configured peer's
//! networks) gets its own route too, installed when it appears and removed when it goes, so
//! that `ip route` and `meshd routes` show each one. Prefixes inside the TUN's own networks
//! (the node's clients) are left alone: the kernel's connected routes already send them
//! there.
//!
//! Routes to the Internet through the mesh's exits (a prefix of length 0, and the
//! destinations of `[[exit.route]]` rules) never go into the main table: with the main
//! table's default route pointing into the TUN, the tunnels' own underlay packets would
//! follow it into the tunnel (the "WireGuard default route" trap). They are exit-table
//! routes, installed into `[exit] table` behind policy rules, and only when the node uses
//! exits (`[exit] use = "nearest"`). With `use = "none"` the data plane still carries them
//! (for the spokes and clients behind this node that do use the exit), the kernel does not.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::KnownPeer;

/// The fixed facts the wanted routes depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// The TUN's own addresses, with their prefix lengths.
    pub own_addresses: Vec<IpNet>,
    /// The mesh pools (IPv4 and IPv6), when the node is a mesh member.
    pub pools: Vec<IpNet>,
    /// The destinations of `[[exit.route]]` rules: routed through exits like the defaults.
    pub exit_destinations: Vec<IpNet>,
    /// Whether exit-table routes go into the kernel (`[exit] use = "nearest"`).
    pub use_exits: bool,
}

/// The wanted routes into the TUN, by routing table; each list sorted, each route once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedRoutes {
    /// Into the main table.
    pub main: Vec<IpNet>,
    /// Into the exit table (empty unless the node uses exits).
    pub exit: Vec<IpNet>,
}

impl RoutePlan {
    /// The main-table routes into the TUN for `peers`, sorted, each once.
    pub fn wanted(&self, peers: &[KnownPeer]) -> Vec<IpNet> {
        self.wanted_by_table(peers).main
    }

    /// The exit-table routes into the TUN for `peers`, sorted, each once; empty unless the
    /// node uses exits.
    pub fn wanted_exit(&self, peers: &[KnownPeer]) -> Vec<IpNet> {
        self.wanted_by_table(peers).exit
    }

    /// The routes into the TUN for `peers`, split by table.
    pub fn wanted_by_table(&self, peers: &[KnownPeer]) -> WantedRoutes {
        let connected: Vec<IpNet> = self.own_addresses.iter().map(IpNet::trunc).collect();
        // The pools are always main-table routes, even if a rule names one.
        let mut main: BTreeSet<IpNet> = self.pools.iter().map(IpNet::trunc).collect();
        let mut exit = BTreeSet::new();
        let carried = peers
            .iter()
            .flat_map(|peer| {
                let config = &peer.config;
                config
                    .allowed_ips
                    .iter()
                    .chain(&config.ecmp_ips)
                    .map(IpNet::trunc)
            })
            .filter(|prefix| !connected.iter().any(|net| net.contains(prefix)));
        for prefix in carried {
            if main.contains(&prefix) {
                continue;
            }
            if self.is_exit_route(prefix) {
                exit.insert(prefix);
            } else {
                main.insert(prefix);
            }
        }
        WantedRoutes {
            main: main.into_iter().collect(),
            exit: if self.use_exits {
                exit.into_iter().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// A default route, or exactly a rule's destination (not whatever lies inside one: a
    /// rule for 0.0.0.0/1 must not pull members' prefixes out of the main table).
    fn is_exit_route(&self, prefix: IpNet) -> bool {
        prefix.prefix_len() == 0
            || self
                .exit_destinations
                .iter()
                .any(|destination| destination.trunc() == prefix)
    }
}

/// What to add and what to remove to go from `installed` to `wanted`.
pub fn route_changes(installed: &[IpNet], wanted: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    let add = wanted
        .iter()
        .filter(|p| !installed.contains(p))
        .copied()
        .collect();
    let remove = installed
        .iter()
        .filter(|p| !wanted.contains(p))
        .copied()
        .collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peerset::PeerKind;
    use crate::peerset::merge::tests::peer;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn peer_prefixes_and_pools_get_routes_and_connected_prefixes_do_not() {
        let plan = RoutePlan {
            own_addresses: nets(&["10.1.0.1/16", "fd00:1::1/64"]),
            pools: nets(&["10.0.0.0/8", "fd00::/16"]),
            ..RoutePlan::default()
        };
        let peers = [
            peer(
                "beta",
                1,
                PeerKind::Node(None),
                &["10.2.0.0/16", "192.168.42.0/24", "fd00:2::/64"],
            ),
            peer(
                "gamma",
                2,
                PeerKind::Node(None),
                &["192.168.42.0/24", "198.18.0.0/15"],
            ),
            peer(
                "phone",
                3,
                PeerKind::Client,
                &["10.1.0.2/32", "fd00:1::2/128"],
            ),
        ];
        assert_eq!(
            plan.wanted(&peers),
            nets(&[
                "10.0.0.0/8",
                "10.2.0.0/16",
                "192.168.42.0/24",
                "198.18.0.0/15",
                "fd00::/16",
                "fd00:2::/64"
            ])
        );
    }

    #[test]
    fn without_pools_every_peer_prefix_is_routed_except_connected_ones() {
        let plan = RoutePlan {
            own_addresses: nets(&["10.1.0.1/16", "10.3.0.1/16"]),
            pools: Vec::new(),
            ..RoutePlan::default()
        };
        let peers = [
            peer(
                "b",
                1,
                PeerKind::Node(None),
                &["10.2.0.0/16", "fd00:0:0:2::/64"],
            ),
            peer(
                "c",
                2,
                PeerKind::Node(None),
                &["10.3.0.0/16", "192.168.42.0/24"],
            ),
        ];
        assert_eq!(
            plan.wanted(&peers),
            nets(&["10.2.0.0/16", "192.168.42.0/24", "fd00:0:0:2::/64"])
        );
    }

    fn exit_peers() -> [KnownPeer; 2] {
        [
            peer(
                "exit",
                1,
                PeerKind::Node(None),
                &[
                    "10.2.0.0/16",
                    "0.0.0.0/0",
                    "::/0",
                    "203.0.113.0/24",
                    "10.9.0.0/16",
                ],
            ),
            peer("lan", 2, PeerKind::Node(None), &["203.0.113.128/25"]),
        ]
    }

    #[test]
    fn defaults_and_rule_destinations_go_to_the_exit_table_when_exits_are_used() {
        let plan = RoutePlan {
            own_addresses: nets(&["10.1.0.1/16"]),
            pools: nets(&["10.0.0.0/8"]),
            // A rule naming the pool does not take it out of the main table.
            exit_destinations: nets(&["203.0.113.0/24", "10.0.0.0/8"]),
            use_exits: true,
        };
        let wanted = plan.wanted_by_table(&exit_peers());
        assert_eq!(
            wanted.main,
            nets(&[
                "10.0.0.0/8",
                "10.2.0.0/16",
                "10.9.0.0/16",
                "203.0.113.128/25"
            ]),
            "a prefix inside a rule's destination stays in main"
        );
        assert_eq!(wanted.exit, nets(&["0.0.0.0/0", "203.0.113.0/24", "::/0"]));
        assert_eq!(plan.wanted(&exit_peers()), wanted.main);
        assert_eq!(plan.wanted_exit(&exit_peers()), wanted.exit);
    }

    #[test]
    fn without_use_exit_routes_are_not_installed_anywhere() {
        let plan = RoutePlan {
            own_addresses: nets(&["10.1.0.1/16"]),
            pools: nets(&["10.0.0.0/8"]),
            exit_destinations: nets(&["203.0.113.0/24"]),
            use_exits: false,
        };
        let wanted = plan.wanted_by_table(&exit_peers());
        assert_eq!(
            wanted.main,
            nets(&[
                "10.0.0.0/8",
                "10.2.0.0/16",
                "10.9.0.0/16",
                "203.0.113.128/25"
            ]),
        );
        assert!(wanted.exit.is_empty());
    }

    #[test]
    fn changes_add_the_new_and_remove_the_gone() {
        let installed = nets(&["10.0.0.0/8", "192.168.42.0/24"]);
        let wanted = nets(&["10.0.0.0/8", "192.168.43.0/24"]);
        let (add, remove) = route_changes(&installed, &wanted);
        assert_eq!(add, nets(&["192.168.43.0/24"]));
        assert_eq!(remove, nets(&["192.168.42.0/24"]));
    }
}
