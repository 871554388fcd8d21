//! The mesh end to end in network namespaces (needs root): three cores and one spoke, each a
//! separate `meshd run` in its own namespace, admitted with real tokens (`meshd init`,
//! `meshd invite`, `meshd join`) over a documentation-range underlay.
//!
//! Underlay: an "isp" namespace with a bridge, every node on it with `198.51.100.N/24`. The
//! spoke has a LAN (`192.168.42.0/24`, approved with `--route`) towards a "lan" namespace
//! holding one host. The test checks: every node pings every other node's overlay address; a
//! core that is not the spoke's core reaches the LAN host (kernel route for the spoke's LAN,
//! transit through the spoke's core); a standard WireGuard client (wireguard-go) set up from
//! `meshd client add` on gamma reaches the LAN host too; after `meshd revoke` the spoke is
//! unreachable within seconds; with the CA node stopped the other cores still forward.
//!
//! The routing plane on the same mesh: the iBGP sessions (cores in full mesh, the spoke with
//! its core as route-reflector client) come up by themselves; the spoke's LAN arrives by BGP
//! at every core and is in the kernel with meshd's protocol; a LAN the spoke announces from
//! its own configuration without approval in its certificate is refused by its core and
//! reaches nobody; a friend's router on the spoke's LAN (BIRD, eBGP from the spoke's
//! `[[bgp.neighbor]]`) announces a network outside the mesh, which the spoke routes through it
//! and every core learns by BGP and reaches across the mesh; after the revocation the spoke's
//! routes are gone. With alpha and beta cut from each other on the underlay, alpha's
//! traffic to beta goes through gamma (relay), and back to the direct path afterwards.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "member_node.rs"]
mod member_node;

use std::net::IpAddr;
use std::time::Duration;

use member_node::{Node, endpoint, invite};
use netns_tests::{
    Namespace, connect_veth, dashboard_metrics, http_request, parse_exposition, require_root,
    run_checked, wait_until,
};

const DASHBOARD: &str = include_str!("../../../packaging/grafana/meshd-dashboard.json");
/// Bound for the mesh to converge on one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The revocation must tear the spoke's tunnel down within this.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(8);
const LAN: &str = "192.168.42.0/24";
const LAN_HOST: &str = "192.168.42.2";
/// A LAN the spoke announces without approval.
const ROGUE_LAN: &str = "192.168.99.0/24";
/// The friend's router on the spoke's LAN, and the network behind it.
const FRIEND_ASN: u32 = 65042;
const FRIEND_NET: &str = "203.0.113.0/24";
const FRIEND_HOST: &str = "203.0.113.1";
/// What the friend's router also announces, and the spoke's import policy lets in by mistake:
/// gamma's underlay address. The spoke
/// takes it from its own neighbour (its operator's choice), but a core must not route it into
/// the mesh: its tunnel to gamma would go into the tunnels.
const OVER_GAMMA: &str = "198.51.100.3/32";
/// Bound for the iBGP sessions and routes to settle.
const BGP_TIMEOUT: Duration = Duration::from_secs(20);

/// BIRD as the friend's router: eBGP with the spoke, announcing [`FRIEND_NET`].
fn friend_bird_config(dir: &std::path::Path) -> String {
    format!(
        r#"
log "{log}" all;
router id 192.168.42.2;
protocol device {{ }}
protocol static friend {{ ipv4; route {FRIEND_NET} blackhole; route {OVER_GAMMA} blackhole; }}
protocol bgp spoke {{
    local 192.168.42.2 as {FRIEND_ASN};
    neighbor 192.168.42.1 as 64512;
    passive on;
    hold time 9;
    ipv4 {{ import all; export where source = RTS_STATIC; }};
}}
"#,
        log = dir.join("bird.log").display()
    )
}

/// The spoke's `[[bgp.neighbor]]` for the friend's router (appended as text, as a person
/// would write it).
const FRIEND_NEIGHBOR: &str = r#"
[[bgp.neighbor]]
name = "friend"
address = "192.168.42.2"
remote_asn = 65042
import = { prefixes = ["203.0.113.0/24", "198.51.100.3/32"], default = "reject" }
export = { prefixes = ["10.0.0.0/8 le 16"], default = "reject" }
"#;

