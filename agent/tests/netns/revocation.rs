//! Revocation without races, in network namespaces (needs root): three cores on one
//! documentation-range underlay, admitted with real tokens; alpha holds the CA.
//!
//! - With beta stopped, `meshd revoke gamma` on alpha: within a couple of seconds alpha has no
//!   control connection to gamma (checked with `ss`), no BGP session and no tunnel.
//! - gamma keeps running and keeps being refused: it backs off exponentially and says so once
//!   per attempt, a handful of lines in ten seconds (170 warnings in 27 s were measured with
//!   the fixed redial).
//! - beta starts again with the membership it stored before the revocation: it asks the
//!   cores before bringing up any tunnel, so gamma's tunnel never appears on it, not even for
//!   a moment, and its connection to gamma is closed once alpha's list arrives.

#[path = "member_node.rs"]
mod member_node;

use std::time::{Duration, Instant};

use member_node::{Node, PORT, endpoint, invite};
use netns_tests::{Namespace, require_root, wait_until};

/// Bound for the mesh to converge on one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for the iBGP sessions to come up.
const BGP_TIMEOUT: Duration = Duration::from_secs(20);
/// A revocation must have closed everything within this (the CA holder reads its new list
/// within half a second).
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long gamma's refused redials are counted.
const REFUSED_WINDOW: Duration = Duration::from_secs(10);

/// Whether `node` has an established TCP connection with the control port of the node at
/// `198.51.100.<host>`, either direction.
fn control_connection(node: &Node, host: u8) -> bool {
    let sockets = node
        .namespace
        .exec_ok("ss", &["-Htn", "state", "established"]);
    let remote = format!("198.51.100.{host}:");
    let port = format!(":{PORT}");
    sockets.lines().any(|line| {
        // The listener is `[::]`: IPv4 peers show as `[::ffff:198.51.100.3]:port`.
        let line = line.replace("[::ffff:", "").replace(']', "");
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Recv-Q Send-Q Local Peer (no State column with a state filter)
        let (Some(local), Some(peer)) = (fields.get(2), fields.get(3)) else {
            return false;
        };
        peer.starts_with(&remote) && (peer.ends_with(&port) || local.ends_with(&port))
    })
}

/// The tunnel peers `meshd peers --json` lists on `node`.
fn tunnel_names(node: &Node) -> Vec<String> {
    let json = node.meshd(&["peers", "--json"]);
    let report: meshd::api::report::PeersReport =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}: {json}", node.name));
    report.peers.into_iter().map(|p| p.name).collect()
}

/// Warnings and errors in `log` (one per line).
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

