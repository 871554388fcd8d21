//! The harness itself: namespaces, veth underlays, processes and cleanup.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use netns_tests::{Namespace, connect_veth, require_root, underlay_pair};

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn veth_underlay_carries_ipv4_and_ipv6_and_namespaces_are_deleted() {
    if !require_root("veth_underlay_carries_ipv4_and_ipv6_and_namespaces_are_deleted") {
        return;
    }
    let names;
    {
        let (a, b) = underlay_pair("veth-");
        names = (a.name().to_owned(), b.name().to_owned());
        let v4: IpAddr = "198.51.100.2".parse().unwrap();
        let v6: IpAddr = "2001:db8:100::2".parse().unwrap();
        assert!(
            a.ping_until(v4, Duration::from_secs(5)),
            "no IPv4 ping over the veth"
        );
        assert!(
            a.ping_until(v6, Duration::from_secs(5)),
            "no IPv6 ping over the veth"
        );
        assert!(namespace_exists(&names.0) && namespace_exists(&names.1));
    }
    assert!(
        !namespace_exists(&names.0),
        "namespace {} survived its drop",
        names.0
    );
    assert!(
        !namespace_exists(&names.1),
        "namespace {} survived its drop",
        names.1
    );
}

#[test]
fn a_panicking_test_still_kills_its_processes_and_deletes_its_namespace() {
    if !require_root("a_panicking_test_still_kills_its_processes_and_deletes_its_namespace") {
        return;
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let namespace = Namespace::new("panics");
        let sleeper = namespace.spawn("sleeper", "sleep", &["300"], &[]);
        sender
            .send((namespace.name().to_owned(), sleeper.pid()))
            .unwrap();
        panic!("deliberate panic inside a namespace test");
    });
    assert!(result.is_err());
    let (name, pid) = receiver.recv().unwrap();
    assert!(
        !namespace_exists(&name),
        "namespace {name} survived a panic"
    );
    assert!(
        !Path::new("/proc").join(pid.to_string()).exists(),
        "process {pid} survived a panic"
    );
}

#[test]
fn run_in_enters_the_namespace_on_its_own_thread_only() {
    if !require_root("run_in_enters_the_namespace_on_its_own_thread_only") {
        return;
    }
    let a = Namespace::new("runin-a");
    let b = Namespace::new("runin-b");
    connect_veth(
        &a,
        "ul0",
        &["203.0.113.1/24"],
        &b,
        "ul0",
        &["203.0.113.2/24"],
    );
    // The address exists only inside namespace a: binding to it works there, not here.
    let inside = a.run_in(|| {
        UdpSocket::bind("203.0.113.1:0")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    assert_eq!(inside, Ok(()));
    assert!(
        UdpSocket::bind("203.0.113.1:0").is_err(),
        "the test thread itself entered the namespace"
    );
}

#[test]
fn stop_with_sigterm_reports_the_exit() {
    if !require_root("stop_with_sigterm_reports_the_exit") {
        return;
    }
    let namespace = Namespace::new("stop");
    let mut sleeper = namespace.spawn("sleeper", "sleep", &["300"], &[]);
    assert!(sleeper.try_exit_status().is_none());
    let status = sleeper.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
    assert!(status.is_some(), "sleep did not exit on SIGTERM");
}

#[test]
fn two_wireguard_go_peers_ping_each_other() {
    use netns_tests::{WgGoPeer, WgGoPeerConfig, wg_genkey, wg_pubkey};
    if !require_root("two_wireguard_go_peers_ping_each_other") {
        return;
    }
    let a = Namespace::new("wg-a");
    let b = Namespace::new("wg-b");
    connect_veth(
        &a,
        "ul0",
        &["198.51.100.1/24"],
        &b,
        "ul0",
        &["198.51.100.2/24"],
    );
    let (key_a, key_b) = (wg_genkey(), wg_genkey());
    let (pub_a, pub_b) = (wg_pubkey(&key_a), wg_pubkey(&key_b));
    let peer_a = WgGoPeer::start(
        &a,
        &WgGoPeerConfig {
            private_key: &key_a,
            listen_port: 51820,
            addresses: &["10.1.0.1/16"],
            peer_public_key: &pub_b,
            peer_endpoint: Some("198.51.100.2:51820"),
            peer_allowed_ips: &["10.2.0.0/16"],
        },
    );
    let _peer_b = WgGoPeer::start(
        &b,
        &WgGoPeerConfig {
            private_key: &key_b,
            listen_port: 51820,
            addresses: &["10.2.0.1/16"],
            peer_public_key: &pub_a,
            peer_endpoint: None,
            peer_allowed_ips: &["10.1.0.0/16"],
        },
    );
    assert!(
        a.ping_until("10.2.0.1".parse().unwrap(), Duration::from_secs(10)),
        "no ping through wireguard-go"
    );
    assert!(
        peer_a.latest_handshake(&a).is_some(),
        "ping worked but wg shows no handshake"
    );
}