#[test]
fn three_cores_and_a_spoke_join_ping_route_a_lan_revoke_and_survive_the_ca() {
    if !require_root("three_cores_and_a_spoke_join_ping_route_a_lan_revoke_and_survive_the_ca") {
        return;
    }
    let isp = Namespace::new("isp");
    isp.ip(&["link", "add", "br0", "type", "bridge"]);
    isp.ip(&["link", "set", "br0", "up"]);

    let mut alpha = Node::new("alpha", &isp, 1);
    let mut beta = Node::new("beta", &isp, 2);
    let mut gamma = Node::new("gamma", &isp, 3);
    let mut spoke = Node::new("spoke", &isp, 4);
    let lan = Namespace::new("lan");
    connect_veth(
        &spoke.namespace,
        "lan0",
        &["192.168.42.1/24"],
        &lan,
        "eth0",
        &["192.168.42.2/24"],
    );
    lan.ip(&["route", "add", "default", "via", "192.168.42.1"]);
    spoke.namespace.set_sysctl("net/ipv4/ip_forward", "1");
    // The friend's router: BIRD on the LAN host, with the friend's network on its loopback.
    lan.ip(&["addr", "add", &format!("{FRIEND_HOST}/32"), "dev", "lo"]);
    let bird_dir = tempfile::tempdir().expect("a temporary directory");
    let bird_conf = bird_dir.path().join("bird.conf");
    std::fs::write(&bird_conf, friend_bird_config(bird_dir.path())).expect("bird.conf");
    let bird_socket = bird_dir.path().join("bird.ctl").display().to_string();
    let _bird = lan.spawn(
        "bird",
        "bird",
        &[
            "-f",
            "-c",
            &bird_conf.display().to_string(),
            "-s",
            &bird_socket,
        ],
        &[],
    );

    alpha.meshd(&["init", "--name", "alpha", "--endpoint", &endpoint(1)]);
    alpha.start();
    for (node, host) in [(&mut beta, 2), (&mut gamma, 3)] {
        let token = invite(&alpha, &[&node.name, "--role", "core"]);
        let out = node.meshd(&["join", &token, "--endpoint", &endpoint(host)]);
        assert!(out.contains("Joined mesh"), "{out}");
        node.start();
    }
    let token = invite(
        &alpha,
        &["spoke", "--role", "spoke", "--core", "beta", "--route", LAN],
    );
    // The spoke gives no endpoint: it calls its core.
    let out = spoke.meshd(&["join", &token]);
    assert!(out.contains("Joined mesh"), "{out}");
    // Its own configuration adds a LAN the CA did not approve.
    let mut config = mesh_config::load(&spoke.config()).expect("the spoke's meshd.toml");
    config.routing.lan_prefixes.push(ROGUE_LAN.parse().unwrap());
    let text = config.to_toml_string() + FRIEND_NEIGHBOR;
    std::fs::write(spoke.config(), text).expect("rewrite meshd.toml");
    spoke.start();

    // Every node reaches every other node's overlay addresses, both families. The spoke
    // goes first: nobody can reach it before it has called its core (it may sit behind
    // NAT, so its core learns its address from its first authenticated packet).
    let nodes = [&spoke, &alpha, &beta, &gamma];
    for from in nodes {
        for to in nodes.iter().filter(|n| n.name != from.name) {
            for address in to.overlay() {
                let ok = wait_until(PING_TIMEOUT, || from.pings(address));
                assert!(ok, "{} cannot ping {} at {address}", from.name, to.name);
            }
        }
    }

    // The spoke's LAN from a core that is not its core: gamma has a kernel route for it (meshd's
    // protocol), the packet crosses beta, the spoke forwards it to the LAN host.
    let protocol = meshd::netlink::MESHD_ROUTE_PROTOCOL.to_string();
    let routes = gamma
        .namespace
        .ip(&["-4", "route", "show", "proto", &protocol]);
    assert!(routes.contains(LAN), "gamma's meshd routes: {routes}");
    let lan_host: IpAddr = LAN_HOST.parse().unwrap();
    assert!(
        wait_until(PING_TIMEOUT, || gamma.pings(lan_host)),
        "gamma cannot reach the spoke's LAN host"
    );
    let peers = alpha.meshd(&["peers"]);
    assert!(peers.contains("beta") && peers.contains("gamma"), "{peers}");

    // BGP: the sessions came up by themselves, from membership.
    for (node, expected) in [
        (&alpha, vec!["beta", "gamma"]),
        (&beta, vec!["alpha", "gamma", "spoke"]),
        (&gamma, vec!["alpha", "beta"]),
        (&spoke, vec!["beta", "friend"]),
    ] {
        let up = wait_until(BGP_TIMEOUT, || node.established() == expected);
        assert!(
            up,
            "{}: established BGP sessions {:?}, expected {expected:?}:\n{}",
            node.name,
            node.established(),
            node.log()
        );
    }
    // Relay (#12.5): the ISP drops everything between alpha and beta, both ways, while
    // gamma still reaches both. alpha's traffic to beta goes through gamma within seconds,
    // the iBGP session alpha-beta stays up over it, and traffic returns to the direct path
    // once the ISP heals.
    let [beta_v4, _] = beta.overlay();
    let cut = |verb: &str| {
        for (node, other) in [(&alpha, 2), (&beta, 1)] {
            let to = format!("198.51.100.{other}/32");
            node.namespace.ip(&["route", verb, "blackhole", &to]);
        }
    };
    cut("add");
    let relayed = wait_until(Duration::from_secs(20), || {
        alpha.pings(beta_v4) && alpha.meshd(&["peers"]).contains("relayed via gamma")
    });
    assert!(
        relayed,
        "alpha does not reach beta through gamma:\n{}\n{}",
        alpha.meshd(&["peers"]),
        alpha.log()
    );
    assert!(
        alpha.log().contains("relay switch"),
        "no relay switch logged:\n{}",
        alpha.log()
    );
    assert!(
        beta.pings(alpha.overlay()[0]),
        "beta does not reach alpha back"
    );
    assert_eq!(alpha.established(), vec!["beta", "gamma"]);
    cut("del");
    let direct = wait_until(Duration::from_secs(30), || {
        !alpha.meshd(&["peers"]).contains("relayed via") && alpha.pings(beta_v4)
    });
    assert!(
        direct,
        "alpha still relays to beta after the ISP healed:\n{}\n{}",
        alpha.meshd(&["peers"]),
        alpha.log()
    );

    // The same, as Prometheus sees it on beta: three sessions, four members.
    let metrics = beta
        .namespace
        .run_in(|| http_request(([127, 0, 0, 1], 9474).into(), "GET", "/metrics"))
        .expect("beta serves metrics");
    let metrics = parse_exposition(&metrics.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        metrics.value("meshd_bgp_sessions_established", &[]),
        Some(3.0)
    );
    assert_eq!(
        metrics.value("meshd_bgp_session_up", &[("neighbor", "spoke")]),
        Some(1.0)
    );
    assert_eq!(metrics.value("meshd_control_members", &[]), Some(4.0));
    // Every metric the Grafana dashboard queries is one beta exports, with paths and BGP up
    // (#16.5); beta's peers are up, each with an active, probed path (#17.1, #12.7).
    // The Internet exits row has data only where a mesh has exits: netns_exits checks it.
    for name in dashboard_metrics(DASHBOARD)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|name| !name.starts_with("meshd_exit_"))
    {
        assert!(
            metrics.has_sample(&name),
            "the dashboard queries {name}; beta has none"
        );
    }
    for peer in ["alpha", "gamma", "spoke"] {
        assert_eq!(
            metrics.value("meshd_peer_state", &[("peer", peer), ("state", "up")]),
            Some(1.0),
            "{peer}"
        );
    }
    let peers: serde_json::Value = serde_json::from_str(&beta.meshd(&["peers", "--json"])).unwrap();
    for peer in peers["peers"].as_array().unwrap() {
        assert_eq!(peer["state"], "up", "{peer}");
        let paths = peer["paths"].as_array().unwrap();
        let active: Vec<_> = paths.iter().filter(|p| p["active"] == true).collect();
        assert_eq!(active.len(), 1, "one active path: {peer}");
        assert_eq!(active[0]["state"], "up", "{peer}");
        assert!(active[0]["rtt_ms"].is_number(), "{peer}");
    }
    let beta_sessions = beta.routes().bgp_sessions;
    let to_spoke = beta_sessions.iter().find(|s| s.name == "spoke").unwrap();
    assert!(to_spoke.internal && to_spoke.rr_client, "{to_spoke:?}");
    // The spoke's LAN by BGP at every core, best and in the kernel: from the spoke itself at
    // its core, reflected by its core (ORIGINATOR_ID the spoke) at the others.
    let [spoke_v4, _] = spoke.overlay();
    for core in [&alpha, &beta, &gamma] {
        let arrived = wait_until(BGP_TIMEOUT, || {
            core.best_bgp_route(LAN).is_some_and(|r| r.kernel)
        });
        assert!(
            arrived,
            "{} has no BGP route to {LAN} in the kernel: {:?}",
            core.name,
            core.routes()
        );
        let route = core.best_bgp_route(LAN).unwrap();
        let learnt_from = if core.name == "beta" { "spoke" } else { "beta" };
        assert_eq!(route.learnt_from, learnt_from, "{route:?}");
        assert_eq!(route.next_hop, Some(spoke_v4), "{route:?}");
        if core.name != "beta" {
            assert_eq!(
                route.originator_id.map(IpAddr::V4),
                Some(spoke_v4),
                "{route:?}"
            );
        }
        let kernel = core
            .namespace
            .ip(&["-4", "route", "show", "proto", &protocol]);
        assert!(kernel.contains(LAN), "{}: {kernel}", core.name);
    }
    // The friend's network: learnt by the spoke over eBGP and routed through the friend's
    // router, passed on by the spoke (next hop itself) and reflected by beta to every core.
    let spoke_kernel = spoke
        .namespace
        .ip(&["-4", "route", "show", "proto", &protocol]);
    assert!(
        spoke_kernel.contains(&format!("{FRIEND_NET} via 192.168.42.2")),
        "spoke's meshd routes: {spoke_kernel}"
    );
    for core in [&alpha, &beta, &gamma] {
        let arrived = wait_until(BGP_TIMEOUT, || {
            core.best_bgp_route(FRIEND_NET).is_some_and(|r| r.kernel)
        });
        assert!(
            arrived,
            "{} has no BGP route to {FRIEND_NET}: {:?}",
            core.name,
            core.routes()
        );
        let route = core.best_bgp_route(FRIEND_NET).unwrap();
        assert_eq!(route.as_path, FRIEND_ASN.to_string(), "{route:?}");
        assert_eq!(route.next_hop, Some(spoke_v4), "{route:?}");
    }
    // The route over gamma's endpoint: refused by the spoke's core, with the reason, and
    // nowhere in the mesh.
    let refused = wait_until(BGP_TIMEOUT, || {
        beta.log().lines().any(|l| {
            l.contains(OVER_GAMMA) && l.contains("underlay endpoint of the tunnel to \"gamma\"")
        })
    });
    assert!(refused, "beta did not refuse {OVER_GAMMA}:\n{}", beta.log());
    for core in [&alpha, &beta, &gamma] {
        assert!(
            core.best_bgp_route(OVER_GAMMA).is_none(),
            "{} took {OVER_GAMMA}",
            core.name
        );
    }
    let friend_host: IpAddr = FRIEND_HOST.parse().unwrap();
    assert!(
        wait_until(PING_TIMEOUT, || gamma.pings(friend_host)),
        "gamma cannot reach the friend's network behind the spoke"
    );

    // The unapproved LAN: announced by the spoke (its own route), refused by its core, so no
    // core has it in BGP or in the kernel.
    assert!(
        spoke
            .best_bgp_route(ROGUE_LAN)
            .is_some_and(|r| r.learnt_from == "local")
    );
    assert!(spoke.log().contains("not approved"), "{}", spoke.log());
    let refused = wait_until(BGP_TIMEOUT, || {
        beta.log()
            .lines()
            .any(|l| l.contains("BGP route refused") && l.contains(ROGUE_LAN))
    });
    assert!(refused, "beta did not log the refusal:\n{}", beta.log());
    let refusals = beta
        .log()
        .lines()
        .filter(|l| l.contains("BGP route refused") && l.contains(ROGUE_LAN))
        .count();
    assert_eq!(
        refusals,
        1,
        "logged once per session and prefix:\n{}",
        beta.log()
    );
    for core in [&alpha, &beta, &gamma] {
        assert!(
            core.best_bgp_route(ROGUE_LAN).is_none(),
            "{} took {ROGUE_LAN}",
            core.name
        );
        let kernel = core.namespace.ip(&["route", "show"]);
        assert!(!kernel.contains("192.168.99."), "{}: {kernel}", core.name);
    }

    // A phone with a standard WireGuard app, attached to gamma with the configuration
    // `meshd client add` prints, reaches the spoke's LAN host: phone -> gamma -> beta ->
    // spoke -> LAN, and back.
    let phone = Node::new("phone", &isp, 9);
    let config = gamma.meshd(&["client", "add", "phone"]);
    let config = api_support::parse_wg_quick(&config).expect("a wg-quick configuration");
    let allowed = &config.peers[0]["AllowedIPs"];
    assert!(
        allowed.contains(LAN),
        "the client routes the LAN: {allowed}"
    );
    let _app = api_support::client_from(&phone.namespace, &config);
    assert!(
        phone.namespace.ping_until(lan_host, PING_TIMEOUT),
        "the WireGuard client of gamma cannot reach the spoke's LAN host"
    );

    // A reload (SIGHUP) of the spoke without the friend's router and the unapproved LAN: that
    // session stops and its routes go everywhere, the own route is withdrawn, and the iBGP
    // session with the core carries on.
    let mut spoke_config = mesh_config::load(&spoke.config()).expect("the spoke's meshd.toml");
    spoke_config.bgp.neighbors.clear();
    spoke_config
        .routing
        .lan_prefixes
        .retain(|lan| *lan != ROGUE_LAN.parse::<ipnet::IpNet>().unwrap());
    std::fs::write(spoke.config(), spoke_config.to_toml_string()).expect("rewrite meshd.toml");
    let pid = spoke.daemon.as_ref().unwrap().pid().to_string();
    run_checked("kill", &["-HUP", &pid]).expect("kill -HUP meshd");
    let followed = wait_until(BGP_TIMEOUT, || {
        gamma.best_bgp_route(FRIEND_NET).is_none()
            && spoke.best_bgp_route(ROGUE_LAN).is_none()
            && spoke
                .routes()
                .bgp_sessions
                .iter()
                .all(|s| s.name != "friend")
    });
    assert!(followed, "the reload was not followed:\n{}", spoke.log());
    let spoke_kernel = spoke
        .namespace
        .ip(&["-4", "route", "show", "proto", &protocol]);
    assert!(!spoke_kernel.contains(FRIEND_NET), "{spoke_kernel}");
    assert_eq!(spoke.established(), ["beta"]);
    assert!(beta.established().contains(&"spoke".to_owned()));

    // Revocation: every node drops the spoke's tunnel within seconds, and its LAN route goes.
    let out = alpha.meshd(&["revoke", "spoke"]);
    assert!(out.contains("Revoked spoke"), "{out}");
    let cut = wait_until(REVOKE_TIMEOUT, || {
        !gamma.pings(spoke_v4) && !beta.pings(spoke_v4) && !gamma.pings(lan_host)
    });
    assert!(
        cut,
        "the revoked spoke is still reachable after {REVOKE_TIMEOUT:?}"
    );
    let gone = wait_until(REVOKE_TIMEOUT, || {
        !gamma
            .namespace
            .ip(&["-4", "route", "show", "proto", &protocol])
            .contains(LAN)
    });
    assert!(gone, "gamma still routes the revoked spoke's LAN");
    // ... and by BGP: beta ended the session, its routes are withdrawn everywhere.
    let withdrawn = wait_until(REVOKE_TIMEOUT, || {
        [&alpha, &beta, &gamma].iter().all(|core| {
            core.best_bgp_route(LAN).is_none() && core.best_bgp_route(FRIEND_NET).is_none()
        })
    });
    assert!(
        withdrawn,
        "a core still has a BGP route to the revoked spoke's LAN"
    );
    assert!(!beta.established().contains(&"spoke".to_owned()));

    // The CA node stops: the other cores keep forwarding between each other.
    alpha.stop();
    let [gamma_v4, gamma_v6] = gamma.overlay();
    for address in [gamma_v4, gamma_v6] {
        let ok = beta.namespace.ping_all(address, 5);
        assert!(ok, "beta lost gamma at {address} with the CA stopped");
    }
    spoke.stop();
    beta.stop();
    gamma.stop();
    drop(isp);
}
