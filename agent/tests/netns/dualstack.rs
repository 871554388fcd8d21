//! A core reachable over IPv6 only (needs root): alpha has IPv4 and IPv6 on its uplink and
//! founds the mesh with an endpoint of each family; beta's uplink has no IPv4 at all. Beta
//! joins with alpha's token (whose IPv4 bootstrap endpoint it cannot reach), advertises an
//! IPv6 endpoint only, and the tunnel between them carries both overlay families.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use meshd::state::StateDir;
use netns_tests::{
    ChildGuard, Namespace, connect_veth, require_root, run_with_timeout, wait_until,
};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

/// A node's namespace and files, set up only by `meshd init` or `meshd join`.
struct Node {
    namespace: Namespace,
    dir: tempfile::TempDir,
    daemon: Option<ChildGuard>,
}

impl Node {
    fn in_namespace(namespace: Namespace) -> Node {
        Node {
            namespace,
            dir: tempfile::tempdir().expect("a temporary directory"),
            daemon: None,
        }
    }

    fn paths(&self) -> (String, String) {
        let path = |p: PathBuf| p.display().to_string();
        (
            path(self.dir.path().join("meshd.toml")),
            path(self.dir.path().join("state")),
        )
    }

    /// `meshd ARGS` inside the node's namespace; its output (and whether it succeeded).
    fn meshd(&self, rest: &[&str]) -> (bool, String) {
        let (config, state) = self.paths();
        let mut args = vec!["netns", "exec", self.namespace.name(), MESHD];
        args.extend(["--config", &config, "--state-dir", &state]);
        args.extend_from_slice(rest);
        match run_with_timeout("ip", &args, Duration::from_secs(60)) {
            Ok(out) => (true, String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(error) => (false, error.to_string()),
        }
    }

    fn start(&mut self) {
        let (config, state) = self.paths();
        let mut daemon = self.namespace.spawn(
            "meshd",
            MESHD,
            &["--config", &config, "--state-dir", &state, "run"],
            &[("RUST_LOG", "info")],
        );
        let up = wait_until(Duration::from_secs(10), || {
            daemon.try_exit_status().is_none() && daemon.log().contents().contains("meshd running")
        });
        assert!(up, "meshd did not start:\n{}", daemon.log().contents());
        self.daemon = Some(daemon);
    }

    fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log().contents())
            .unwrap_or_default()
    }

    fn overlay(&self) -> [IpAddr; 2] {
        let record = StateDir::new(self.dir.path().join("state"))
            .read_node_record()
            .expect("node.json after init/join");
        [
            IpAddr::V4(record.allocation.ipv4_address),
            IpAddr::V6(record.allocation.ipv6_address),
        ]
    }

    fn pings(&self, destination: IpAddr) -> bool {
        let destination = destination.to_string();
        self.namespace
            .exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &destination])
            .is_ok()
    }
}

#[test]
fn a_core_with_an_ipv6_only_uplink_joins_and_forwards() {
    if !require_root("a_core_with_an_ipv6_only_uplink_joins_and_forwards") {
        return;
    }
    let ns_a = Namespace::new("v6a");
    let ns_b = Namespace::new("v6b");
    connect_veth(
        &ns_a,
        "ul0",
        &["198.51.100.1/24", "2001:db8:100::1/64"],
        &ns_b,
        "ul0",
        &["2001:db8:100::2/64"],
    );
    let mut alpha = Node::in_namespace(ns_a);
    let mut beta = Node::in_namespace(ns_b);
    let (ok, out) = alpha.meshd(&[
        "init",
        "--name",
        "alpha",
        "--endpoint",
        "198.51.100.1:51820",
        "--endpoint",
        "[2001:db8:100::1]:51820",
    ]);
    assert!(ok, "init: {out}");
    alpha.start();
    let (ok, token) = alpha.meshd(&["invite", "beta", "--role", "core"]);
    assert!(ok, "invite: {token}");
    let (ok, out) = beta.meshd(&[
        "join",
        token.trim(),
        "--endpoint",
        "[2001:db8:100::2]:51820",
    ]);
    assert!(
        ok && out.contains("Joined mesh"),
        "beta cannot join over IPv6: {out}\n{}",
        alpha.log()
    );
    beta.start();
    for (from, to) in [(&beta, &alpha), (&alpha, &beta)] {
        for address in to.overlay() {
            assert!(
                wait_until(Duration::from_secs(15), || from.pings(address)),
                "no ping to {address} over the IPv6 underlay:\n{}\n{}",
                alpha.log(),
                beta.log()
            );
        }
    }
    // The tunnel runs over IPv6: beta has no IPv4 underlay at all.
    let (_, peers) = alpha.meshd(&["peers"]);
    assert!(peers.contains("2001:db8:100::2"), "alpha's peers:\n{peers}");
}
