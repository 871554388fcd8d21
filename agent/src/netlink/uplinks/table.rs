//! What the kernel has told us about links, addresses and default routes, and the uplinks that
//! follow from it. Pure: rtnetlink messages in, [`Uplinks`] out, so it is tested on constructed
//! messages without root.
//!
//! Every message is applied as the full state of one object (a link, an address, a route), so
//! applying the same message twice changes nothing and replaying queued notifications after a
//! dump converges on the kernel's state whatever the order in which the two were taken.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};

use super::{Uplink, Uplinks};

/// One interface as its last link message described it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    /// `IFF_UP`: administratively up.
    up: bool,
    /// `IFF_RUNNING`: operationally up (carrier present, not dormant).
    running: bool,
    loopback: bool,
}

/// One address as its last address message described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address {
    prefix_len: u8,
    scope: AddressScope,
    flags: AddressFlags,
}

/// What identifies a default route to the kernel (so that deleting one of two default routes
/// with different metrics keeps the other): family, table, metric, TOS, gateway and the
/// interfaces it leaves through (sorted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DefaultRoute {
    ipv6: bool,
    table: u32,
    priority: u32,
    tos: u8,
    gateway: Option<IpAddr>,
    interfaces: Vec<u32>,
}

/// The kernel's links, addresses and default routes, as far as uplinks need them.
#[derive(Debug, Default, Clone)]
pub struct UplinkTable {
    /// Interfaces never counted as uplinks whatever their state (the TUN device).
    excluded: BTreeSet<String>,
    links: HashMap<u32, Link>,
    /// Keyed by interface index and address.
    addresses: BTreeMap<(u32, IpAddr), Address>,
    default_routes: BTreeSet<DefaultRoute>,
}

impl UplinkTable {
    /// An empty table that will never report addresses of the interfaces named in `excluded`.
    pub fn new(excluded: impl IntoIterator<Item = String>) -> Self {
        UplinkTable {
            excluded: excluded.into_iter().collect(),
            ..UplinkTable::default()
        }
    }

    /// Forgets everything learnt (before a fresh dump, after the kernel said it dropped
    /// notifications), keeping the exclusions.
    pub fn clear(&mut self) {
        self.links.clear();
        self.addresses.clear();
        self.default_routes.clear();
    }

    /// Applies one message from a dump or a notification. Messages of other kinds are ignored.
    pub fn apply(&mut self, message: &RouteNetlinkMessage) {
        match message {
            RouteNetlinkMessage::NewLink(link) => self.new_link(link),
            RouteNetlinkMessage::DelLink(link) => self.remove_link(link.header.index),
            RouteNetlinkMessage::NewAddress(address) => self.new_address(address),
            RouteNetlinkMessage::DelAddress(address) => self.remove_address(address),
            RouteNetlinkMessage::NewRoute(route) => {
                if let Some(route) = parse_default_route(route) {
                    self.default_routes.insert(route);
                }
            }
            RouteNetlinkMessage::DelRoute(route) => {
                if let Some(route) = parse_default_route(route) {
                    self.default_routes.remove(&route);
                }
            }
            _ => {}
        }
    }

