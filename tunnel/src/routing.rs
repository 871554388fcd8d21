//! Crypto-key routing: the longest-prefix-match table from destination prefix to peer.
//!
//! The same table answers both questions WireGuard asks: "which peer does a packet to this
//! address go to?" and, on receive, "may this peer send from this address?" (yes exactly
//! when the source address routes back to that same peer).

use std::net::IpAddr;

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use ipnet::IpNet;

/// Longest-prefix match from address to a peer key `T` (a position in the peer table).
pub struct CryptoRouter<T> {
    table: IpNetworkTable<T>,
}

impl<T> std::fmt::Debug for CryptoRouter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (v4, v6) = self.table.len();
        f.debug_struct("CryptoRouter")
            .field("ipv4_prefixes", &v4)
            .field("ipv6_prefixes", &v6)
            .finish()
    }
}

impl<T: Copy> Default for CryptoRouter<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> CryptoRouter<T> {
    /// An empty table.
    pub fn new() -> Self {
        CryptoRouter {
            table: IpNetworkTable::new(),
        }
    }

    /// Routes `prefix` to `peer`; returns the peer it routed to before, if any.
    pub fn insert(&mut self, prefix: IpNet, peer: T) -> Option<T> {
        self.table.insert(to_network(prefix), peer)
    }

    /// Removes `prefix`; returns the peer it routed to.
    pub fn remove(&mut self, prefix: IpNet) -> Option<T> {
        self.table.remove(to_network(prefix))
    }

    /// The peer owning the most specific prefix that contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<T> {
        self.lookup_with_len(addr).map(|(peer, _)| peer)
    }

    /// The same, with the length of the prefix that matched.
    pub fn lookup_with_len(&self, addr: IpAddr) -> Option<(T, u8)> {
        match addr {
            IpAddr::V4(a) => self
                .table
                .longest_match_ipv4(a)
                .map(|(net, p)| (*p, net.netmask())),
            IpAddr::V6(a) => self
                .table
                .longest_match_ipv6(a)
                .map(|(net, p)| (*p, net.netmask())),
        }
    }
}

fn to_network(prefix: IpNet) -> IpNetwork {
    // Host bits are cleared first, so construction cannot fail: the prefix length of an
    // `IpNet` is always valid for its family.
    let prefix = prefix.trunc();
    IpNetwork::new(prefix.addr(), prefix.prefix_len())
        .expect("a truncated IpNet is a valid network")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn most_specific_prefix_wins() {
        let mut r = CryptoRouter::new();
        r.insert(net("10.0.0.0/8"), 1);
        r.insert(net("10.2.0.0/16"), 2);
        r.insert(net("10.2.3.0/24"), 3);
        r.insert(net("fd00::/48"), 4);
        r.insert(net("fd00:0:0:1::/64"), 5);
        assert_eq!(r.lookup(ip("10.9.9.9")), Some(1));
        assert_eq!(r.lookup(ip("10.2.9.9")), Some(2));
        assert_eq!(r.lookup(ip("10.2.3.4")), Some(3));
        assert_eq!(r.lookup(ip("11.0.0.1")), None);
        assert_eq!(r.lookup(ip("fd00::9")), Some(4));
        assert_eq!(r.lookup(ip("fd00:0:0:1::9")), Some(5));
        assert_eq!(r.lookup(ip("fd01::1")), None);
    }

    #[test]
    fn default_routes_and_host_routes() {
        let mut r = CryptoRouter::new();
        r.insert(net("0.0.0.0/0"), 1);
        r.insert(net("10.1.0.7/32"), 2);
        r.insert(net("::/0"), 3);
        assert_eq!(r.lookup(ip("192.0.2.1")), Some(1));
        assert_eq!(r.lookup(ip("10.1.0.7")), Some(2));
        assert_eq!(r.lookup(ip("10.1.0.8")), Some(1));
        assert_eq!(r.lookup(ip("2001:db8::1")), Some(3));
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut r = CryptoRouter::new();
        assert_eq!(r.insert(net("10.1.0.0/16"), 1), None);
        assert_eq!(r.insert(net("10.1.0.0/16"), 2), Some(1));
        assert_eq!(r.lookup(ip("10.1.2.3")), Some(2));
        assert_eq!(r.remove(net("10.1.0.0/16")), Some(2));
        assert_eq!(r.lookup(ip("10.1.2.3")), None);
    }

    #[test]
    fn host_bits_are_ignored() {
        let mut r = CryptoRouter::new();
        r.insert(net("10.1.2.3/16"), 1);
        assert_eq!(r.lookup(ip("10.1.200.1")), Some(1));
    }
}
