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

/// A unicast route for `destination` through the neighbour `gateway` (the kernel finds the
/// interface), in the main table, tagged with `protocol`: for BGP routes whose next hop is a
/// router outside the mesh. An IPv4 route may go through an IPv6 gateway (RFC 8950, `RTA_VIA`);
/// an IPv6 route through an IPv4 gateway cannot, and gives `None`.
pub fn gateway_route(destination: IpNet, gateway: IpAddr, protocol: u8) -> Option<RouteMessage> {
    let message = match (destination.trunc(), gateway) {
        (IpNet::V4(net), IpAddr::V4(gateway)) => with_gateway_settings(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.addr(), net.prefix_len())
                .gateway(gateway),
            protocol,
        ),
        (IpNet::V4(net), IpAddr::V6(gateway)) => with_gateway_settings(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.addr(), net.prefix_len())
                .via(gateway),
            protocol,
        ),
        (IpNet::V6(net), IpAddr::V6(gateway)) => with_gateway_settings(
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(net.addr(), net.prefix_len())
                .gateway(gateway),
            protocol,
        ),
        (IpNet::V6(_), IpAddr::V4(_)) => return None,
    };
    Some(message)
}

/// The family-independent part of [`gateway_route`].
fn with_gateway_settings<T>(builder: RouteMessageBuilder<T>, protocol: u8) -> RouteMessage {
    builder
        .table_id(MAIN_TABLE)
        .protocol(RouteProtocol::from(protocol))
        .scope(RouteScope::Universe)
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
    fn gateway_routes_carry_their_gateway_and_no_interface() {
        let cases = [
            ("203.0.113.0/24", "192.168.42.2", true),
            ("2001:db8:5::/48", "fd00::2", true),
            ("198.51.100.0/24", "fd00::2", true),
            ("2001:db8:5::/48", "192.168.42.2", false),
        ];
        for (prefix, gateway, possible) in cases {
            let prefix: IpNet = prefix.parse().unwrap();
            let gateway: IpAddr = gateway.parse().unwrap();
            let message = gateway_route(prefix, gateway, MESHD_ROUTE_PROTOCOL);
            assert_eq!(message.is_some(), possible, "{prefix} via {gateway}");
            let Some(message) = message else { continue };
            let route = parse_route(&message).unwrap();
            assert_eq!(route.destination, prefix);
            assert_eq!(route.interface_index, None);
            assert_eq!(route.protocol, MESHD_ROUTE_PROTOCOL);
            assert_eq!(message.header.scope, RouteScope::Universe);
            let has_gateway = message.attributes.iter().any(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => IpAddr::V4(*a) == gateway,
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => IpAddr::V6(*a) == gateway,
                RouteAttribute::Via(_) => gateway.is_ipv6(),
                _ => false,
            });
            assert!(has_gateway, "{message:?}");
        }
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