    fn new_link(&mut self, message: &LinkMessage) {
        let index = message.header.index;
        let flags = message.header.flags;
        let name = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })
            // A notification without a name (rare) keeps the name we know.
            .or_else(|| self.links.get(&index).map(|link| link.name.clone()))
            .unwrap_or_default();
        let link = Link {
            name,
            up: flags.contains(LinkFlags::Up),
            running: flags.contains(LinkFlags::Running),
            loopback: flags.contains(LinkFlags::Loopback),
        };
        if !link.up {
            // Taking a link down administratively flushes the routes through it without telling
            // anyone (IPv4 sends no RTM_DELROUTE for them); they do not come back by themselves.
            self.remove_routes_through(index, None);
        }
        self.links.insert(index, link);
    }

    fn remove_link(&mut self, index: u32) {
        self.links.remove(&index);
        self.addresses.retain(|(link, _), _| *link != index);
        self.remove_routes_through(index, None);
    }

    fn new_address(&mut self, message: &AddressMessage) {
        let Some(ip) = address_of(message) else {
            return;
        };
        // The 32-bit IFA_FLAGS attribute, when present, supersedes the 8 bits in the header.
        let flags = message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Flags(flags) => Some(*flags),
                _ => None,
            })
            .unwrap_or_else(|| AddressFlags::from_bits_retain(message.header.flags.bits().into()));
        self.addresses.insert(
            (message.header.index, ip),
            Address {
                prefix_len: message.header.prefix_len,
                scope: message.header.scope,
                flags,
            },
        );
    }

    fn remove_address(&mut self, message: &AddressMessage) {
        let Some(ip) = address_of(message) else {
            return;
        };
        let index = message.header.index;
        self.addresses.remove(&(index, ip));
        // The kernel flushes a device's IPv4 routes with its last IPv4 address, silently.
        let ipv4_left = self
            .addresses
            .keys()
            .any(|(link, address)| *link == index && address.is_ipv4());
        if ip.is_ipv4() && !ipv4_left {
            self.remove_routes_through(index, Some(false));
        }
    }

    /// Forgets the default routes through interface `index` (of one family if `ipv6` is given).
    fn remove_routes_through(&mut self, index: u32, ipv6: Option<bool>) {
        self.default_routes.retain(|route| {
            !(route.interfaces.contains(&index) && ipv6.is_none_or(|family| family == route.ipv6))
        });
    }

    /// The usable local addresses now: global scope, on an interface that is up and running,
    /// not loopback, not excluded, and (IPv6) not tentative, deprecated or failed DAD. An
    /// address on two interfaces is reported once, on the lower interface index.
    pub fn uplinks(&self) -> Uplinks {
        let mut uplinks = BTreeMap::new();
        for (&(index, ip), address) in &self.addresses {
            let Some(link) = self.links.get(&index) else {
                continue;
            };
            if !usable_link(link, &self.excluded) || !usable_address(ip, address) {
                continue;
            }
            let default_route_tables: Vec<u32> = self
                .default_routes
                .iter()
                .filter(|route| route.ipv6 == ip.is_ipv6() && route.interfaces.contains(&index))
                .map(|route| route.table)
                .collect::<BTreeSet<u32>>()
                .into_iter()
                .collect();
            uplinks.entry(ip).or_insert_with(|| Uplink {
                address: ip,
                prefix_len: address.prefix_len,
                interface: link.name.clone(),
                interface_index: index,
                default_route_tables,
            });
        }
        Uplinks::from_map(uplinks)
    }
}

fn usable_link(link: &Link, excluded: &BTreeSet<String>) -> bool {
    link.up && link.running && !link.loopback && link.name != "lo" && !excluded.contains(&link.name)
}

fn usable_address(ip: IpAddr, address: &Address) -> bool {
    let unusable = AddressFlags::Tentative | AddressFlags::Deprecated | AddressFlags::Dadfailed;
    let still_in_dad_or_retired = ip.is_ipv6() && address.flags.intersects(unusable);
    address.scope == AddressScope::Universe
        && !ip.is_loopback()
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !still_in_dad_or_retired
}

