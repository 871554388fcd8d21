//! Reloading meshd.toml with SIGHUP in network namespaces (needs root): a static peer added
//! while a ping runs comes up, the tunnel that did not change keeps its session, a broken
//! file changes nothing, and a setting that needs a restart is refused with a log line.

use std::path::Path;
use std::time::Duration;

use netns_tests::{MeshdNode, Namespace, Signal, ip, require_root, underlay_hub};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

fn node(name: &str, endpoint: &str, addresses: &[&str]) -> MeshdNode {
    MeshdNode::with_addresses(Path::new(MESHD), name, endpoint, addresses)
}

/// A metric of alpha's peer beta.
fn beta_metric(alpha: &MeshdNode, namespace: &Namespace, name: &str) -> f64 {
    alpha
        .metrics(namespace)
        .value(name, &[("peer", "beta")])
        .unwrap_or_else(|| panic!("{name} for beta missing"))
}

#[test]
fn sighup_adds_a_peer_without_disturbing_the_running_tunnel() {
    if !require_root("sighup_adds_a_peer_without_disturbing_the_running_tunnel") {
        return;
    }
    // alpha in the middle: beta on one underlay link, gamma on another.
    let (ns_a, ns_b, ns_c) = underlay_hub("rld");
    let mut alpha = node("alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let mut beta = node("beta", "198.51.100.2:51820", &["10.2.0.1/16"]);
    let mut gamma = node("gamma", "203.0.113.2:51820", &["10.3.0.1/16"]);
    alpha.add_peer_node(&beta, &["198.51.100.2:51820"], &["10.2.0.0/16"], None);
    beta.add_peer_node(&alpha, &["198.51.100.1:51820"], &["10.1.0.0/16"], None);
    gamma.add_peer_node(&alpha, &["203.0.113.1:51820"], &["10.1.0.0/16"], None);
    alpha.start(&ns_a);
    beta.start(&ns_b);
    gamma.start(&ns_c);
    assert!(
        ns_a.ping_until(ip("10.2.0.1"), Duration::from_secs(10)),
        "alpha cannot reach beta:\n{}",
        alpha.log()
    );
    let handshakes = beta_metric(&alpha, &ns_a, "meshd_peer_handshakes_total");
    let received = beta_metric(&alpha, &ns_a, "meshd_peer_received_bytes_total");

    // A ping to beta runs through everything that follows.
    let mut ping = ns_a.spawn("ping", "ping", &["-n", "-i", "0.2", "10.2.0.1"], &[]);

    // 1. A broken file: refused with its diagnostic, nothing changes.
    let good = std::fs::read_to_string(alpha.config_path()).unwrap();
    std::fs::write(
        alpha.config_path(),
        format!("{good}\n[[peer]]\nname = \"Gamma\"\n"),
    )
    .unwrap();
    let outcome = alpha.reload();
    assert!(
        outcome.contains("reload refused")
            && outcome.contains("peer[1].public_key: required key is missing"),
        "{outcome}"
    );

    // 2. gamma added, and the listen port changed (which needs a restart).
    std::fs::write(
        alpha.config_path(),
        good.replace("listen_port = 51820", "listen_port = 51821"),
    )
    .unwrap();
    alpha.add_peer_node(&gamma, &["203.0.113.2:51820"], &["10.3.0.0/16"], None);
    let outcome = alpha.reload();
    assert!(
        outcome.contains("configuration reloaded: peers: added gamma"),
        "{outcome}"
    );
    let log = alpha.log();
    assert!(
        log.contains("node.listen_port changed from 51820 to 51821")
            && log.contains("restart meshd to apply it"),
        "no restart-needed line:\n{log}"
    );
    assert!(
        ns_a.ping_until(ip("10.3.0.1"), Duration::from_secs(10)),
        "gamma, added by the reload, is unreachable:\n{}",
        alpha.log()
    );
    assert!(
        ns_c.ping_until(ip("10.1.0.1"), Duration::from_secs(10)),
        "gamma cannot reach alpha"
    );

    ping.signal(Signal::SIGINT);
    let exited =
        netns_tests::wait_until(Duration::from_secs(5), || ping.try_exit_status().is_some());
    assert!(exited, "ping did not stop");
    let summary = ping.log().contents();
    assert!(
        summary.contains(" 0% packet loss"),
        "the ping to beta lost packets across the reloads:\n{summary}"
    );
    assert_eq!(
        beta_metric(&alpha, &ns_a, "meshd_peer_handshakes_total"),
        handshakes,
        "the tunnel to beta was renegotiated by the reload"
    );
    assert!(beta_metric(&alpha, &ns_a, "meshd_peer_received_bytes_total") > received);

    // 3. gamma removed again: its tunnel and its kernel route go, beta stays.
    std::fs::write(alpha.config_path(), &good).unwrap();
    let outcome = alpha.reload();
    assert!(
        outcome.contains("configuration reloaded: peers: removed gamma"),
        "{outcome}"
    );
    // The kernel routes follow the peer set a moment later.
    let routes = || ns_a.ip(&["-4", "route", "show", "dev", "mesh0"]);
    let settled =
        netns_tests::wait_until(Duration::from_secs(5), || !routes().contains("10.3.0.0/16"));
    assert!(
        settled && routes().contains("10.2.0.0/16"),
        "routes after removing gamma: {}",
        routes()
    );
    let metrics = alpha.metrics(&ns_a);
    assert_eq!(metrics.value("meshd_peer_up", &[("peer", "gamma")]), None);
    assert_eq!(
        metrics.value("meshd_peer_up", &[("peer", "beta")]),
        Some(1.0)
    );
    assert!(
        ns_a.ping_all(ip("10.2.0.1"), 3),
        "beta lost packets after gamma was removed"
    );
}
