//! The commented example the Debian package installs as /etc/meshd/meshd.toml
//! (packaging/meshd.toml) must stay true to the schema: as shipped it holds no setting (so
//! `meshd init` / `meshd join` may replace it), and with every setting uncommented it is a
//! valid configuration.

use std::path::{Path, PathBuf};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/meshd.toml")
}

fn example() -> String {
    let path = example_path();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// A commented-out setting: `#` directly followed by a key or a `[table]` header; prose
/// comments have a space (or nothing) after the `#`.
fn is_commented_setting(line: &str) -> bool {
    line.strip_prefix('#')
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '[')
}

/// The example with every setting uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            if is_commented_setting(line) {
                &line[1..]
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn as_shipped_it_holds_no_setting() {
    let text = example();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        assert!(
            line.is_empty() || line.starts_with('#'),
            "packaging/meshd.toml:{}: {line:?} is a live setting; the shipped file must be all \
             comments so that `meshd init` and `meshd join` can replace it",
            number + 1
        );
    }
}

#[test]
fn every_setting_uncommented_is_a_valid_config() {
    let text = uncommented(&example());
    let config = mesh_config::parse(&text, &example_path())
        .unwrap_or_else(|error| panic!("the uncommented example is refused: {error}"));
    // Each section of the example made it into the config (not dropped as a comment).
    assert_eq!(config.node.name, "alpha");
    assert_eq!(config.node.endpoints.len(), 3);
    assert_eq!(config.interface.mtu, Some(1420));
    assert!(config.mesh.native6.is_some());
    assert_eq!(config.routing.lan_prefixes.len(), 1);
    assert_eq!(config.bgp.neighbors.len(), 1);
    assert_eq!(config.bgp.neighbors[0].multihop, Some(2));
    assert_eq!(config.bgp.policies.len(), 2);
    assert_eq!(config.bgp.policies["office-in"].terms.len(), 2);
    assert!(!config.metrics.listen.ip().is_unspecified());
    assert_eq!(config.log.level, "info");
    assert_eq!(config.peers.len(), 1);
    assert_eq!(config.peers[0].persistent_keepalive, Some(25));
    assert_eq!(config.dns.servers.len(), 2);
    assert_eq!(config.paths.uplinks[0].distance, 2);
    assert!(config.paths.peers[0].preferred_endpoint.is_some());
}

#[test]
fn the_documented_defaults_are_the_real_defaults() {
    // Only [node] is required; everything the example gives as a default must match what
    // meshd uses when the key is absent.
    let text = uncommented(&example());
    let full = mesh_config::parse(&text, &example_path()).expect("checked above");
    let defaults = mesh_config::Config::new("alpha", mesh_config::Role::Core);
    assert_eq!(full.node.listen_port, defaults.node.listen_port);
    assert_eq!(full.interface.name, defaults.interface.name);
    assert_eq!(full.mesh.pool4, defaults.mesh.pool4);
    assert_eq!(full.mesh.node_prefix_len4, defaults.mesh.node_prefix_len4);
    assert_eq!(full.routing.asn, defaults.routing.asn);
    assert_eq!(full.metrics, defaults.metrics);
    assert_eq!(full.log, defaults.log);
    assert_eq!(full.dns.min_ttl, defaults.dns.min_ttl);
    assert_eq!(full.dns.max_ttl, defaults.dns.max_ttl);
    let (paths, default_paths) = (&full.paths, &defaults.paths);
    assert_eq!(paths.probe_interval_ms, default_paths.probe_interval_ms);
    assert_eq!(
        paths.idle_probe_interval_ms,
        default_paths.idle_probe_interval_ms
    );
    assert_eq!(
        paths.standby_probe_interval_ms,
        default_paths.standby_probe_interval_ms
    );
    assert_eq!(paths.probe_misses, default_paths.probe_misses);
    assert_eq!(paths.failback_hold, default_paths.failback_hold);
    let neighbor = &full.bgp.neighbors[0];
    assert_eq!(neighbor.port, Some(mesh_config::DEFAULT_BGP_PORT));
    assert_eq!(neighbor.hold_time, Some(mesh_config::DEFAULT_HOLD_TIME));
    assert_eq!(
        neighbor.connect_retry,
        Some(mesh_config::DEFAULT_CONNECT_RETRY)
    );
}