/// The local address of an address message: `IFA_LOCAL` (on point-to-point links `IFA_ADDRESS`
/// is the far end), else `IFA_ADDRESS` (IPv6 sends only that).
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// A unicast route with prefix length 0, with the interfaces it leaves through; `None` for any
/// other route and for a default route through no interface (blackhole, unreachable).
fn parse_default_route(message: &RouteMessage) -> Option<DefaultRoute> {
    let header = &message.header;
    if header.destination_prefix_length != 0 || header.kind != RouteType::Unicast {
        return None;
    }
    let ipv6 = match header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet => false,
        rtnetlink::packet_route::AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut route = DefaultRoute {
        ipv6,
        table: u32::from(header.table),
        priority: 0,
        tos: header.tos,
        gateway: None,
        interfaces: Vec::new(),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Priority(priority) => route.priority = *priority,
            RouteAttribute::Oif(index) => route.interfaces.push(*index),
            RouteAttribute::Gateway(gateway) => route.gateway = route_address(gateway),
            RouteAttribute::MultiPath(hops) => route
                .interfaces
                .extend(hops.iter().map(|hop| hop.interface_index)),
            _ => {}
        }
    }
    route.interfaces.sort_unstable();
    route.interfaces.dedup();
    if route.interfaces.is_empty() {
        return None;
    }
    Some(route)
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::RouteMessageBuilder;
    use rtnetlink::packet_route::AddressFamily;
    use rtnetlink::packet_route::address::AddressHeaderFlags;
    use rtnetlink::packet_route::route::RouteNextHop;

    use super::*;

    const ETH0: u32 = 2;
    const ETH1: u32 = 3;
    const MESH0: u32 = 4;

    fn link(index: u32, name: &str, flags: LinkFlags) -> RouteNetlinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = flags;
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        RouteNetlinkMessage::NewLink(message)
    }

    fn running() -> LinkFlags {
        LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp
    }

    fn address_message(index: u32, cidr: &str) -> AddressMessage {
        let (ip, len) = cidr.split_once('/').unwrap();
        let ip: IpAddr = ip.parse().unwrap();
        let mut message = AddressMessage::default();
        message.header.family = if ip.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        message.header.index = index;
        message.header.prefix_len = len.parse().unwrap();
        message.header.scope = AddressScope::Universe;
        message.attributes.push(AddressAttribute::Address(ip));
        if ip.is_ipv4() {
            message.attributes.push(AddressAttribute::Local(ip));
        }
        message
    }

    fn add_address(index: u32, cidr: &str) -> RouteNetlinkMessage {
        RouteNetlinkMessage::NewAddress(address_message(index, cidr))
    }

    fn del_address(index: u32, cidr: &str) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelAddress(address_message(index, cidr))
    }

    fn default_v4(index: u32, gateway: &str, table: u32) -> RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway.parse().unwrap())
            .output_interface(index)
            .table_id(table)
            .kind(RouteType::Unicast)
            .build()
    }

    fn default_v6(index: u32, gateway: &str) -> RouteMessage {
        RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway.parse().unwrap())
            .output_interface(index)
            .table_id(254)
            .kind(RouteType::Unicast)
            .build()
    }

    fn two_isps() -> UplinkTable {
        let mut table = UplinkTable::new(["mesh0".to_owned()]);
        for message in [
            link(1, "lo", running() | LinkFlags::Loopback),
            link(ETH0, "eth0", running()),
            link(ETH1, "eth1", running()),
            link(MESH0, "mesh0", running()),
            add_address(1, "127.0.0.1/8"),
            add_address(ETH0, "198.51.100.1/24"),
            add_address(ETH1, "203.0.113.1/24"),
            add_address(ETH1, "2001:db8:2::1/64"),
            add_address(MESH0, "10.1.0.1/16"),
            RouteNetlinkMessage::NewRoute(default_v4(ETH0, "198.51.100.254", 254)),
            RouteNetlinkMessage::NewRoute(default_v4(ETH1, "203.0.113.254", 102)),
        ] {
            table.apply(&message);
        }
        table
    }

    fn addresses(table: &UplinkTable) -> Vec<String> {
        table
            .uplinks()
            .iter()
            .map(|uplink| uplink.address.to_string())
            .collect()
    }

    fn uplink(table: &UplinkTable, address: &str) -> Uplink {
        let address: IpAddr = address.parse().unwrap();
        table
            .uplinks()
            .get(address)
            .cloned()
            .unwrap_or_else(|| panic!("{address} is not an uplink"))
    }

    #[test]
    fn global_addresses_of_running_interfaces_are_uplinks_not_lo_or_the_tun() {
        let table = two_isps();
        assert_eq!(
            addresses(&table),
            ["198.51.100.1", "203.0.113.1", "2001:db8:2::1"]
        );
        let isp1 = uplink(&table, "198.51.100.1");
        assert_eq!(isp1.interface, "eth0");
        assert_eq!(isp1.interface_index, ETH0);
        assert_eq!(isp1.prefix_len, 24);
        assert_eq!(isp1.default_route_tables, [254]);
        // ISP2's default route lives in its own table (source-based routing); the IPv6
        // address has no IPv6 default route.
        assert_eq!(uplink(&table, "203.0.113.1").default_route_tables, [102]);
        assert!(!uplink(&table, "2001:db8:2::1").has_default_route());
    }

    #[test]
    fn removed_address_is_no_longer_an_uplink() {
        let mut table = two_isps();
        table.apply(&del_address(ETH0, "198.51.100.1/24"));
        assert_eq!(addresses(&table), ["203.0.113.1", "2001:db8:2::1"]);
    }

    #[test]
    fn carrier_loss_and_admin_down_remove_the_interfaces_addresses() {
        let mut table = two_isps();
        // Carrier gone: UP stays, RUNNING and LOWER_UP go.
        table.apply(&link(ETH1, "eth1", LinkFlags::Up));
        assert_eq!(addresses(&table), ["198.51.100.1"]);
        table.apply(&link(ETH1, "eth1", running()));
        assert_eq!(
            addresses(&table),
            ["198.51.100.1", "203.0.113.1", "2001:db8:2::1"]
        );
        // Carrier loss keeps the kernel's routes (marked linkdown), so the table keeps them.
        assert_eq!(uplink(&table, "203.0.113.1").default_route_tables, [102]);

        table.apply(&link(ETH0, "eth0", LinkFlags::empty()));
        assert_eq!(addresses(&table), ["203.0.113.1", "2001:db8:2::1"]);
        // Admin down flushed eth0's routes silently; they do not come back with the link.
        table.apply(&link(ETH0, "eth0", running()));
        assert!(!uplink(&table, "198.51.100.1").has_default_route());
    }

    #[test]
    fn deleted_link_takes_its_addresses_and_routes() {
        let mut table = two_isps();
        let mut message = LinkMessage::default();
        message.header.index = ETH1;
        table.apply(&RouteNetlinkMessage::DelLink(message));
        assert_eq!(addresses(&table), ["198.51.100.1"]);
        // A new interface that reuses the index starts without the old one's state.
        table.apply(&link(ETH1, "eth9", running()));
        table.apply(&add_address(ETH1, "203.0.113.9/24"));
        assert!(!uplink(&table, "203.0.113.9").has_default_route());
    }

    #[test]
    fn ipv6_addresses_in_dad_deprecated_or_failed_are_not_usable() {
        for flags in [
            AddressFlags::Tentative,
            AddressFlags::Deprecated,
            AddressFlags::Dadfailed | AddressFlags::Tentative,
        ] {
            let mut table = two_isps();
            let mut message = address_message(ETH1, "2001:db8:2::1/64");
            message.attributes.push(AddressAttribute::Flags(flags));
            table.apply(&RouteNetlinkMessage::NewAddress(message));
            assert_eq!(
                addresses(&table),
                ["198.51.100.1", "203.0.113.1"],
                "{flags:?}"
            );
        }
        // Older kernels: the flags only in the header.
        let mut table = two_isps();
        let mut message = address_message(ETH1, "2001:db8:2::1/64");
        message.header.flags = AddressHeaderFlags::Tentative;
        table.apply(&RouteNetlinkMessage::NewAddress(message.clone()));
        assert_eq!(addresses(&table), ["198.51.100.1", "203.0.113.1"]);
        // DAD done: the kernel sends the address again without the flag.
        message.header.flags = AddressHeaderFlags::Permanent;
        table.apply(&RouteNetlinkMessage::NewAddress(message));
        assert_eq!(
            addresses(&table),
            ["198.51.100.1", "203.0.113.1", "2001:db8:2::1"]
        );
    }

    #[test]
    fn link_local_and_host_scope_addresses_are_not_uplinks() {
        let mut table = two_isps();
        for (cidr, scope) in [
            ("fe80::1/64", AddressScope::Link),
            ("169.254.7.7/16", AddressScope::Link),
            ("192.0.2.7/32", AddressScope::Host),
        ] {
            let mut message = address_message(ETH0, cidr);
            message.header.scope = scope;
            table.apply(&RouteNetlinkMessage::NewAddress(message));
        }
        assert_eq!(
            addresses(&table),
            ["198.51.100.1", "203.0.113.1", "2001:db8:2::1"]
        );
    }

    #[test]
    fn point_to_point_address_is_the_local_end() {
        let mut table = two_isps();
        let mut message = address_message(ETH0, "198.51.100.77/32");
        message.attributes = vec![
            AddressAttribute::Address("198.51.100.78".parse().unwrap()),
            AddressAttribute::Local("198.51.100.77".parse().unwrap()),
        ];
        table.apply(&RouteNetlinkMessage::NewAddress(message));
        assert!(
            table
                .uplinks()
                .get("198.51.100.77".parse().unwrap())
                .is_some()
        );
        assert!(
            table
                .uplinks()
                .get("198.51.100.78".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn default_routes_come_and_go_one_by_one() {
        let mut table = two_isps();
        // A second default route through eth0 with another metric, then the first one goes.
        let mut backup = default_v4(ETH0, "198.51.100.253", 254);
        backup.attributes.push(RouteAttribute::Priority(200));
        table.apply(&RouteNetlinkMessage::NewRoute(backup.clone()));
        table.apply(&RouteNetlinkMessage::DelRoute(default_v4(
            ETH0,
            "198.51.100.254",
            254,
        )));
        assert_eq!(uplink(&table, "198.51.100.1").default_route_tables, [254]);
        table.apply(&RouteNetlinkMessage::DelRoute(backup));
        assert!(!uplink(&table, "198.51.100.1").has_default_route());
        // Applying the same message twice is harmless.
        for _ in 0..2 {
            table.apply(&RouteNetlinkMessage::NewRoute(default_v6(ETH1, "fe80::1")));
        }
        assert_eq!(uplink(&table, "2001:db8:2::1").default_route_tables, [254]);
        table.apply(&RouteNetlinkMessage::DelRoute(default_v6(ETH1, "fe80::1")));
        assert!(!uplink(&table, "2001:db8:2::1").has_default_route());
    }

    #[test]
    fn only_unicast_default_routes_through_an_interface_count() {
        let mut table = two_isps();
        table.apply(&RouteNetlinkMessage::DelRoute(default_v4(
            ETH0,
            "198.51.100.254",
            254,
        )));
        let mut not_default = default_v4(ETH0, "198.51.100.254", 254);
        not_default.header.destination_prefix_length = 8;
        let mut blackhole = default_v4(ETH0, "198.51.100.254", 254);
        blackhole.header.kind = RouteType::BlackHole;
        for route in [not_default, blackhole] {
            table.apply(&RouteNetlinkMessage::NewRoute(route));
        }
        assert!(!uplink(&table, "198.51.100.1").has_default_route());
    }

    #[test]
    fn multipath_default_route_counts_for_every_interface() {
        let mut table = two_isps();
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(254)
            .kind(RouteType::Unicast)
            .build();
        let hops = [ETH0, ETH1].map(|index| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = index;
            hop
        });
        route
            .attributes
            .push(RouteAttribute::MultiPath(hops.to_vec()));
        table.apply(&RouteNetlinkMessage::NewRoute(route));
        assert_eq!(
            uplink(&table, "203.0.113.1").default_route_tables,
            [102, 254]
        );
    }

    #[test]
    fn last_ipv4_address_gone_takes_the_ipv4_routes_of_the_interface() {
        let mut table = two_isps();
        table.apply(&RouteNetlinkMessage::NewRoute(default_v6(ETH1, "fe80::1")));
        table.apply(&del_address(ETH1, "203.0.113.1/24"));
        table.apply(&add_address(ETH1, "203.0.113.1/24"));
        assert!(!uplink(&table, "203.0.113.1").has_default_route());
        assert!(uplink(&table, "2001:db8:2::1").has_default_route());
    }

    #[test]
    fn clear_forgets_state_but_not_exclusions() {
        let mut table = two_isps();
        table.clear();
        assert!(table.uplinks().is_empty());
        table.apply(&link(MESH0, "mesh0", running()));
        table.apply(&add_address(MESH0, "10.1.0.1/16"));
        assert!(table.uplinks().is_empty());
    }
}
