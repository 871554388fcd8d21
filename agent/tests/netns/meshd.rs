//! meshd end to end in network namespaces (needs root): real TUN devices, kernel routes, the
//! built `meshd` binary, and wireguard-go as a reference peer.

use std::path::Path;
use std::time::Duration;

use meshd::netlink::MESHD_ROUTE_PROTOCOL;
use netns_tests::{Interop, MeshdNode, Namespace, ip, require_root, underlay_hub, underlay_pair};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A node with its config written and `meshd init` done.
fn node(name: &str, endpoint: &str, addresses: &[&str]) -> MeshdNode {
    MeshdNode::with_addresses(Path::new(MESHD), name, endpoint, addresses)
}

fn meshd_routes(namespace: &Namespace) -> String {
    let protocol = MESHD_ROUTE_PROTOCOL.to_string();
    let v4 = namespace.ip(&["-4", "route", "show", "proto", &protocol]);
    let v6 = namespace.ip(&["-6", "route", "show", "proto", &protocol]);
    format!("{v4}{v6}")
}

/// Two namespaces joined by a dual-stack veth underlay.
#[test]
fn two_meshd_nodes_ping_over_ipv4_and_ipv6_and_remove_their_routes() {
    if !require_root("two_meshd_nodes_ping_over_ipv4_and_ipv6_and_remove_their_routes") {
        return;
    }
    let (ns_a, ns_b) = underlay_pair("two");
    let mut alpha = node(
        "alpha",
        "198.51.100.1:51820",
        &["10.1.0.1/16", "fd00:1::1/64"],
    );
    let mut beta = node(
        "beta",
        "[2001:db8:100::2]:51820",
        &["10.2.0.1/16", "fd00:2::1/64"],
    );
    // alpha reaches beta over the IPv6 underlay, beta reaches alpha over IPv4.
    alpha.add_peer_node(
        &beta,
        &["[2001:db8:100::2]:51820"],
        &["10.2.0.0/16", "fd00:2::/64"],
        None,
    );
    beta.add_peer_node(
        &alpha,
        &["198.51.100.1:51820"],
        &["10.1.0.0/16", "fd00:1::/64"],
        None,
    );
    alpha.start(&ns_a);
    beta.start(&ns_b);

    let routes = meshd_routes(&ns_a);
    assert!(
        routes.contains("10.2.0.0/16 dev mesh0") && routes.contains("fd00:2::/64 dev mesh0"),
        "alpha's tagged routes are missing: {routes:?}"
    );
    let mtu = ns_a.ip(&["-o", "link", "show", "mesh0"]);
    assert!(
        mtu.contains("mtu 1420"),
        "mesh0 should get 1420 on a 1500 underlay: {mtu}"
    );

    assert!(
        ns_a.ping_until(ip("10.2.0.1"), PING_TIMEOUT),
        "alpha cannot ping beta over IPv4:\n{}",
        alpha.log()
    );
    assert!(
        ns_b.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "beta cannot ping alpha over IPv4:\n{}",
        beta.log()
    );
    assert!(
        ns_a.ping_until(ip("fd00:2::1"), PING_TIMEOUT),
        "alpha cannot ping beta over IPv6:\n{}",
        alpha.log()
    );
    assert!(
        ns_b.ping_until(ip("fd00:1::1"), PING_TIMEOUT),
        "beta cannot ping alpha over IPv6:\n{}",
        beta.log()
    );
    let before = alpha.metrics(&ns_a);
    assert!(
        ns_a.ping_all(ip("10.2.0.1"), 10),
        "pings were lost on an established tunnel"
    );
    // The byte counters of the metrics endpoint moved by at least the ten 84-byte echo
    // requests sent and the ten replies received.
    let after = alpha.metrics(&ns_a);
    let counter = |m: &netns_tests::Exposition, name: &str| {
        m.value(name, &[("peer", "beta")])
            .unwrap_or_else(|| panic!("{name} for beta is missing"))
    };
    for name in [
        "meshd_peer_sent_bytes_total",
        "meshd_peer_received_bytes_total",
    ] {
        assert!(
            counter(&after, name) - counter(&before, name) >= 840.0,
            "{name} moved from {} to {}",
            counter(&before, name),
            counter(&after, name)
        );
    }
    // Both ends measured the round trip of the handshake, whichever of them started it (the
    // responder from its response to the initiator's first data message).
    for (metrics, peer) in [(&after, "beta"), (&beta.metrics(&ns_b), "alpha")] {
        let rtt = metrics.value("meshd_peer_rtt_seconds", &[("peer", peer)]);
        assert!(
            rtt.is_some_and(|s| (0.0..1.0).contains(&s)),
            "no sensible handshake RTT for {peer}: {rtt:?}"
        );
    }
    assert_eq!(after.value("meshd_peer_up", &[("peer", "beta")]), Some(1.0));
    // One "tunnel up" line per peer at info, not one per handshake or packet.
    for (node, log) in [("alpha", alpha.log()), ("beta", beta.log())] {
        assert_eq!(
            log.matches("tunnel up").count(),
            1,
            "{node} should log its tunnel coming up once:\n{log}"
        );
    }

    // A TCP transfer over the overlay (offload paths, not only single small packets).
    let _server = ns_b.spawn(
        "iperf3-server",
        "iperf3",
        &["-s", "-1", "-B", "10.2.0.1"],
        &[],
    );
    let ready = netns_tests::wait_until(Duration::from_secs(5), || {
        ns_b.exec("ss", &["-Hltn", "sport = :5201"])
            .is_ok_and(|o| !o.stdout.is_empty())
    });
    assert!(ready, "iperf3 server did not start");
    let report = ns_a.exec_ok("iperf3", &["-c", "10.2.0.1", "-t", "2", "-J"]);
    let received = report
        .split("\"sum_received\"")
        .nth(1)
        .and_then(|rest| rest.split("\"bytes\":").nth(1))
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
        })
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        received > 1_000_000,
        "iperf3 moved only {received} bytes over the overlay"
    );

    let status = alpha
        .stop()
        .expect("alpha did not stop within 10 s of SIGTERM");
    assert!(status.success(), "alpha exited with {status} on SIGTERM");
    assert_eq!(meshd_routes(&ns_a).trim(), "", "alpha left routes behind");
    assert!(
        ns_a.exec("ip", &["link", "show", "mesh0"]).is_err(),
        "alpha left mesh0 behind"
    );
}

