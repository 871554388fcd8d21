//! The netlink module against a real kernel, inside a network namespace (needs root).

use std::time::Duration;

use ipnet::IpNet;
use meshd::netlink::{KernelRoute, MESHD_ROUTE_PROTOCOL, Netlink, NetlinkError};
use netns_tests::{Namespace, connect_veth, require_root};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// Runs `f` with a netlink connection inside `namespace`.
fn with_netlink<T: Send + 'static>(
    namespace: &Namespace,
    f: impl AsyncFnOnce(&Netlink) -> T + Send + 'static,
) -> T {
    namespace.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let netlink = Netlink::connect().expect("connect to rtnetlink");
            tokio::time::timeout(Duration::from_secs(20), f(&netlink))
                .await
                .expect("netlink operations took more than 20 s")
        })
    })
}

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

/// `ip [-6] route get ADDRESS [mark MARK]` inside `namespace`.
fn route_get(namespace: &Namespace, address: &str, mark: Option<&str>) -> String {
    let mut args = vec!["route", "get", address];
    if let Some(mark) = mark {
        args.extend(["mark", mark]);
    }
    namespace.ip(&args)
}

/// The exit table and its policy rules, installed by KernelRoutes in a namespace with its
/// own underlay default route: unmarked Internet traffic goes into the mesh interface, marked
/// traffic (meshd's own sockets) and everything the main table knows more specifically stay
/// on the underlay, and all of it goes away again.
#[test]
fn exit_table_and_rules_send_unmarked_internet_traffic_into_the_mesh() {
    if !require_root("exit_table_and_rules_send_unmarked_internet_traffic_into_the_mesh") {
        return;
    }
    use meshd::peerset::{ExitTable, KernelRoutes};

    let node = Namespace::new("exit-node");
    let isp = Namespace::new("exit-isp");
    connect_veth(
        &node,
        "ul0",
        &["203.0.113.1/24", "2001:db8:1::1/64"],
        &isp,
        "ul0",
        &["203.0.113.2/24", "2001:db8:1::2/64"],
    );
    node.ip(&["route", "add", "default", "via", "203.0.113.2"]);
    node.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::2"]);
    // A specific main-table route of the operator's, which must keep winning.
    node.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.2"]);
    // A veth stands in for the TUN.
    node.ip(&[
        "link", "add", "mesh0", "type", "veth", "peer", "name", "mesh0p",
    ]);
    node.ip(&["link", "set", "mesh0p", "up"]);
    node.ip(&["link", "set", "mesh0", "up"]);
    node.ip(&["addr", "add", "10.1.0.1/16", "dev", "mesh0"]);
    node.ip(&["addr", "add", "fd00:1::1/64", "dev", "mesh0", "nodad"]);
    // What a crashed run left: a rule at our number, a route in the exit table. And a rule of
    // somebody else's, which must survive.
    node.ip(&[
        "rule", "add", "priority", "28005", "not", "fwmark", "0x6d65", "lookup", "28005",
    ]);
    node.ip(&[
        "route", "add", "default", "dev", "mesh0", "table", "28005", "proto", "241",
    ]);
    node.ip(&["rule", "add", "priority", "1000", "lookup", "100"]);

    let exit = ExitTable {
        table: 0x6d65,
        fwmark: 0x6d65,
        rules: true,
    };
    let defaults = [net("0.0.0.0/0"), net("::/0")];
    let (stale, rules_once, installed) = with_netlink(&node, async move |netlink| {
        let index = netlink.link_index("mesh0").await.unwrap();
        // As the daemon starts: flush what an earlier run left, then set up.
        let stale = netlink.flush_routes(MESHD_ROUTE_PROTOCOL).await.unwrap();
        let mut kernel = KernelRoutes::new(netlink, index).with_exit_table(exit);
        kernel.sync(&[net("10.0.0.0/8")]).await.unwrap();
        kernel.set_up_exit_rules().await.unwrap();
        let rules_once = netlink.rules().await.unwrap();
        kernel.sync_exit(&defaults).await.unwrap();
        // Dropped without remove_all, as if the run crashed: the next block starts again.
        (stale, rules_once, kernel.installed_exit().to_vec())
    });
    assert_eq!(stale.len(), 1, "the stale exit-table route: {stale:?}");
    assert_eq!(stale[0].table, 0x6d65);
    assert_eq!(installed, vec![net("0.0.0.0/0"), net("::/0")]);
    let ours: Vec<_> = rules_once
        .iter()
        .filter(|r| r.priority == 28004 || r.priority == 28005)
        .collect();
    assert_eq!(
        ours.len(),
        4,
        "two rules per family, stale one replaced: {ours:?}"
    );

    let shown = node.ip(&["rule", "show"]);
    assert!(
        shown.contains("28004:\tfrom all lookup main suppress_prefixlength 0"),
        "{shown}"
    );
    assert!(
        shown.contains("28005:\tnot from all fwmark 0x6d65 lookup 28005"),
        "{shown}"
    );
    assert!(shown.contains("1000:\tfrom all lookup 100"), "{shown}");

    // Unmarked Internet traffic: into the mesh, from the exit table.
    let unmarked = route_get(&node, "192.0.2.1", None);
    assert!(unmarked.contains("dev mesh0"), "{unmarked}");
    assert!(unmarked.contains("table 28005"), "{unmarked}");
    let unmarked6 = route_get(&node, "2001:db8:ffff::1", None);
    assert!(unmarked6.contains("dev mesh0"), "{unmarked6}");
    // meshd's own underlay packets: the host's default route.
    let marked = route_get(&node, "192.0.2.1", Some("0x6d65"));
    assert!(marked.contains("via 203.0.113.2 dev ul0"), "{marked}");
    let marked6 = route_get(&node, "2001:db8:ffff::1", Some("0x6d65"));
    assert!(marked6.contains("via 2001:db8:1::2 dev ul0"), "{marked6}");
    // The main table's specific routes still win: connected, the operator's, the mesh's.
    for (address, device) in [
        ("203.0.113.2", "dev ul0"),
        ("198.51.100.7", "via 203.0.113.2 dev ul0"),
        ("2001:db8:1::2", "dev ul0"),
        ("10.2.0.1", "dev mesh0"),
    ] {
        let got = route_get(&node, address, None);
        assert!(got.contains(device), "{address}: {got}");
        assert!(!got.contains("table 28005"), "{address}: {got}");
    }

    // All exits gone: the exit table is empty and lookups fall through to the uplink; then
    // everything is removed.
    let (after_empty, after_removal) = with_netlink(&node, async move |netlink| {
        let index = netlink.link_index("mesh0").await.unwrap();
        netlink.flush_routes(MESHD_ROUTE_PROTOCOL).await.unwrap();
        let mut kernel = KernelRoutes::new(netlink, index).with_exit_table(exit);
        // The "crashed" run's rules are replaced, not doubled.
        kernel.set_up_exit_rules().await.unwrap();
        let rules_again = netlink.rules().await.unwrap();
        assert_eq!(
            rules_again.iter().filter(|r| r.priority == 28005).count(),
            2,
            "{rules_again:?}"
        );
        kernel.sync_exit(&defaults).await.unwrap();
        kernel.sync_exit(&[]).await.unwrap();
        let after_empty = netlink
            .routes_with_protocol(MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();
        kernel.sync_exit(&defaults).await.unwrap();
        kernel.remove_all().await;
        let after_removal = netlink
            .routes_with_protocol(MESHD_ROUTE_PROTOCOL)
            .await
            .unwrap();
        (after_empty, after_removal)
    });
    assert!(
        after_empty.iter().all(|r| r.table != 0x6d65),
        "{after_empty:?}"
    );
    assert!(after_removal.is_empty(), "{after_removal:?}");
    let fallen_through = route_get(&node, "192.0.2.1", None);
    assert!(
        fallen_through.contains("via 203.0.113.2 dev ul0"),
        "{fallen_through}"
    );
    let shown = node.ip(&["rule", "show"]);
    assert!(
        !shown.contains("28004") && !shown.contains("28005"),
        "{shown}"
    );
    assert!(shown.contains("1000:\tfrom all lookup 100"), "{shown}");
    let shown6 = node.ip(&["-6", "rule", "show"]);
    assert!(!shown6.contains("28005"), "{shown6}");
    let table = node.ip(&["route", "show", "table", "28005"]);
    assert!(table.trim().is_empty(), "{table}");
}
