//! Which prefixes the kernel should route into the TUN, given the peer set. Pure.
//!
//! The mesh pools are routed as a whole, so that traffic to an address nobody holds yet is
//! dropped by the data plane instead of leaking to the default route. Every prefix a peer
//! carries (a member's /16 and /64, its LAN such as `192.168.42.0/24`, a configured peer's
//! networks) gets its own route too, installed when it appears and removed when it goes, so
//! that `ip route` and `meshd routes` show each one. Prefixes inside the TUN's own networks
//! (the node's clients) are left alone: the kernel's connected routes already send them
//! there.

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
}

impl RoutePlan {
    /// The routes into the TUN for `peers`, sorted, each once.
    pub fn wanted(&self, peers: &[KnownPeer]) -> Vec<IpNet> {
        let connected: Vec<IpNet> = self.own_addresses.iter().map(IpNet::trunc).collect();
        let mut wanted: BTreeSet<IpNet> = self.pools.iter().map(IpNet::trunc).collect();
        wanted.extend(
            peers
                .iter()
                .flat_map(|peer| peer.config.allowed_ips.iter().map(IpNet::trunc))
                .filter(|prefix| !connected.iter().any(|net| net.contains(prefix))),
        );
        wanted.into_iter().collect()
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

    #[test]
    fn changes_add_the_new_and_remove_the_gone() {
        let installed = nets(&["10.0.0.0/8", "192.168.42.0/24"]);
        let wanted = nets(&["10.0.0.0/8", "192.168.43.0/24"]);
        let (add, remove) = route_changes(&installed, &wanted);
        assert_eq!(add, nets(&["192.168.43.0/24"]));
        assert_eq!(remove, nets(&["192.168.42.0/24"]));
    }
}