/// meshd in one namespace, wireguard-go in the other.
fn interop(label: &str, meshd_knows_key: bool) -> Interop {
    Interop::start(Path::new(MESHD), label, meshd_knows_key)
}

#[test]
fn meshd_interoperates_with_wireguard_go_both_ways_and_after_a_restart() {
    if !require_root("meshd_interoperates_with_wireguard_go_both_ways_and_after_a_restart") {
        return;
    }
    let mut setup = interop("wg", true);
    assert!(
        setup.ns_meshd.ping_until(ip("10.2.0.1"), PING_TIMEOUT),
        "meshd -> wireguard-go ping failed:\n{}",
        setup.meshd.log()
    );
    assert!(
        setup.ns_wg.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "wireguard-go -> meshd ping failed:\n{}",
        setup.meshd.log()
    );
    assert!(
        setup.wg.latest_handshake(&setup.ns_wg).is_some(),
        "pings went through but wireguard-go reports no handshake"
    );

    // The same key after a restart: wireguard-go takes the new handshake, traffic resumes.
    let status = setup.meshd.stop().expect("meshd did not stop on SIGTERM");
    assert!(status.success());
    setup.meshd.start(&setup.ns_meshd);
    assert!(
        setup
            .ns_meshd
            .ping_until(ip("10.2.0.1"), Duration::from_secs(15)),
        "no traffic after meshd restarted with the same key:\n{}",
        setup.meshd.log()
    );
    assert!(
        setup.ns_wg.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "wireguard-go -> restarted meshd failed"
    );
}

#[test]
fn a_peer_with_a_wrong_key_gets_nothing_through() {
    if !require_root("a_peer_with_a_wrong_key_gets_nothing_through") {
        return;
    }
    let setup = interop("badkey", false);
    assert!(
        !setup
            .ns_wg
            .ping_until(ip("10.1.0.1"), Duration::from_secs(4)),
        "wireguard-go with a key meshd does not know got a ping through"
    );
    assert!(
        !setup
            .ns_meshd
            .ping_until(ip("10.2.0.1"), Duration::from_secs(3)),
        "meshd reached a peer whose key it has wrong"
    );
}

