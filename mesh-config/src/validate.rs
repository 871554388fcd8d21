//! Checks of a config's meaning that its shape cannot express: names, ranges, host
//! bits, overlapping pools and duplicates. Every problem is reported, not just the
//! first, each with the key path it is about.

use std::collections::HashMap;
use std::hash::Hash;

use ipnet::{IpNet, Ipv6Net};

use crate::names::{check_ifname, check_node_name};
use crate::path::KeyPath;
use crate::schema::{
    Config, Endpoint, InterfaceSection, LogSection, MTU_RANGE, MeshSection, MetricsSection,
    NodeSection, Role, RoutersSection, RoutingSection, StaticPeer,
};

mod bgp;
mod exit;
mod paths;

pub use bgp::{MAX_MD5_KEY_LEN, MAX_PREPEND};

/// The levels a `[log] level` directive may name.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Longest IPv4 node prefix: a /30 still leaves each half two addresses.
pub const MAX_NODE_PREFIX_LEN4: u8 = 30;
/// The mesh IPv6 pool must hold many /64s, one per core.
pub const MAX_POOL6_PREFIX_LEN: u8 = 48;
/// A native IPv6 prefix replaces a core's /64 from the pool, so it has the same size.
pub const NATIVE6_PREFIX_LEN: u8 = 64;

/// One problem with a config, not yet tied to a position in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: KeyPath,
    pub message: String,
}

/// Every problem with `config`'s meaning; empty when it is valid.
pub fn validate(config: &Config) -> Vec<Issue> {
    let mut checker = Checker::default();
    let root = KeyPath::root();
    checker.node(&config.node, &root.key("node"));
    checker.interface(&config.interface, &root.key("interface"));
    checker.mesh(&config.mesh, config.node.role, &root.key("mesh"));
    checker.routing(&config.routing, &config.mesh, &root.key("routing"));
    checker.bgp(&config.bgp, config.routing.asn, &root.key("bgp"));
    checker.peers(&config.peers, &config.node.name, &root.key("peer"));
    checker.metrics(
        &config.metrics,
        config.node.listen_port,
        &root.key("metrics"),
    );
    checker.log(&config.log, &root.key("log"));
    checker.dns(&config.dns, &root.key("dns"));
    checker.paths(&config.paths, &root.key("paths"));
    checker.exit(&config.exit, &config.mesh, &root.key("exit"));
    checker.anycast(&config.routing, &root.key("routing"));
    checker.routers(&config.routers, config.node.role, &root.key("routers"));
    checker.issues
}

/// Why an ASN cannot be used, if it is reserved.
pub fn reserved_asn(asn: u32) -> Option<&'static str> {
    match asn {
        0 => Some("ASN 0 is reserved and may not be used in BGP (RFC 7607)"),
        23456 => Some("ASN 23456 is AS_TRANS, reserved for 4-byte ASN transition (RFC 6793)"),
        65535 => Some("ASN 65535 is reserved (RFC 7300)"),
        u32::MAX => Some("ASN 4294967295 is reserved (RFC 7300)"),
        _ => None,
    }
}

