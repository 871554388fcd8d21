//! Internet exits and a shared (anycast) prefix end to end, in network namespaces (needs
//! root). Three cores on one documentation-range underlay, admitted with real tokens:
//!
//! - alpha holds the CA and is the core of the spoke delta; it sets `[exit] serve` without
//!   an approval, and has the rule `192.0.2.128/25 via gamma`;
//! - beta and gamma are approved exits (`invite --exit`) with `[exit] serve`, each with an
//!   uplink into the "inet" namespace, where 192.0.2.1 and 192.0.2.129 live and nothing
//!   routes back to the mesh; both serve the shared address 203.0.113.53/32
//!   (`invite --anycast`, `[routing] anycast_prefixes`);
//! - delta is a spoke with `[exit] use = "nearest"` and a LAN namespace behind it.
//!
//! Checked: the LAN host reaches 192.0.2.1 through the nearest exit, masqueraded (inet has no
//! route to the LAN, so a reply proves it); the rule sends 192.0.2.129 through gamma; the
//! shared address answers from one announcer (a burst of pings may lose two under load); alpha announces no default (it is no exit) and
//! says why once; a phone (wireguard-go) set up by `meshd client add --exit` on alpha reaches
//! the Internet through the same exit, over IPv4 and IPv6; when the exit in use is killed (-9) traffic to the Internet and to the
//! shared address moves to the other one within 5 s, measured.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "member_node.rs"]
mod member_node;

use std::time::{Duration, Instant};

use ipnet::IpNet;
use member_node::{Node, endpoint, invite};
use mesh_config::exit::UseExits;
use netns_tests::{Namespace, Signal, connect_veth, require_root, wait_until};

const DASHBOARD: &str = include_str!("../../../packaging/grafana/meshd-dashboard.json");

/// Bound for the mesh, BGP and the exits to settle after the start.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound for traffic to move to the other exit.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);
/// How long the measurement waits at most (so that a slow failover is measured, not cut).
const FAILOVER_WAIT: Duration = Duration::from_secs(20);

const INTERNET_HOST: &str = "192.0.2.1";
/// The Internet over IPv6 (the exits masquerade both families).
const INTERNET_HOST6: &str = "2001:db8:ffff::1";
const RULE_HOST: &str = "192.0.2.129";
const RULE_DESTINATION: &str = "192.0.2.128/25";
const SHARED: &str = "203.0.113.53";
const SHARED_PREFIX: &str = "203.0.113.53/32";
const LAN: &str = "192.168.50.0/24";
const LAN_HOST: &str = "192.168.50.10";

/// One exit's uplink into inet: the exit's addresses, inet's addresses, inet's interface.
struct Uplink {
    exit_address: &'static str,
    inet_address: &'static str,
    exit_address6: &'static str,
    inet_address6: &'static str,
    inet_interface: &'static str,
}

const BETA_UPLINK: Uplink = Uplink {
    exit_address: "203.0.113.1/29",
    inet_address: "203.0.113.2",
    exit_address6: "2001:db8:b::1/64",
    inet_address6: "2001:db8:b::2",
    inet_interface: "to-beta",
};
const GAMMA_UPLINK: Uplink = Uplink {
    exit_address: "203.0.113.9/29",
    inet_address: "203.0.113.10",
    exit_address6: "2001:db8:c::1/64",
    inet_address6: "2001:db8:c::2",
    inet_interface: "to-gamma",
};

/// Connects `exit` to inet with its uplink `up0` as its default route.
fn connect_uplink(exit: &Node, inet: &Namespace, uplink: &Uplink) {
    let inet_side = format!("{}/29", uplink.inet_address);
    let inet_side6 = format!("{}/64", uplink.inet_address6);
    connect_veth(
        &exit.namespace,
        "up0",
        &[uplink.exit_address, uplink.exit_address6],
        inet,
        uplink.inet_interface,
        &[&inet_side, &inet_side6],
    );
    exit.namespace
        .ip(&["-6", "route", "add", "default", "via", uplink.inet_address6]);
    let address6 = uplink.exit_address6.split('/').next().unwrap();
    exit.namespace.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        uplink.inet_address6,
        "table",
        "101",
    ]);
    exit.namespace
        .ip(&["-6", "rule", "add", "from", address6, "lookup", "101"]);
    exit.namespace
        .ip(&["route", "add", "default", "via", uplink.inet_address]);
    // As docs/operations.md asks of a host with two uplinks: the uplink's address leaves by
    // its own link. (Without it the kernel sends the exit's 203.0.113.x probes out of the
    // underlay, and the other cores roam to an address they cannot answer.)
    let address = uplink.exit_address.split('/').next().unwrap();
    exit.namespace.ip(&[
        "route",
        "add",
        "default",
        "via",
        uplink.inet_address,
        "table",
        "101",
    ]);
    exit.namespace
        .ip(&["rule", "add", "from", address, "lookup", "101"]);
}