#[test]
fn a_revocation_closes_everything_at_once_and_a_restarted_node_never_opens_the_revoked_tunnel() {
    if !require_root(
        "a_revocation_closes_everything_at_once_and_a_restarted_node_never_opens_the_revoked_tunnel",
    ) {
        return;
    }
    let isp = Namespace::new("rv-isp");
    isp.ip(&["link", "add", "br0", "type", "bridge"]);
    isp.ip(&["link", "set", "br0", "up"]);
    let mut alpha = Node::new("rv-alpha", &isp, 1);
    let mut beta = Node::new("rv-beta", &isp, 2);
    let mut gamma = Node::new("rv-gamma", &isp, 3);

    alpha.meshd(&["init", "--name", "alpha", "--endpoint", &endpoint(1)]);
    alpha.start();
    for (node, name, host) in [(&mut beta, "beta", 2), (&mut gamma, "gamma", 3)] {
        let token = invite(&alpha, &[name, "--role", "core"]);
        let out = node.meshd(&["join", &token, "--endpoint", &endpoint(host)]);
        assert!(out.contains("Joined mesh"), "{out}");
        node.start();
    }
    let nodes = [&alpha, &beta, &gamma];
    for from in nodes {
        for to in nodes.iter().filter(|n| n.name != from.name) {
            let [address, _] = to.overlay();
            let ok = wait_until(PING_TIMEOUT, || from.pings(address));
            assert!(ok, "{} cannot ping {} at {address}", from.name, to.name);
        }
    }
    for (node, expected) in [
        (&alpha, ["beta", "gamma"]),
        (&beta, ["alpha", "gamma"]),
        (&gamma, ["alpha", "beta"]),
    ] {
        let up = wait_until(BGP_TIMEOUT, || node.established() == expected);
        assert!(up, "{}: BGP sessions {:?}", node.name, node.established());
    }
    assert!(
        control_connection(&alpha, 3),
        "alpha-gamma control connection"
    );

    // beta misses the revocation.
    beta.stop();
    let out = alpha.meshd(&["revoke", "gamma"]);
    assert!(out.contains("Revoked gamma"), "{out}");
    let revoked_at = Instant::now();
    let closed = wait_until(REVOKE_TIMEOUT, || {
        !control_connection(&alpha, 3)
            && !tunnel_names(&alpha).contains(&"gamma".to_owned())
            && !alpha.established().contains(&"gamma".to_owned())
    });
    assert!(
        closed,
        "{:?} after the revocation alpha still has gamma: control connection {}, tunnels {:?}, \
         BGP {:?}\n{}",
        revoked_at.elapsed(),
        control_connection(&alpha, 3),
        tunnel_names(&alpha),
        alpha.established(),
        alpha.log()
    );
    eprintln!(
        "revocation: alpha closed gamma's control connection, BGP session and tunnel within {:?}",
        revoked_at.elapsed()
    );
    let [gamma_v4, _] = gamma.overlay();
    assert!(!alpha.pings(gamma_v4), "alpha still reaches gamma");

    // gamma, refused, backs off.
    let before = warnings(&gamma.log()).len();
    std::thread::sleep(REFUSED_WINDOW);
    let log = gamma.log();
    let refused: Vec<&str> = warnings(&log).into_iter().skip(before).collect();
    eprintln!(
        "revocation: gamma logged {} warnings in {REFUSED_WINDOW:?} while refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(
        refused.len() <= 8,
        "gamma logged {} warnings in {REFUSED_WINDOW:?} while refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(
        refused.iter().any(|line| line.contains("next attempt in")),
        "gamma does not say when it tries again:\n{log}"
    );
    assert!(!control_connection(&alpha, 3));

    // beta starts with its stale membership (gamma in it) while gamma still runs.
    beta.start();
    let [alpha_v4, _] = alpha.overlay();
    assert!(
        wait_until(PING_TIMEOUT, || beta.pings(alpha_v4)),
        "beta cannot reach alpha after its restart:\n{}",
        beta.log()
    );
    assert!(
        wait_until(REVOKE_TIMEOUT, || !control_connection(&beta, 3)),
        "beta keeps a control connection to the revoked gamma:\n{}",
        beta.log()
    );
    let log = beta.log();
    // Tunnels from membership: none (the start), then alpha alone; never alpha and gamma.
    let updates: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("tunnels updated from membership"))
        .collect();
    assert!(
        updates.iter().all(|line| !line.contains("members=2")),
        "beta brought up the revoked gamma's tunnel:\n{log}"
    );
    assert!(
        updates.iter().any(|line| line.contains("members=1")),
        "beta did not bring up alpha's tunnel:\n{log}"
    );
    let checked = log
        .lines()
        .find(|line| line.contains("revocation list checked"))
        .unwrap_or_else(|| panic!("beta did not check its revocation list:\n{log}"));
    eprintln!("revocation: beta at start: {checked}");
    assert!(!tunnel_names(&beta).contains(&"gamma".to_owned()));
    assert!(!beta.pings(gamma_v4), "beta reaches the revoked gamma");
    // beta's iBGP session with alpha comes back on its own schedule (connect retry 2 s).
    assert!(
        wait_until(BGP_TIMEOUT, || beta.established() == ["alpha"]),
        "beta's BGP sessions after its restart: {:?}",
        beta.established()
    );
}
