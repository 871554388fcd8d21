//! Route messages: prefixes to rtnetlink messages and back. Pure, so it is tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

/// The main routing table, where meshd's routes go.
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// A route as the kernel reports it, reduced to what meshd cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// The destination prefix (host bits are always zero: the kernel refuses others).
    pub destination: IpNet,
    /// The output interface, if the route has one (multipath routes do not).
    pub interface_index: Option<u32>,
    /// The routing table.
    pub table: u32,
    /// The route protocol (`rtm_protocol`): who installed it.
    pub protocol: u8,
}

/// A unicast route for `destination` out of interface `interface_index`, in the main table,
/// scope link (no gateway: the TUN is point-to-point and meshd picks the peer), tagged with
/// `protocol`. Host bits of `destination` are cleared, because the kernel refuses them.
pub fn device_route(destination: IpNet, interface_index: u32, protocol: u8) -> RouteMessage {
    match destination.trunc() {
        IpNet::V4(net) => with_device_settings(
            RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(net.addr(), net.prefix_len()),
            interface_index,
            protocol,
        ),
        IpNet::V6(net) => with_device_settings(
            RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(net.addr(), net.prefix_len()),
            interface_index,
            protocol,
        ),
    }
}

/// The family-independent part of [`device_route`].
fn with_device_settings<T>(
    builder: RouteMessageBuilder<T>,
    interface_index: u32,
    protocol: u8,
) -> RouteMessage {
    builder
        .output_interface(interface_index)
        .table_id(MAIN_TABLE)
        .protocol(RouteProtocol::from(protocol))
        .scope(RouteScope::Link)
        .kind(RouteType::Unicast)
        .build()
}

/// A request for a dump of every route of one address family.
pub fn dump_request(ipv6: bool) -> RouteMessage {
    if ipv6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    }
}

/// Reads a route message from a dump. Returns `None` for messages that are not plain IPv4/IPv6
/// routes (MPLS, multicast cache entries) or whose destination does not parse.
pub fn parse_route(message: &RouteMessage) -> Option<KernelRoute> {
    let prefix_len = message.header.destination_prefix_length;
    let mut destination: Option<IpAddr> = None;
    let mut interface_index = None;
    let mut table = u32::from(message.header.table);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => {
                destination = Some(IpAddr::V4(*addr))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(addr)) => {
                destination = Some(IpAddr::V6(*addr))
            }
            RouteAttribute::Oif(index) => interface_index = Some(*index),
            RouteAttribute::Table(id) => table = *id,
            _ => {}
        }
    }
    // A default route has no destination attribute; its family comes from the header.
    let destination = match destination {
        Some(addr) => addr,
        None if prefix_len == 0 => match message.header.address_family {
            rtnetlink::packet_route::AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        },
        None => return None,
    };
    let destination = match destination {
        IpAddr::V4(addr) => IpNet::V4(Ipv4Net::new(addr, prefix_len).ok()?),
        IpAddr::V6(addr) => IpNet::V6(Ipv6Net::new(addr, prefix_len).ok()?),
    };
    Some(KernelRoute {
        destination,
        interface_index,
        table,
        protocol: u8::from(message.header.protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::MESHD_ROUTE_PROTOCOL;

    #[test]
    fn device_route_round_trips_through_parse() {
        for prefix in [
            "10.2.0.0/16",
            "192.168.42.0/24",
            "fd00:1:2::/48",
            "0.0.0.0/0",
            "::/0",
        ] {
            let prefix: IpNet = prefix.parse().unwrap();
            let message = device_route(prefix, 7, MESHD_ROUTE_PROTOCOL);
            let route = parse_route(&message).expect("parses");
            assert_eq!(
                route,
                KernelRoute {
                    destination: prefix,
                    interface_index: Some(7),
                    table: MAIN_TABLE,
                    protocol: MESHD_ROUTE_PROTOCOL,
                }
            );
        }
    }

    #[test]
    fn device_route_clears_host_bits() {
        let message = device_route("10.2.3.4/16".parse().unwrap(), 1, MESHD_ROUTE_PROTOCOL);
        let route = parse_route(&message).unwrap();
        assert_eq!(route.destination, "10.2.0.0/16".parse::<IpNet>().unwrap());
    }

    #[test]
    fn device_route_is_scope_link_unicast() {
        let message = device_route("fd00::/64".parse().unwrap(), 3, MESHD_ROUTE_PROTOCOL);
        assert_eq!(message.header.scope, RouteScope::Link);
        assert_eq!(message.header.kind, RouteType::Unicast);
    }

    #[test]
    fn parse_skips_routes_without_destination_unless_default() {
        let mut message = device_route("10.0.0.0/8".parse().unwrap(), 1, 4);
        message
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Destination(_)));
        assert_eq!(parse_route(&message), None);
    }
}