/// Packets inet received from one exit's uplink.
fn received_from(inet: &Namespace, uplink: &Uplink) -> u64 {
    let path = format!(
        "/sys/class/net/{}/statistics/rx_packets",
        uplink.inet_interface
    );
    let text = inet.exec_ok("cat", &[&path]);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}: {text:?}"))
}

/// ICMP echo requests a namespace has received (`/proc/net/snmp` is per namespace).
fn echo_requests(namespace: &Namespace) -> u64 {
    let snmp = namespace.exec_ok("cat", &["/proc/net/snmp"]);
    let mut icmp = snmp.lines().filter(|line| line.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else {
        panic!("no Icmp lines in /proc/net/snmp:\n{snmp}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InEchos")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no InEchos in /proc/net/snmp:\n{snmp}"))
}

/// One ping from `namespace`, waiting at most `wait` seconds for the reply.
fn ping_once(namespace: &Namespace, destination: &str, wait: &str) -> bool {
    namespace
        .exec("ping", &["-n", "-q", "-c", "1", "-W", wait, destination])
        .is_ok()
}

/// Pings that may be lost on this shared 2-core machine in a burst of 20 (the userspace data
/// plane of a debug build under load); the exit check needs the bulk, not every one.
const LOSS_ALLOWED: u32 = 2;

/// Sends `count` pings 50 ms apart from `namespace` and returns how many were answered.
fn pings_answered(namespace: &Namespace, destination: &str, count: u32) -> u32 {
    let count = count.to_string();
    let output = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace.name(),
            "ping",
            "-n",
            "-q",
            "-c",
            &count,
        ])
        .args(["-i", "0.05", "-W", "1", destination])
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&output.stdout);
    // "20 packets transmitted, 19 received, 5% packet loss, time 1003ms"
    text.split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Which of the two exits carried a burst of pings from `from` to `destination`: the one
/// whose uplink saw them.
fn exit_used(from: &Namespace, inet: &Namespace, destination: &str) -> &'static str {
    const COUNT: u32 = 20;
    let (beta_before, gamma_before) = (
        received_from(inet, &BETA_UPLINK),
        received_from(inet, &GAMMA_UPLINK),
    );
    let answered = pings_answered(from, destination, COUNT);
    assert!(
        answered + LOSS_ALLOWED >= COUNT,
        "only {answered} of {COUNT} pings to {destination} were answered"
    );
    let beta = received_from(inet, &BETA_UPLINK) - beta_before;
    let gamma = received_from(inet, &GAMMA_UPLINK) - gamma_before;
    let answered = u64::from(answered);
    match (beta >= answered, gamma >= answered) {
        (true, false) => "beta",
        (false, true) => "gamma",
        _ => panic!("pings to {destination}: {beta} packets via beta, {gamma} via gamma"),
    }
}

/// Which announcer of the shared address answered a burst of pings from the LAN host.
fn announcer_used(lan: &Namespace, beta: &Node, gamma: &Node) -> &'static str {
    const COUNT: u32 = 10;
    let (beta_before, gamma_before) = (
        echo_requests(&beta.namespace),
        echo_requests(&gamma.namespace),
    );
    let answered = pings_answered(lan, SHARED, COUNT);
    assert!(
        answered + LOSS_ALLOWED >= COUNT,
        "only {answered} of {COUNT} pings to the shared address {SHARED} were answered"
    );
    let on_beta = echo_requests(&beta.namespace) - beta_before;
    let on_gamma = echo_requests(&gamma.namespace) - gamma_before;
    let answered = u64::from(answered);
    match (on_beta >= answered, on_gamma >= answered) {
        (true, false) => "beta",
        (false, true) => "gamma",
        _ => panic!("pings to {SHARED}: {on_beta} echo requests on beta, {on_gamma} on gamma"),
    }
}