/// Why a log filter such as `"info,meshd::bgp=debug"` is not valid, if it is not: a
/// comma-separated list of `level` or `module::path=level`.
pub fn check_log_level(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!(
            "empty log level; expected one of {}",
            LOG_LEVELS.join(", ")
        ));
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if let Some(target) = target {
            let valid = !target.is_empty()
                && target.split("::").all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid {
                return Err(format!(
                    "{target:?} in {directive:?} is not a module path such as meshd::bgp"
                ));
            }
        }
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{level:?} is not a log level; expected one of {} (optionally per module: \
                 \"info,meshd::bgp=debug\")",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Whether two prefixes share any address (never across address families).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[derive(Default)]
struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn report(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.clone(),
            message: message.into(),
        });
    }

    fn name(&mut self, path: &KeyPath, name: &str) {
        if let Err(message) = check_node_name(name) {
            self.report(path, message);
        }
    }

    /// A prefix that is meant as a network must have no host bits set.
    fn network(&mut self, path: &KeyPath, net: IpNet) -> bool {
        if net.trunc() == net {
            return true;
        }
        self.report(
            path,
            format!(
                "\"{net}\" is not a network address (did you mean {}?)",
                net.trunc()
            ),
        );
        false
    }

    fn asn(&mut self, path: &KeyPath, asn: u32) {
        if let Some(message) = reserved_asn(asn) {
            self.report(path, message);
        }
    }

    /// Reports every element of `items` whose key equals an earlier element's. `field`
    /// is the TOML key compared inside each element (`None`: the element itself), and
    /// `what` names it in the message.
    fn unique<T, K: Eq + Hash + std::fmt::Display>(
        &mut self,
        list: &KeyPath,
        items: &[T],
        (field, what): (Option<&str>, &str),
        key: impl Fn(&T) -> &K,
    ) {
        let at = |i: usize| match field {
            Some(field) => list.index(i).key(field),
            None => list.index(i),
        };
        let mut first_seen: HashMap<&K, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let value = key(item);
            match first_seen.get(value) {
                Some(&first) => self.report(
                    &at(i),
                    format!("duplicate {what} {value} (same as {})", at(first)),
                ),
                None => {
                    first_seen.insert(value, i);
                }
            }
        }
    }

    fn endpoints(&mut self, path: &KeyPath, endpoints: &[Endpoint]) {
        self.unique(path, endpoints, (None, "endpoint"), |e| e);
    }

    fn node(&mut self, node: &NodeSection, path: &KeyPath) {
        self.name(&path.key("name"), &node.name);
        if node.listen_port == 0 {
            self.report(
                &path.key("listen_port"),
                "port 0 is not allowed; peers need a fixed port to reach this node (default 51820)",
            );
        }
        self.endpoints(&path.key("endpoints"), &node.endpoints);
        if let Some(n) = node.dataplane_workers
            && !(1..=crate::schema::MAX_DATAPLANE_WORKERS).contains(&n)
        {
            self.report(
                &path.key("dataplane_workers"),
                format!(
                    "{n} data plane workers: 1 to {} (default: one per core)",
                    crate::schema::MAX_DATAPLANE_WORKERS
                ),
            );
        }
    }

    /// `[routers.NAME]`: names a router could have, on a core (only a core stands in for
    /// foreign routers).
    fn routers(&mut self, routers: &RoutersSection, role: Role, path: &KeyPath) {
        for name in routers.keys() {
            let here = path.key(name);
            if let Err(message) = check_node_name(name) {
                self.report(&here, format!("not a router name: {message}"));
            } else if role != Role::Core {
                self.report(
                    &here,
                    "only a core stands in for foreign routers (`meshd router add`); remove the section on this spoke",
                );
            }
        }
    }

    fn interface(&mut self, interface: &InterfaceSection, path: &KeyPath) {
        if let Err(message) = check_ifname(&interface.name) {
            self.report(&path.key("name"), message);
        }
        if let Some(mtu) = interface.mtu
            && !MTU_RANGE.contains(&mtu)
        {
            self.report(
                &path.key("mtu"),
                format!(
                    "MTU {mtu} is out of range; expected {} to {} (IPv6 needs at least 1280)",
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                ),
            );
        }
        self.unique(
            &path.key("addresses"),
            &interface.addresses,
            (None, "address"),
            |a| a,
        );
    }

    fn mesh(&mut self, mesh: &MeshSection, role: Role, path: &KeyPath) {
        let pool4 = mesh.pool4;
        self.network(&path.key("pool4"), pool4.into());
        let len = mesh.node_prefix_len4;
        if len <= pool4.prefix_len() || len > MAX_NODE_PREFIX_LEN4 {
            self.report(
                &path.key("node_prefix_len4"),
                format!(
                    "{len} is out of range; node prefixes must be longer than pool4's /{} \
                     and at most /{MAX_NODE_PREFIX_LEN4}",
                    pool4.prefix_len()
                ),
            );
        }
        if let Some(pool6) = mesh.pool6
            && self.network(&path.key("pool6"), pool6.into())
            && pool6.prefix_len() > MAX_POOL6_PREFIX_LEN
        {
            self.report(
                &path.key("pool6"),
                format!(
                    "{pool6} is too small; the mesh IPv6 pool must be a /{MAX_POOL6_PREFIX_LEN} \
                     or shorter (each core gets a /64 from it)"
                ),
            );
        }
        if let Some(native6) = mesh.native6 {
            self.native6(native6, mesh.pool6, role, &path.key("native6"));
        }
    }

    fn native6(&mut self, native6: Ipv6Net, pool6: Option<Ipv6Net>, role: Role, path: &KeyPath) {
        if role != Role::Core {
            self.report(
                path,
                "only a core has a native /64; a spoke's /80 comes from its core",
            );
        }
        if !self.network(path, native6.into()) {
            return;
        }
        if native6.prefix_len() != NATIVE6_PREFIX_LEN {
            self.report(
                path,
                format!("{native6} must be a /{NATIVE6_PREFIX_LEN} (it replaces a core's /64)"),
            );
        }
        if let Some(pool6) = pool6
            && overlaps(&native6.into(), &pool6.into())
        {
            self.report(
                path,
                format!(
                    "{native6} lies inside mesh.pool6 {pool6}, where it could collide with \
                     the /64s handed to other cores; use a prefix outside the pool"
                ),
            );
        }
    }

    fn routing(&mut self, routing: &RoutingSection, mesh: &MeshSection, path: &KeyPath) {
        self.asn(&path.key("asn"), routing.asn);
        if !(1..=crate::schema::MAX_MAX_PATHS).contains(&routing.max_paths) {
            self.report(
                &path.key("max_paths"),
                format!(
                    "{} is outside 1..={}: it is how many equal-cost paths a prefix may use \
                     at once (1 turns ECMP off, default {})",
                    routing.max_paths,
                    crate::schema::MAX_MAX_PATHS,
                    crate::schema::DEFAULT_MAX_PATHS
                ),
            );
        }
        let lans = path.key("lan_prefixes");
        let pools = [
            Some(("mesh.pool4", IpNet::from(mesh.pool4))),
            mesh.pool6.map(|p| ("mesh.pool6", p.into())),
            mesh.native6.map(|p| ("mesh.native6", p.into())),
        ];
        for (i, lan) in routing.lan_prefixes.iter().enumerate() {
            let here = lans.index(i);
            if !self.network(&here, *lan) {
                continue;
            }
            for (pool_name, pool) in pools.iter().flatten() {
                if overlaps(lan, pool) {
                    self.report(
                        &here,
                        format!("{lan} overlaps {pool_name} {pool}; mesh addresses are allocated from there"),
                    );
                }
            }
            for (j, earlier) in routing.lan_prefixes[..i].iter().enumerate() {
                if overlaps(lan, earlier) {
                    self.report(&here, format!("{lan} overlaps lan_prefixes[{j}] {earlier}"));
                }
            }
        }
    }

    fn metrics(&mut self, metrics: &MetricsSection, listen_port: u16, path: &KeyPath) {
        let port = metrics.listen.port();
        if port == 0 {
            self.report(
                &path.key("listen"),
                "port 0 is not allowed; a scraper needs a fixed port (default 9474)",
            );
        } else if port == listen_port {
            self.report(
                &path.key("listen"),
                format!(
                    "port {port} is node.listen_port, where the control plane listens on TCP; \
                     choose another port (default 9474)"
                ),
            );
        }
    }

    fn log(&mut self, log: &LogSection, path: &KeyPath) {
        if let Err(message) = check_log_level(&log.level) {
            self.report(&path.key("level"), message);
        }
    }

    fn peers(&mut self, peers: &[StaticPeer], node_name: &str, path: &KeyPath) {
        self.unique(path, peers, (Some("name"), "name"), |p| &p.name);
        self.unique(path, peers, (Some("public_key"), "public key"), |p| {
            &p.public_key
        });
        // WireGuard routes by allowed prefix; the same prefix on two peers would make
        // one of them silently lose it.
        let mut owner: HashMap<IpNet, usize> = HashMap::new();
        for (i, peer) in peers.iter().enumerate() {
            let here = path.index(i);
            self.name(&here.key("name"), &peer.name);
            if peer.name == node_name {
                self.report(
                    &here.key("name"),
                    format!("peer {node_name:?} has this node's own name"),
                );
            }
            self.endpoints(&here.key("endpoints"), &peer.endpoints);
            for (j, prefix) in peer.allowed_prefixes.iter().enumerate() {
                let at = here.key("allowed_prefixes").index(j);
                if !self.network(&at, *prefix) {
                    continue;
                }
                match owner.get(prefix) {
                    Some(&other) if other != i => self.report(
                        &at,
                        format!("{prefix} is already an allowed prefix of peer[{other}]"),
                    ),
                    Some(_) => self.report(&at, format!("{prefix} is listed twice")),
                    None => {
                        owner.insert(*prefix, i);
                    }
                }
            }
            if peer.persistent_keepalive == Some(0) {
                self.report(
                    &here.key("persistent_keepalive"),
                    "0 seconds is not an interval; leave the key out to disable keepalives",
                );
            }
        }
    }
}
