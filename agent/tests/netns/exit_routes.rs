//! The exit table and its policy rules against a real kernel, inside a network namespace
//! (needs root): what `[exit] use = "nearest"` changes on a host, and that it all goes away.

use meshd::netlink::MESHD_ROUTE_PROTOCOL;
use netns_tests::{Namespace, connect_veth, require_root};

#[path = "netlink_support.rs"]
mod netlink_support;
use netlink_support::{net, with_netlink};

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