#[test]
fn a_core_relays_between_two_spokes_without_kernel_forwarding() {
    if !require_root("a_core_relays_between_two_spokes_without_kernel_forwarding") {
        return;
    }
    let (core, spoke1, spoke2) = underlay_hub("relay");
    // The relay must happen inside meshd: the core's kernel does not forward.
    core.set_sysctl("net/ipv4/ip_forward", "0");
    core.set_sysctl("net/ipv6/conf/all/forwarding", "0");

    let mut hub = node("hub", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let mut one = node("one", "198.51.100.2:51820", &["10.2.0.1/16"]);
    let mut two = node("two", "203.0.113.2:51820", &["10.3.0.1/16"]);
    hub.add_peer_node(&one, &[], &["10.2.0.0/16"], None);
    hub.add_peer_node(&two, &[], &["10.3.0.0/16"], None);
    // Each spoke sends the whole mesh to its core.
    one.add_peer_node(
        &hub,
        &["198.51.100.1:51820"],
        &["10.1.0.0/16", "10.3.0.0/16"],
        Some(1),
    );
    two.add_peer_node(
        &hub,
        &["203.0.113.1:51820"],
        &["10.1.0.0/16", "10.2.0.0/16"],
        Some(1),
    );
    hub.start(&core);
    one.start(&spoke1);
    two.start(&spoke2);

    assert!(
        spoke1.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "spoke one cannot reach the core:\n{}",
        one.log()
    );
    assert!(
        spoke2.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "spoke two cannot reach the core:\n{}",
        two.log()
    );
    assert!(
        spoke1.ping_until(ip("10.3.0.1"), PING_TIMEOUT),
        "spoke one cannot reach spoke two through the core:\n{}",
        hub.log()
    );
    assert!(
        spoke2.ping_all(ip("10.2.0.1"), 5),
        "spoke two -> spoke one lost pings"
    );
}

#[test]
fn a_peer_that_changes_its_underlay_address_is_followed() {
    if !require_root("a_peer_that_changes_its_underlay_address_is_followed") {
        return;
    }
    let (ns_a, ns_b) = underlay_pair("roam");
    let mut alpha = node("alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let mut beta = node("beta", "198.51.100.2:51820", &["10.2.0.1/16"]);
    alpha.add_peer_node(&beta, &["198.51.100.2:51820"], &["10.2.0.0/16"], Some(1));
    // beta has an old, wrong endpoint for alpha: it must follow where alpha's packets come from.
    beta.add_peer_node(&alpha, &["198.51.100.1:51820"], &["10.1.0.0/16"], None);
    alpha.start(&ns_a);
    beta.start(&ns_b);
    assert!(
        ns_b.ping_until(ip("10.1.0.1"), PING_TIMEOUT),
        "no initial tunnel:\n{}",
        beta.log()
    );

    // alpha's ISP gives it a new address; the old one disappears (the new one is promoted to
    // primary rather than deleted with it).
    ns_a.set_sysctl("net/ipv4/conf/ul0/promote_secondaries", "1");
    ns_a.ip(&["addr", "add", "198.51.100.11/24", "dev", "ul0"]);
    ns_a.ip(&["addr", "del", "198.51.100.1/24", "dev", "ul0"]);
    assert!(
        ns_b.ping_until(ip("10.1.0.1"), Duration::from_secs(15)),
        "beta did not follow alpha to its new address:\n{}",
        beta.log()
    );
}

#[test]
fn without_configured_addresses_the_node_uses_its_allocation() {
    if !require_root("without_configured_addresses_the_node_uses_its_allocation") {
        return;
    }
    let namespace = Namespace::new("alloc");
    // The first node of a new mesh gets index 1: 10.1.0.1/16 and ::1 of its /64.
    let mut alpha = node("alpha", "198.51.100.1:51820", &[]);
    alpha.start(&namespace);
    let addresses = namespace.ip(&["-o", "addr", "show", "dev", "mesh0"]);
    assert!(
        addresses.contains("inet 10.1.0.1/16"),
        "no allocated IPv4 address: {addresses}"
    );
    assert!(
        addresses
            .lines()
            .any(|l| l.contains("inet6 fd00:99:") && l.contains("::1/64")),
        "no allocated IPv6 address from pool6 fd00:99::/48: {addresses}"
    );
}

#[test]
fn a_failed_start_reports_why_and_leaves_nothing_behind() {
    if !require_root("a_failed_start_reports_why_and_leaves_nothing_behind") {
        return;
    }
    let namespace = Namespace::new("failstart");
    // Something else holds the WireGuard port in the namespace (a dual-stack socket: both
    // families).
    let _squatter =
        namespace.run_in(|| std::net::UdpSocket::bind("[::]:51820").expect("bind the port first"));
    let alpha = node("alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let beta = node("beta", "198.51.100.2:51820", &["10.2.0.1/16"]);
    alpha.add_peer_node(&beta, &["198.51.100.2:51820"], &["10.2.0.0/16"], None);

    let config = alpha.config_path();
    let state = alpha.state_dir();
    let output = namespace.exec(
        MESHD,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "run",
        ],
    );
    let error = match output {
        Ok(output) => panic!("meshd run succeeded with its port taken: {output:?}"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("51820"),
        "the error does not name the port: {error}"
    );
    assert_eq!(
        meshd_routes(&namespace).trim(),
        "",
        "a failed start left routes behind"
    );
    assert!(
        namespace.exec("ip", &["link", "show", "mesh0"]).is_err(),
        "a failed start left mesh0 behind"
    );
}