/// The exit `node` shows for `prefix` in `meshd routes --json`.
fn exit_for(node: &Node, prefix: &str) -> Option<String> {
    let prefix: IpNet = prefix.parse().unwrap();
    node.routes()
        .exits
        .into_iter()
        .find(|e| e.prefix == prefix)
        .and_then(|e| e.exit)
}

/// The peer `node`'s data plane encrypts `prefix` to.
fn data_plane_peer(node: &Node, prefix: &str) -> Option<String> {
    let prefix: IpNet = prefix.parse().unwrap();
    node.routes()
        .routes
        .into_iter()
        .find(|r| r.prefix == prefix)
        .map(|r| r.peer)
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[test]
fn traffic_leaves_through_the_nearest_exit_follows_rules_and_moves_when_the_exit_dies() {
    if !require_root(
        "traffic_leaves_through_the_nearest_exit_follows_rules_and_moves_when_the_exit_dies",
    ) {
        return;
    }
    let isp = Namespace::new("ex-isp");
    isp.ip(&["link", "add", "br0", "type", "bridge"]);
    isp.ip(&["link", "set", "br0", "up"]);
    let mut alpha = Node::new("ex-alpha", &isp, 1);
    let mut beta = Node::new("ex-beta", &isp, 2);
    let mut gamma = Node::new("ex-gamma", &isp, 3);
    let mut delta = Node::new("ex-delta", &isp, 4);

    // The Internet: two hosts on inet's loopback, reachable only through the exits' uplinks.
    let inet = Namespace::new("ex-inet");
    inet.ip(&["link", "set", "lo", "up"]);
    for host in [INTERNET_HOST, RULE_HOST] {
        inet.ip(&["addr", "add", &format!("{host}/32"), "dev", "lo"]);
    }
    inet.ip(&["addr", "add", &format!("{INTERNET_HOST6}/128"), "dev", "lo"]);
    connect_uplink(&beta, &inet, &BETA_UPLINK);
    connect_uplink(&gamma, &inet, &GAMMA_UPLINK);
    // The shared address, served by both exits.
    for exit in [&beta, &gamma] {
        exit.namespace.ip(&["link", "set", "lo", "up"]);
        exit.namespace
            .ip(&["addr", "add", SHARED_PREFIX, "dev", "lo"]);
    }
    // delta's LAN, one host behind it.
    let lan = Namespace::new("ex-lan");
    connect_veth(
        &delta.namespace,
        "lan0",
        &["192.168.50.1/24"],
        &lan,
        "eth0",
        &[&format!("{LAN_HOST}/24")],
    );
    lan.ip(&["route", "add", "default", "via", "192.168.50.1"]);
    delta.namespace.set_sysctl("net/ipv4/ip_forward", "1");

    alpha.meshd(&["init", "--name", "alpha", "--endpoint", &endpoint(1)]);
    alpha.configure(|config| {
        // Not approved: withheld, and said.
        config.exit.serve = true;
        config.exit.routes.push(mesh_config::ExitRoute {
            destination: net(RULE_DESTINATION),
            via: vec!["gamma".into()],
        });
    });
    alpha.start();
    for (node, name, host) in [(&mut beta, "beta", 2), (&mut gamma, "gamma", 3)] {
        let token = invite(
            &alpha,
            &[name, "--role", "core", "--exit", "--anycast", SHARED_PREFIX],
        );
        let out = node.meshd(&["join", &token, "--endpoint", &endpoint(host)]);
        assert!(out.contains("Joined mesh"), "{out}");
        node.configure(|config| {
            config.exit.serve = true;
            config.routing.anycast_prefixes = vec![net(SHARED_PREFIX)];
        });
        node.start();
    }
    let token = invite(
        &alpha,
        &[
            "delta", "--role", "spoke", "--core", "alpha", "--route", LAN,
        ],
    );
    let out = delta.meshd(&["join", &token]);
    assert!(out.contains("Joined mesh"), "{out}");
    delta.configure(|config| {
        config.routing.lan_prefixes = vec![net(LAN)];
        config.exit.use_exits = UseExits::Nearest;
    });
    delta.start();

    // The LAN host reaches the Internet through an exit.
    let started = Instant::now();
    let reached = wait_until(CONVERGE_TIMEOUT, || ping_once(&lan, INTERNET_HOST, "1"));
    assert!(
        reached,
        "the LAN host cannot reach {INTERNET_HOST} through an exit\nalpha:\n{}\ndelta:\n{}",
        alpha.log(),
        delta.log()
    );
    eprintln!(
        "exits: the LAN host reached {INTERNET_HOST} {:?} after delta started",
        started.elapsed()
    );
    // Masqueraded: inet only routes back to the uplinks, so a reply means the source was the
    // exit's uplink address.
    let first = exit_used(&lan, &inet, INTERNET_HOST);
    let other = if first == "beta" { "gamma" } else { "beta" };
    assert!(
        wait_until(FAILOVER_BOUND, || exit_for(&alpha, "0.0.0.0/0").as_deref()
            == Some(first)),
        "alpha's routes name another exit than {first}, which the traffic took"
    );
    assert_eq!(
        data_plane_peer(&delta, "0.0.0.0/0").as_deref(),
        Some("alpha")
    );
    eprintln!("exits: the default goes through {first}");

    // The rule sends 192.0.2.128/25 through gamma whatever is nearest.
    let settled = wait_until(CONVERGE_TIMEOUT, || {
        // `meshd routes` shows the exits a moment after the data plane has them.
        data_plane_peer(&alpha, RULE_DESTINATION).as_deref() == Some("gamma")
            && exit_for(&alpha, RULE_DESTINATION).as_deref() == Some("gamma")
    });
    assert!(
        settled,
        "alpha does not send {RULE_DESTINATION} to gamma: data plane {:?}, exits {:?}",
        data_plane_peer(&alpha, RULE_DESTINATION),
        exit_for(&alpha, RULE_DESTINATION)
    );
    assert_eq!(exit_used(&lan, &inet, RULE_HOST), "gamma");

    // The shared address: both announce it, one answers.
    let both = wait_until(CONVERGE_TIMEOUT, || {
        let routes = alpha.routes().bgp_routes;
        ["beta", "gamma"].iter().all(|name| {
            routes
                .iter()
                .any(|r| r.prefix == net(SHARED_PREFIX) && r.learnt_from == *name)
        })
    });
    assert!(
        both,
        "alpha does not have {SHARED_PREFIX} from both beta and gamma"
    );
    let announcer = announcer_used(&lan, &beta, &gamma);
    eprintln!("exits: {SHARED} answered by {announcer}");

    // alpha is no exit: it announces no default, and said so once.
    let log = alpha.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("[exit] serve: this node's certificate does not approve"))
        .collect();
    assert_eq!(said.len(), 1, "alpha's warning, once:\n{log}");
    for node in [&beta, &gamma] {
        let from_alpha: Vec<_> = node
            .routes()
            .bgp_routes
            .into_iter()
            .filter(|r| r.prefix.prefix_len() == 0 && r.learnt_from == "alpha")
            .collect();
        assert!(
            from_alpha.is_empty(),
            "{} has a default route from alpha: {from_alpha:?}",
            node.name
        );
    }
    assert!(
        !log.contains("is not an approved Internet exit"),
        "a default was refused on alpha, so somebody announced one without approval:\n{log}"
    );

    // A phone with a standard WireGuard app, from `meshd client add --exit` on alpha: all its
    // traffic goes into the mesh and leaves through alpha's exit.
    let phone = Node::new("ex-phone", &isp, 9);
    let text = alpha.meshd(&["client", "add", "phone", "--exit"]);
    let config = api_support::parse_wg_quick(&text).expect("a wg-quick configuration");
    let allowed = &config.peers[0]["AllowedIPs"];
    assert!(
        allowed.contains("0.0.0.0/0") && allowed.contains("::/0"),
        "the exit client sends everything into the mesh: {allowed}"
    );
    let _app = api_support::client_from(&phone.namespace, &config);
    let internet: std::net::IpAddr = INTERNET_HOST.parse().unwrap();
    assert!(
        phone.namespace.ping_until(internet, CONVERGE_TIMEOUT),
        "the phone cannot reach {INTERNET_HOST} through alpha's exit"
    );
    assert_eq!(exit_used(&phone.namespace, &inet, INTERNET_HOST), first);
    // And over IPv6 (::/0 from the same exit, masqueraded as the exit's IPv6 uplink address).
    assert!(
        wait_until(CONVERGE_TIMEOUT, || ping_once(
            &phone.namespace,
            INTERNET_HOST6,
            "1"
        )),
        "the phone cannot reach {INTERNET_HOST6} over IPv6 through alpha's exit"
    );
    assert_eq!(exit_used(&phone.namespace, &inet, INTERNET_HOST6), first);

    // The dashboard's Internet exits row has data: every exit metric it queries is exported
    // by alpha, which uses `first` for the default (netns_mesh checks the other rows).
    let metrics = alpha.metrics();
    let exit_metrics: Vec<String> = netns_tests::dashboard_metrics(DASHBOARD)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|name| name.starts_with("meshd_exit_"))
        .collect();
    assert!(!exit_metrics.is_empty(), "the dashboard has no exits row");
    for name in &exit_metrics {
        assert!(
            metrics.has_sample(name),
            "the dashboard queries {name}; alpha has none"
        );
    }
    assert_eq!(
        metrics.value(
            "meshd_exit_in_use",
            &[("prefix", "0.0.0.0/0"), ("exit", first)]
        ),
        Some(1.0),
        "alpha's exit metric for the IPv4 default"
    );

    // The exit in use dies without a word.
    let dying = if first == "beta" {
        &mut beta
    } else {
        &mut gamma
    };
    let mut daemon = dying.daemon.take().expect("the exit runs");
    let killed_at = Instant::now();
    daemon.signal(Signal::SIGKILL);
    let mut moved = None;
    while killed_at.elapsed() < FAILOVER_WAIT {
        if ping_once(&lan, INTERNET_HOST, "0.3") {
            moved = Some(killed_at.elapsed());
            break;
        }
    }
    let moved = moved.unwrap_or_else(|| {
        panic!(
            "no traffic to {INTERNET_HOST} {FAILOVER_WAIT:?} after {first} was killed\nalpha:\n{}",
            alpha.log()
        )
    });
    eprintln!(
        "exits: {first} killed, traffic to the Internet back through {other} after {moved:?}"
    );
    assert!(
        moved <= FAILOVER_BOUND,
        "traffic moved to {other} only after {moved:?}"
    );
    // The first answers may come through the dead exit's relay (alpha relays to it via the
    // other core, which is an exit too); the default moves once the relay fails as well.
    assert!(
        wait_until(FAILOVER_BOUND, || exit_for(&alpha, "0.0.0.0/0").as_deref()
            == Some(other)),
        "alpha's routes still name {first}"
    );
    eprintln!(
        "exits: alpha's default names {other} {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(exit_used(&lan, &inet, INTERNET_HOST), other);
    assert!(
        wait_until(FAILOVER_BOUND, || ping_once(
            &phone.namespace,
            INTERNET_HOST,
            "0.3"
        )),
        "the phone lost the Internet with {first}"
    );
    assert!(
        wait_until(FAILOVER_BOUND, || ping_once(
            &phone.namespace,
            INTERNET_HOST6,
            "0.3"
        )),
        "the phone lost the IPv6 Internet with {first}"
    );
    // The shared address is served by the survivor.
    let reached = wait_until(FAILOVER_BOUND, || ping_once(&lan, SHARED, "0.3"));
    assert!(reached, "{SHARED} unreachable after {first} died");
    assert_eq!(announcer_used(&lan, &beta, &gamma), other);
    // The rule: gamma's destination stays on gamma, or falls back to the nearest (beta).
    let rule_exit = exit_used(&lan, &inet, RULE_HOST);
    assert_eq!(rule_exit, other, "{RULE_DESTINATION} after {first} died");
    drop(daemon);

    for node in [&mut alpha, &mut beta, &mut gamma, &mut delta] {
        node.stop();
    }
}
