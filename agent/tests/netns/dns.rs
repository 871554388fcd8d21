//! A static peer configured by DNS name (needs root): dnsmasq in a namespace of its own serves
//! beta's name with a 1 s TTL, alpha's namespace resolves through it
//! (/etc/netns/NS/resolv.conf), and beta alone knows no endpoint of alpha, so only DNS can
//! bring alpha to beta. Then beta moves to a new underlay address and the record follows:
//! alpha reaches beta at the new address through the tunnel, without a restart or a reload.

use std::path::Path;
use std::time::{Duration, Instant};

use netns_tests::{Dnsmasq, MeshdNode, Namespace, NetnsResolvConf, connect_veth, ip, require_root};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const NAME: &str = "beta.mesh.test";

fn node(name: &str, endpoint: &str, addresses: &[&str]) -> MeshdNode {
    MeshdNode::with_addresses(Path::new(MESHD), name, endpoint, addresses)
}

#[test]
fn a_peer_named_in_dns_is_followed_to_its_new_address() {
    if !require_root("a_peer_named_in_dns_is_followed_to_its_new_address") {
        return;
    }
    let ns_a = Namespace::new("dnsa");
    let ns_b = Namespace::new("dnsb");
    let ns_d = Namespace::new("dnsd");
    connect_veth(
        &ns_a,
        "ulb",
        &["198.51.100.1/24"],
        &ns_b,
        "ul0",
        &["198.51.100.2/24"],
    );
    connect_veth(
        &ns_a,
        "uld",
        &["203.0.113.1/24"],
        &ns_d,
        "ul0",
        &["203.0.113.53/24"],
    );
    let server = ip("203.0.113.53");
    let mut dnsmasq = Dnsmasq::start(
        "mesh",
        (server, 53).into(),
        1,
        &[(NAME, ip("198.51.100.2"))],
        Some(ns_d.name()),
    );
    let _resolv = NetnsResolvConf::write(ns_a.name(), server);

    let mut alpha = node("alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let mut beta = node("beta", "198.51.100.2:51820", &["10.2.0.1/16"]);
    alpha.add_peer_node(
        &beta,
        &[&format!("{NAME}:51820")],
        &["10.2.0.0/16"],
        Some(1),
    );
    beta.add_peer_node(&alpha, &[], &["10.1.0.0/16"], None);
    let mut config = std::fs::read_to_string(alpha.config_path()).unwrap();
    config.push_str("\n[dns]\nmin_ttl = 1\n");
    std::fs::write(alpha.config_path(), config).unwrap();
    alpha.start(&ns_a);
    beta.start(&ns_b);
    assert!(
        ns_a.ping_until(ip("10.2.0.1"), Duration::from_secs(10)),
        "alpha cannot reach beta by name:\n{}\n{}",
        alpha.log(),
        dnsmasq.log()
    );

    // beta moves: a new address, the record follows, the old address goes.
    // (Without promote_secondaries, deleting the first address of the subnet deletes the
    // second one too.)
    ns_b.set_sysctl("net/ipv4/conf/ul0/promote_secondaries", "1");
    ns_b.ip(&["address", "add", "198.51.100.22/24", "dev", "ul0"]);
    dnsmasq.set_records(&[(NAME, ip("198.51.100.22"))]);
    let moved = Instant::now();
    ns_b.ip(&["address", "del", "198.51.100.2/24", "dev", "ul0"]);
    let reached = ns_a.ping_until(ip("10.2.0.1"), Duration::from_secs(10));
    let took = moved.elapsed();
    assert!(
        reached,
        "alpha lost beta after the move:\n{}\n{}",
        alpha.log(),
        alpha.command(&["peers"])
    );
    eprintln!("beta reached at its new address {took:?} after the record changed");
    assert!(
        alpha.log().contains("198.51.100.22"),
        "alpha never logged the new answer:\n{}",
        alpha.log()
    );
    drop(dnsmasq);
}
