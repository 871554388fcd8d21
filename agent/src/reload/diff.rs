//! What a reload of `meshd.toml` changes: the difference between the running configuration
//! and the file, sorted into what the daemon applies at run time and what needs a restart.
//! Pure: it compares two validated [`Config`]s.
//!
//! Applied at run time: `[[peer]]` (added, removed, new endpoints, allowed prefixes, key or
//! keepalive), `[routing] lan_prefixes` and `max_paths`, `[[bgp.neighbor]]`, `[routers]`,
//! `[metrics]`, `[log]`,
//! `[dns]`, `[paths]` and `[node] endpoints` (a new version of the node's membership record).
//! Fixed until a restart: the node's identity and place in the mesh (the rest of `[node]`,
//! `[mesh]`, `[routing] asn`) and the TUN device (`[interface]`): changing them means new
//! sockets, a new device, new addresses or a new certificate, i.e. what a restart does anyway. The
//! WireGuard key is not in the file; it is read from the state directory at start only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;
use mesh_config::path_settings::PathsSection;
use mesh_config::routers::RoutersSection;
use mesh_config::{BgpNeighbor, BgpSection, Config, DnsSection, Policy};

/// One setting that differs in the file but can only change with a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedChange {
    /// The key in `meshd.toml`, e.g. `node.listen_port`.
    pub key: &'static str,
    /// The running value, as shown to people.
    pub running: String,
    /// The value in the file.
    pub file: String,
}

impl fmt::Display for FixedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} changed from {} to {} in the file, but it cannot change while meshd runs: \
             restart meshd to apply it (keeping {} until then)",
            self.key, self.running, self.file, self.running
        )
    }
}

