//! The netlink module against a real kernel, inside a network namespace (needs root).

use ipnet::IpNet;
use meshd::netlink::{KernelRoute, MESHD_ROUTE_PROTOCOL, NetlinkError};
use netns_tests::{Namespace, connect_veth, require_root};

#[path = "netlink_support.rs"]
mod netlink_support;
use netlink_support::{net, with_netlink};

#[test]
fn addresses_mtu_and_tagged_routes_on_a_real_interface() {
    if !require_root("addresses_mtu_and_tagged_routes_on_a_real_interface") {
        return;
    }
    let namespace = Namespace::new("netlink");
    // A veth pair stands in for the TUN (no dummy driver here; a TUN without a reader has no
    // carrier).
    namespace.ip(&[
        "link", "add", "mesh0", "type", "veth", "peer", "name", "mesh0p",
    ]);
    namespace.ip(&["link", "set", "mesh0p", "up"]);
    namespace.ip(&["link", "set", "mesh0", "up"]);
    // A route another daemon owns must survive our flush (and an address of its own keeps the
    // kernel from dropping it when we remove ours: IPv4 routes go with a device's last address).
    namespace.ip(&["addr", "add", "10.8.0.1/24", "dev", "mesh0"]);
    namespace.ip(&[
        "route",
        "add",
        "10.9.0.0/16",
        "dev",
        "mesh0",
        "proto",
        "static",
    ]);

    let (index, routes_seen, flushed, after_flush) = with_netlink(&namespace, async |netlink| {
        let index = netlink.link_index("mesh0").await.unwrap();
        netlink.set_mtu_and_up(index, 1420).await.unwrap();
        assert_eq!(netlink.link_mtu(index).await.unwrap(), 1420);

        for address in ["10.1.0.1/16", "fd00:1:2::1/64"] {
            netlink.add_address(index, net(address)).await.unwrap();
            // Adding twice is fine (a restarted daemon does it).
            netlink.add_address(index, net(address)).await.unwrap();
        }
        let mut addresses = netlink.addresses(index).await.unwrap();
        addresses.retain(|a| !matches!(a, IpNet::V6(v6) if v6.addr().segments()[0] == 0xfe80));
        addresses.sort();
        assert_eq!(
            addresses,
            vec![
                net("10.1.0.1/16"),
                net("10.8.0.1/24"),
                net("fd00:1:2::1/64")
            ]
        );

        for prefix in ["10.2.0.0/16", "192.168.42.0/24", "fd00:1:3::/64"] {
            netlink
                .replace_route(index, net(prefix), MESHD_ROUTE_PROTOCOL)
                .await
                .unwrap();
            netlink
                .replace_route(index, net(prefix), MESHD_ROUTE_PROTOCOL)
                .await
                .unwrap();
        }
        let mut routes_seen = netlink
            .routes_with_protocol(MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();
        routes_seen.sort_by_key(|r| r.destination);

        netlink
            .remove_route(index, net("192.168.42.0/24"), MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();
        // Removing what is gone is not an error (shutdown after a partial start).
        netlink
            .remove_route(index, net("192.168.42.0/24"), MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();

        let mut flushed = netlink.flush_routes(MESHD_ROUTE_PROTOCOL).await.unwrap();
        flushed.sort_by_key(|r| r.destination);
        let after_flush = netlink
            .routes_with_protocol(MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();
        // Last, because the kernel drops an interface's IPv4 routes with its last address.
        netlink
            .remove_address(index, net("10.1.0.1/16"))
            .await
            .unwrap();
        netlink
            .remove_address(index, net("10.1.0.1/16"))
            .await
            .unwrap();
        let remaining = netlink.addresses(index).await.unwrap();
        assert!(
            !remaining.contains(&net("10.1.0.1/16")),
            "address not removed: {remaining:?}"
        );
        (index, routes_seen, flushed, after_flush)
    });

    let tagged = |prefix: &str| KernelRoute {
        destination: net(prefix),
        interface_index: Some(index),
        table: 254,
        protocol: MESHD_ROUTE_PROTOCOL,
    };
    assert_eq!(
        routes_seen,
        vec![
            tagged("10.2.0.0/16"),
            tagged("192.168.42.0/24"),
            tagged("fd00:1:3::/64")
        ]
    );
    assert_eq!(
        flushed,
        vec![tagged("10.2.0.0/16"), tagged("fd00:1:3::/64")]
    );
    assert!(
        after_flush.is_empty(),
        "routes left after flush: {after_flush:?}"
    );

    // What `ip` sees agrees, and the other daemon's route is still there.
    let shown = namespace.ip(&["route", "show", "proto", &MESHD_ROUTE_PROTOCOL.to_string()]);
    assert!(
        shown.trim().is_empty(),
        "ip still shows meshd routes: {shown}"
    );
    let static_routes = namespace.ip(&["route", "show", "proto", "static"]);
    assert!(
        static_routes.contains("10.9.0.0/16"),
        "flush removed a foreign route: {static_routes}"
    );
}

#[test]
fn unknown_interface_is_a_typed_error() {
    if !require_root("unknown_interface_is_a_typed_error") {
        return;
    }
    let namespace = Namespace::new("nolink");
    let result = with_netlink(&namespace, async |netlink| {
        netlink.link_index("nosuch0").await
    });
    match result {
        Err(NetlinkError::LinkNotFound { name }) => assert_eq!(name, "nosuch0"),
        other => panic!("expected LinkNotFound, got {other:?}"),
    }
}

#[test]
fn underlay_mtu_follows_the_route_to_the_endpoint() {
    if !require_root("underlay_mtu_follows_the_route_to_the_endpoint") {
        return;
    }
    let a = Namespace::new("mtu-a");
    let b = Namespace::new("mtu-b");
    connect_veth(
        &a,
        "ul0",
        &["198.51.100.1/24", "2001:db8:1::1/64"],
        &b,
        "ul0",
        &["198.51.100.2/24", "2001:db8:1::2/64"],
    );
    a.ip(&["link", "set", "ul0", "mtu", "1400"]);
    let (v4, v6, nowhere) = with_netlink(&a, async |netlink| {
        (
            netlink
                .underlay_mtu_towards("198.51.100.2".parse().unwrap())
                .await
                .unwrap(),
            netlink
                .underlay_mtu_towards("2001:db8:1::2".parse().unwrap())
                .await
                .unwrap(),
            netlink
                .underlay_mtu_towards("203.0.113.9".parse().unwrap())
                .await
                .unwrap(),
        )
    });
    assert_eq!(v4, Some(1400));
    assert_eq!(v6, Some(1400));
    assert_eq!(
        nowhere, None,
        "no route to 203.0.113.9 exists in the namespace"
    );
}