/// Entries of a named list (`[[peer]]`, `[[bgp.neighbor]]`) that were added, removed or
/// changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NamedChanges {
    /// Compares two lists whose entries are identified by `name`.
    pub fn between<T: PartialEq>(running: &[T], file: &[T], name: impl Fn(&T) -> &str) -> Self {
        let before: BTreeMap<&str, &T> = running.iter().map(|t| (name(t), t)).collect();
        let after: BTreeMap<&str, &T> = file.iter().map(|t| (name(t), t)).collect();
        let mut changes = NamedChanges::default();
        for (key, new) in &after {
            match before.get(key) {
                None => changes.added.push((*key).to_owned()),
                Some(old) if old != new => changes.changed.push((*key).to_owned()),
                Some(_) => {}
            }
        }
        changes.removed = before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .map(|key| (*key).to_owned())
            .collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `added gamma; removed beta` (empty parts left out).
    fn describe(&self) -> String {
        [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ]
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// What a reload does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The configuration to run with from now on: the file, with every [`FixedChange`] kept
    /// at its running value (so the next reload reports it again until a restart).
    pub effective: Config,
    /// Settings that differ but wait for a restart.
    pub restart_needed: Vec<FixedChange>,
    /// `[[peer]]` changes, applied to the data plane (unchanged peers keep their sessions).
    pub peers: NamedChanges,
    /// The new `[routing] lan_prefixes`, if they changed (for the routing plane).
    pub lan_prefixes: Option<Vec<IpNet>>,
    /// `[[bgp.neighbor]]` changes (for the routing plane).
    pub bgp_neighbors: NamedChanges,
    /// The new `[routers.NAME]` sections, if they changed (for the routing plane: a router
    /// whose `send` changed gets its session restarted).
    pub routers: Option<RoutersSection>,
    /// The new metrics address (`Some(None)`: metrics switched off), if it changed.
    pub metrics: Option<Option<SocketAddr>>,
    /// The new log filter, if it changed.
    pub log_level: Option<String>,
    /// The new `[dns]` settings, if they changed (for the resolver; every name is asked again).
    pub dns: Option<DnsSection>,
    /// The new `[paths]` settings, if they changed (for the data plane's path probers: every
    /// peer's paths are ranked again, a peer whose probe timers changed starts probing afresh).
    pub paths: Option<PathsSection>,
    /// The new `[node] endpoints`, if they changed (for the control plane: a new version of
    /// the node's membership record, spread to the members; no tunnel is touched).
    pub endpoints: Option<Vec<String>>,
}

impl ReloadPlan {
    /// True when the file asks for nothing that can change now.
    pub fn applies_nothing(&self) -> bool {
        self.peers.is_empty()
            && self.lan_prefixes.is_none()
            && self.bgp_neighbors.is_empty()
            && self.routers.is_none()
            && self.metrics.is_none()
            && self.log_level.is_none()
            && self.dns.is_none()
            && self.paths.is_none()
            && self.endpoints.is_none()
    }

    /// For a daemon whose routing plane does not follow reloads: moves the `[routing]
    /// lan_prefixes` and `[bgp]` changes to [`Self::restart_needed`] and keeps their running
    /// values, so that the log says what really happens.
    pub fn defer_routing(&mut self, running: &Config) {
        if let Some(lans) = self.lan_prefixes.take() {
            self.restart_needed.push(FixedChange {
                key: "routing.lan_prefixes",
                running: list(&running.routing.lan_prefixes),
                file: list(&lans),
            });
            self.effective.routing.lan_prefixes = running.routing.lan_prefixes.clone();
        }
        if !self.bgp_neighbors.is_empty() || self.effective.bgp != running.bgp {
            let changes = std::mem::take(&mut self.bgp_neighbors);
            self.restart_needed.push(FixedChange {
                key: "bgp",
                running: "the running neighbours and policies".to_owned(),
                file: if changes.is_empty() {
                    "other policies".to_owned()
                } else {
                    format!("neighbours {}", changes.describe())
                },
            });
            self.effective.bgp = running.bgp.clone();
        }
        if self.effective.routing.max_paths != running.routing.max_paths {
            self.restart_needed.push(FixedChange {
                key: "routing.max_paths",
                running: running.routing.max_paths.to_string(),
                file: self.effective.routing.max_paths.to_string(),
            });
            self.effective.routing.max_paths = running.routing.max_paths;
        }
        if let Some(routers) = self.routers.take() {
            self.restart_needed.push(FixedChange {
                key: "routers",
                running: section(&running.routers),
                file: section(&routers),
            });
            self.effective.routers = running.routers.clone();
        }
    }

    /// One line for the log: what the reload changes now.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.peers.is_empty() {
            parts.push(format!("peers: {}", self.peers.describe()));
        }
        if let Some(lans) = &self.lan_prefixes {
            let list: Vec<String> = lans.iter().map(ToString::to_string).collect();
            parts.push(format!("lan_prefixes: [{}]", list.join(", ")));
        }
        if !self.bgp_neighbors.is_empty() {
            parts.push(format!("bgp neighbours: {}", self.bgp_neighbors.describe()));
        }
        if let Some(routers) = &self.routers {
            let each: Vec<String> = routers
                .iter()
                .map(|(name, settings)| format!("{name} send={}", settings.send.as_str()))
                .collect();
            parts.push(format!("routers: [{}]", each.join(", ")));
        }
        match self.metrics {
            Some(Some(address)) => parts.push(format!("metrics on {address}")),
            Some(None) => parts.push("metrics off".to_owned()),
            None => {}
        }
        if let Some(level) = &self.log_level {
            parts.push(format!("log level {level:?}"));
        }
        if self.dns.is_some() {
            parts.push("dns settings (every endpoint name asked again)".to_owned());
        }
        if self.paths.is_some() {
            parts.push("paths (ranks and probe timers)".to_owned());
        }
        if let Some(endpoints) = &self.endpoints {
            parts.push(format!("node endpoints [{}]", endpoints.join(", ")));
        }
        if parts.is_empty() {
            "nothing to change".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// Compares the running configuration with the file's (both validated).
pub fn plan(running: &Config, file: &Config) -> ReloadPlan {
    let mut effective = file.clone();
    let mut restart_needed = Vec::new();
    let mut keep = |key: &'static str, running: String, file: String| {
        if running != file {
            restart_needed.push(FixedChange { key, running, file });
        }
    };
    keep(
        "node.name",
        quoted(&running.node.name),
        quoted(&file.node.name),
    );
    keep(
        "node.role",
        running.node.role.to_string(),
        file.node.role.to_string(),
    );
    keep(
        "node.listen_port",
        running.node.listen_port.to_string(),
        file.node.listen_port.to_string(),
    );
    // The guard's table is made at start, for the port the data plane listens on.
    keep(
        "node.handshake_guard",
        running.node.handshake_guard.to_string(),
        file.node.handshake_guard.to_string(),
    );
    // The TUN's queues and the sockets are made at start, one per worker.
    keep(
        "node.dataplane_workers",
        workers(running.node.dataplane_workers),
        workers(file.node.dataplane_workers),
    );
    keep(
        "interface.name",
        quoted(&running.interface.name),
        quoted(&file.interface.name),
    );
    keep(
        "interface.mtu",
        mtu(running.interface.mtu),
        mtu(file.interface.mtu),
    );
    keep(
        "interface.addresses",
        list(&running.interface.addresses),
        list(&file.interface.addresses),
    );
    keep("mesh", section(&running.mesh), section(&file.mesh));
    keep(
        "routing.asn",
        running.routing.asn.to_string(),
        file.routing.asn.to_string(),
    );
    // The exit's NAT, forwarding, routing table and rules are set up at start.
    keep("exit", section(&running.exit), section(&file.exit));
    keep(
        "routing.anycast_prefixes",
        list(&running.routing.anycast_prefixes),
        list(&file.routing.anycast_prefixes),
    );
    effective.exit = running.exit.clone();
    effective.routing.anycast_prefixes = running.routing.anycast_prefixes.clone();
    effective.node = mesh_config::NodeSection {
        endpoints: file.node.endpoints.clone(),
        ..running.node.clone()
    };
    effective.interface = running.interface.clone();
    effective.mesh = running.mesh.clone();
    effective.routing.asn = running.routing.asn;

    ReloadPlan {
        restart_needed,
        peers: NamedChanges::between(&running.peers, &file.peers, |p| &p.name),
        lan_prefixes: (running.routing.lan_prefixes != file.routing.lan_prefixes)
            .then(|| file.routing.lan_prefixes.clone()),
        bgp_neighbors: NamedChanges::between(
            &with_policies(&running.bgp),
            &with_policies(&file.bgp),
            |(n, _, _)| &n.name,
        ),
        routers: (running.routers != file.routers).then(|| file.routers.clone()),
        metrics: (running.metrics.address() != file.metrics.address())
            .then(|| file.metrics.address()),
        log_level: (running.log.level != file.log.level).then(|| file.log.level.clone()),
        dns: (running.dns != file.dns).then(|| file.dns.clone()),
        paths: (running.paths != file.paths).then(|| file.paths.clone()),
        endpoints: (running.node.endpoints != file.node.endpoints)
            .then(|| file.node.endpoint_strings()),
        effective,
    }
}

/// Each neighbour with the policies it uses, so that editing a named policy changes the
/// neighbours that refer to it.
fn with_policies(bgp: &BgpSection) -> Vec<(&BgpNeighbor, Vec<&Policy>, Vec<&Policy>)> {
    bgp.neighbors
        .iter()
        .map(|n| (n, bgp.resolve(&n.import), bgp.resolve(&n.export)))
        .collect()
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

fn workers(workers: Option<u16>) -> String {
    workers.map_or_else(|| "one per core".to_owned(), |n| n.to_string())
}

fn mtu(mtu: Option<u16>) -> String {
    mtu.map_or_else(|| "automatic".to_owned(), |m| m.to_string())
}

/// A whole section, as JSON (compact and unambiguous in one log line).
fn section<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[node]
name = "alpha"
role = "core"
endpoints = ["198.51.100.1:51820"]

[interface]
addresses = ["10.1.0.1/16"]

[routing]
lan_prefixes = ["192.168.42.0/24"]

[[bgp.neighbor]]
name = "mikrotik"
address = "192.168.42.1"
remote_asn = 65010
import = "from-mikrotik"

[[bgp.neighbor]]
name = "bird"
address = "192.168.42.2"
remote_asn = 65020

[bgp.policy.from-mikrotik]
[[bgp.policy.from-mikrotik.term]]
match.prefixes = ["192.168.50.0/24 le 28"]
action = "accept"

[[peer]]
name = "beta"
public_key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
endpoints = ["198.51.100.2:51820"]
allowed_prefixes = ["10.2.0.0/16"]
"#;

    const GAMMA: &str = r#"
[[peer]]
name = "gamma"
public_key = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg="
allowed_prefixes = ["10.3.0.0/16"]
"#;

    fn parse(text: &str) -> Config {
        mesh_config::parse(text, Path::new("meshd.toml")).unwrap()
    }

    /// The plan for BASE edited by replacing `from` with `to` (appending `to` when `from` is
    /// empty).
    fn plan_for(from: &str, to: &str) -> ReloadPlan {
        let edited = if from.is_empty() {
            format!("{BASE}{to}")
        } else {
            assert!(BASE.contains(from), "{from:?} is not in the base config");
            BASE.replacen(from, to, 1)
        };
        plan(&parse(BASE), &parse(&edited))
    }

    #[test]
    fn run_time_changes_are_sorted_by_what_applies_them() {
        // (what, replace, with, expected summary)
        let cases: &[(&str, &str, &str, &str)] = &[
            ("the same file", "", "", "nothing to change"),
            (
                "a comment",
                "[interface]",
                "# edited\n[interface]",
                "nothing to change",
            ),
            ("a new peer", "", GAMMA, "peers: added gamma"),
            (
                "a peer removed",
                "[[peer]]\nname = \"beta\"",
                "[[peer]]\nname = \"gamma\"",
                "peers: added gamma; removed beta",
            ),
            (
                "a new endpoint",
                "198.51.100.2:51820",
                "203.0.113.2:51820",
                "peers: changed beta",
            ),
            (
                "new allowed prefixes",
                "[\"10.2.0.0/16\"]",
                "[\"10.2.0.0/16\", \"192.168.50.0/24\"]",
                "peers: changed beta",
            ),
            (
                "a LAN prefix",
                "lan_prefixes = [\"192.168.42.0/24\"]",
                "lan_prefixes = [\"192.168.42.0/24\", \"192.168.43.0/24\"]",
                "lan_prefixes: [192.168.42.0/24, 192.168.43.0/24]",
            ),
            (
                "a BGP neighbour's AS",
                "remote_asn = 65010",
                "remote_asn = 65011",
                "bgp neighbours: changed mikrotik",
            ),
            (
                "a named policy a neighbour uses",
                "le 28",
                "le 29",
                "bgp neighbours: changed mikrotik",
            ),
            (
                "metrics moved",
                "",
                "[metrics]\nlisten = \"127.0.0.1:9100\"\n",
                "metrics on 127.0.0.1:9100",
            ),
            (
                "metrics off",
                "",
                "[metrics]\nenabled = false\n",
                "metrics off",
            ),
            (
                "the default metrics address written out",
                "",
                "[metrics]\nlisten = \"127.0.0.1:9474\"\n",
                "nothing to change",
            ),
            (
                "the log level",
                "",
                "[log]\nlevel = \"debug\"\n",
                "log level \"debug\"",
            ),
            (
                "name servers",
                "",
                "[dns]\nservers = [\"192.0.2.53\"]\n",
                "dns settings (every endpoint name asked again)",
            ),
        ];
        for (what, from, to, expected) in cases {
            let plan = plan_for(from, to);
            assert_eq!(plan.summary(), *expected, "{what}");
            assert!(
                plan.restart_needed.is_empty(),
                "{what}: {:?}",
                plan.restart_needed
            );
            assert_eq!(
                plan.applies_nothing(),
                *expected == "nothing to change",
                "{what}"
            );
        }
    }

    #[test]
    fn a_node_endpoints_change_applies_now() {
        let plan = plan_for(
            "endpoints = [\"198.51.100.1:51820\"]",
            "endpoints = [\"vpn.example.net:51820\", \"[2001:db8::1]:51820\"]",
        );
        assert!(plan.restart_needed.is_empty(), "{:?}", plan.restart_needed);
        assert_eq!(
            plan.endpoints.as_deref(),
            Some(
                &[
                    "vpn.example.net:51820".to_owned(),
                    "[2001:db8::1]:51820".to_owned()
                ][..]
            )
        );
        assert_eq!(Some(plan.effective.node.endpoint_strings()), plan.endpoints);
        assert!(!plan.applies_nothing());
        assert_eq!(
            plan.summary(),
            "node endpoints [vpn.example.net:51820, [2001:db8::1]:51820]"
        );
        assert!(plan_for("", "").endpoints.is_none());
    }

    #[test]
    fn a_routers_change_applies_now_or_waits_without_a_routing_plane() {
        let from = "[node]\nname = \"alpha\"\nrole = \"core\"\n";
        let to = format!("{from}[routers.shop]\nsend = \"default\"\n");
        let running = parse(from);
        let mut plan = plan(&running, &parse(&to));
        assert!(!plan.applies_nothing());
        assert_eq!(plan.summary(), "routers: [shop send=default]");
        plan.defer_routing(&running);
        assert!(plan.routers.is_none());
        assert_eq!(plan.restart_needed[0].key, "routers");
        assert!(plan.effective.routers.is_empty());
    }

    #[test]
    fn a_paths_change_applies_now() {
        let plan = plan_for("[interface]", "[paths]\nfailback_hold = 30\n[interface]");
        assert!(plan.restart_needed.is_empty(), "{:?}", plan.restart_needed);
        let paths = plan.paths.as_ref().expect("the [paths] change is applied");
        assert_eq!(paths, &plan.effective.paths);
        assert!(!plan.applies_nothing());
        assert_eq!(plan.summary(), "paths (ranks and probe timers)");
        assert!(plan_for("", "").paths.is_none());
    }

    #[test]
    fn an_exit_change_waits_for_a_restart() {
        let plan = plan_for("[routing]", "[exit]\nuse = \"nearest\"\n[routing]");
        let keys: Vec<&str> = plan.restart_needed.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["exit"]);
        assert_eq!(plan.effective.exit, mesh_config::ExitSection::default());
    }

    #[test]
    fn fixed_settings_are_kept_and_reported() {
        // (replace, with, key, running, file)
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "name = \"alpha\"",
                "name = \"alpha2\"",
                "node.name",
                "\"alpha\"",
                "\"alpha2\"",
            ),
            (
                "role = \"core\"",
                "role = \"spoke\"",
                "node.role",
                "core",
                "spoke",
            ),
            (
                "role = \"core\"",
                "role = \"core\"\nlisten_port = 51821",
                "node.listen_port",
                "51820",
                "51821",
            ),
            (
                "[interface]",
                "[interface]\nname = \"wg7\"",
                "interface.name",
                "\"mesh0\"",
                "\"wg7\"",
            ),
            (
                "[interface]",
                "[interface]\nmtu = 1380",
                "interface.mtu",
                "automatic",
                "1380",
            ),
            (
                "addresses = [\"10.1.0.1/16\"]",
                "addresses = [\"10.1.0.2/16\"]",
                "interface.addresses",
                "[\"10.1.0.1/16\"]",
                "[\"10.1.0.2/16\"]",
            ),
            (
                "[routing]",
                "[routing]\nasn = 65000",
                "routing.asn",
                "64512",
                "65000",
            ),
            (
                "[routing]",
                "[routing]\nanycast_prefixes = [\"203.0.113.53/32\"]",
                "routing.anycast_prefixes",
                "[]",
                "[\"203.0.113.53/32\"]",
            ),
        ];
        for (from, to, key, running, file) in cases {
            let plan = plan_for(from, to);
            assert_eq!(
                plan.restart_needed,
                [FixedChange {
                    key,
                    running: (*running).to_owned(),
                    file: (*file).to_owned(),
                }],
                "{key}"
            );
            assert_eq!(
                plan.effective,
                parse(BASE),
                "{key}: the running value is kept"
            );
            assert!(plan.applies_nothing(), "{key}");
        }
    }

    #[test]
    fn without_a_routing_plane_that_follows_routing_changes_wait_for_a_restart() {
        let running = parse(BASE);
        let file = parse(
            &BASE
                .replace("lan_prefixes = [\"192.168.42.0/24\"]", "lan_prefixes = []")
                .replace("remote_asn = 65020", "remote_asn = 65021"),
        );
        let mut plan = plan(&running, &file);
        assert_eq!(
            plan.summary(),
            "lan_prefixes: []; bgp neighbours: changed bird"
        );
        plan.defer_routing(&running);
        assert!(plan.applies_nothing(), "{}", plan.summary());
        assert_eq!(plan.effective, running);
        let keys: Vec<&str> = plan.restart_needed.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["routing.lan_prefixes", "bgp"]);
        assert_eq!(
            plan.restart_needed[1].to_string(),
            "bgp changed from the running neighbours and policies to neighbours changed bird in \
             the file, but it cannot change while meshd runs: restart meshd to apply it (keeping \
             the running neighbours and policies until then)"
        );
    }

    #[test]
    fn a_pool_change_is_reported_as_the_mesh_section() {
        let plan = plan_for("", "[mesh]\npool4 = \"10.0.0.0/9\"\n");
        assert_eq!(plan.restart_needed.len(), 1);
        let line = plan.restart_needed[0].to_string();
        assert!(
            line.starts_with("mesh changed from ") && line.contains("10.0.0.0/9"),
            "{line}"
        );
        assert!(line.contains("restart meshd to apply it"), "{line}");
    }

    #[test]
    fn run_time_changes_apply_beside_fixed_ones() {
        let edited = format!(
            "{}{GAMMA}",
            BASE.replace("role = \"core\"", "role = \"core\"\nlisten_port = 51821")
        );
        let plan = plan(&parse(BASE), &parse(&edited));
        assert_eq!(plan.peers.added, ["gamma"]);
        assert_eq!(plan.restart_needed.len(), 1);
        assert_eq!(plan.effective.node.listen_port, 51820);
        assert_eq!(
            plan.effective.peers.len(),
            2,
            "the new peer is part of what runs"
        );
        // The next reload of the same file reports the port again and nothing else.
        let again = super::plan(&plan.effective, &parse(&edited));
        assert_eq!(again.restart_needed.len(), 1);
        assert!(again.applies_nothing());
    }
}
