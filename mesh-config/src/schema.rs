//! The `meshd.toml` schema (see "Module contracts" in docs/architecture.md). These types
//! only describe the file's shape; [`crate::validate`] checks the meaning and
//! [`crate::load`] turns errors into messages with file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use crate::community::{
    Community, CommunityError, CommunityPattern, LargeCommunity, LargeCommunityPattern,
};
pub use crate::dns::{DnsSection, DnsServer, DnsServerError};
pub use crate::endpoint::{Endpoint, EndpointError, Host};
pub use crate::exit::{ExitRoute, ExitSection, UseExits};
pub use crate::key::{KeyError, WireGuardKey};
pub use crate::path_settings::{
    LocalUplink, PathTimers, PathsSection, PeerPaths, Uplink, UplinkDistance, path_preference,
};
pub use crate::policy::{
    FilterError, Match, Policy, PolicyAction, PolicySpec, PrefixFilter, Set, Term, TermAction,
};
pub use crate::routers::{RouterRoutes, RouterSettings, RoutersSection};

/// WireGuard and the control plane share this port unless configured otherwise.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_INTERFACE_NAME: &str = "mesh0";
/// First ASN of the 16-bit private range (RFC 6996).
pub const DEFAULT_ASN: u32 = 64512;
/// `[routing] max_paths` when not set: up to 8 equal-cost paths per prefix.
pub const DEFAULT_MAX_PATHS: u32 = 8;
/// The largest `[routing] max_paths`: more equal announcers than this share no more load.
pub const MAX_MAX_PATHS: u32 = 64;
pub const DEFAULT_NODE_PREFIX_LEN4: u8 = 16;
/// Where the Prometheus metrics are served unless configured otherwise: loopback only, port
/// 9474 (unassigned next to the range node exporters use; see docs/operations.md).
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9474);
/// The log filter unless configured otherwise (`RUST_LOG` overrides it).
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Smallest MTU an IPv6 link may have (RFC 8200) and the largest common jumbo frame.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;
/// BGP's TCP port (RFC 4271).
pub const DEFAULT_BGP_PORT: u16 = 179;
/// RFC 4271 §10's suggested hold time and ConnectRetry time, in seconds.
pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_CONNECT_RETRY: u16 = 30;

/// The whole `meshd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub interface: InterfaceSection,
    #[serde(default)]
    pub mesh: MeshSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default, skip_serializing_if = "BgpSection::is_empty")]
    pub bgp: BgpSection,
    #[serde(default, skip_serializing_if = "MetricsSection::is_default")]
    pub metrics: MetricsSection,
    #[serde(default, skip_serializing_if = "LogSection::is_default")]
    pub log: LogSection,
    #[serde(default, skip_serializing_if = "DnsSection::is_default")]
    pub dns: DnsSection,
    #[serde(default, skip_serializing_if = "PathsSection::is_default")]
    pub paths: PathsSection,
    #[serde(default, skip_serializing_if = "ExitSection::is_default")]
    pub exit: ExitSection,
    /// How this core serves the foreign routers it stands in for (`[routers.NAME]`).
    #[serde(default, skip_serializing_if = "RoutersSection::is_empty")]
    pub routers: RoutersSection,
    /// Static WireGuard peers (`[[peer]]` in TOML).
    #[serde(default, rename = "peer", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<StaticPeer>,
}

/// The node's place in the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Has a public endpoint; full mesh with every other core.
    Core,
    /// Connects to one core only and routes its LANs behind it.
    Spoke,
}

/// `[node]`: who this node is and where it can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    pub role: Role,
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// In order of preference: peers use the first one while it works (see `[paths]`).
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The kernel-side per-source limit on handshake initiations to `listen_port` (an
    /// nftables table of meshd's own); off for an operator who manages the firewall alone.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub handshake_guard: bool,
    /// Data plane worker threads, each with its own TUN queue and UDP socket per family
    /// (1..=64). `None`: one per core (at most [`DEFAULT_MAX_DATAPLANE_WORKERS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_workers: Option<u16>,
}

/// Most data plane workers `[node] dataplane_workers` accepts (a TUN device has at most
/// 256 queues; beyond the cores more workers only cost memory).
pub const MAX_DATAPLANE_WORKERS: u16 = 64;
/// The default worker count is the number of cores, but no more than this.
pub const DEFAULT_MAX_DATAPLANE_WORKERS: usize = 16;

impl NodeSection {
    /// How many data plane workers to run: the configured number, else one per core the
    /// process may use (`cores`, e.g. from `std::thread::available_parallelism`), at most
    /// [`DEFAULT_MAX_DATAPLANE_WORKERS`].
    pub fn dataplane_workers_or(&self, cores: usize) -> usize {
        match self.dataplane_workers {
            Some(n) => usize::from(n.clamp(1, MAX_DATAPLANE_WORKERS)),
            None => cores.clamp(1, DEFAULT_MAX_DATAPLANE_WORKERS),
        }
    }

    /// `endpoints` as the strings the node advertises (in its membership record and status),
    /// in the configured order.
    pub fn endpoint_strings(&self) -> Vec<String> {
        self.endpoints.iter().map(ToString::to_string).collect()
    }
}

/// `[interface]`: the TUN device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    #[serde(default = "default_interface_name")]
    pub name: String,
    /// `None`: computed from the underlay MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Overrides the addresses derived from the node's allocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
}

/// `[mesh]`: the address pools shared by the whole mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    #[serde(default = "default_pool4")]
    pub pool4: Ipv4Net,
    #[serde(default = "default_node_prefix_len4")]
    pub node_prefix_len4: u8,
    /// The mesh /48 (or shorter); `meshd init` writes a random ULA here unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<Ipv6Net>,
    /// This core's native /64, used instead of one carved from `pool6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native6: Option<Ipv6Net>,
}

/// `[routing]`: what this node announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    #[serde(default = "default_asn")]
    pub asn: u32,
    #[serde(default)]
    pub lan_prefixes: Vec<IpNet>,
    /// Shared (anycast) prefixes this node announces along with others; each must be
    /// approved in its certificate (`meshd invite --anycast`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anycast_prefixes: Vec<IpNet>,
    /// How many equal-cost paths one prefix may use at once (ECMP), the best included: a
    /// prefix announced by several members at the same cost (a shared prefix) spreads its
    /// flows over up to this many of them. 1 turns ECMP off (the best path alone).
    #[serde(
        default = "default_max_paths",
        skip_serializing_if = "is_default_max_paths"
    )]
    pub max_paths: u32,
}

/// `[bgp]`: external BGP neighbours and the policies they use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    /// `[[bgp.neighbor]]` in TOML.
    #[serde(default, rename = "neighbor", skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<BgpNeighbor>,
    /// `[bgp.policy.NAME]` in TOML: policies neighbours refer to by name.
    #[serde(default, rename = "policy", skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Policy>,
}

/// An address family a BGP session carries (unicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BgpFamily {
    Ipv4,
    Ipv6,
}

impl fmt::Display for BgpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BgpFamily::Ipv4 => "ipv4",
            BgpFamily::Ipv6 => "ipv6",
        })
    }
}

/// One `[[bgp.neighbor]]`: a router outside the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpNeighbor {
    pub name: String,
    pub address: IpAddr,
    pub remote_asn: u32,
    /// Source address of the connections meshd opens; default: chosen by the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<IpAddr>,
    /// The neighbour's TCP port; default 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Wait for the neighbour to connect instead of connecting to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// Seconds; 0 (no keepalives) or at least 3 (RFC 4271 §4.2); default 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<u16>,
    /// Seconds between connection attempts; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_retry: Option<u16>,
    /// Address families to negotiate; default both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<BgpFamily>>,
    /// TCP-MD5 (RFC 2385) key in a file of its own (mode 0600), preferred over `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// TCP-MD5 (RFC 2385) key written in the config itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// eBGP over more than one hop: the TTL of outgoing packets. Without it an external
    /// neighbour must be directly connected (TTL 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multihop: Option<u8>,
    /// What we accept from the neighbour; rejects everything when omitted.
    #[serde(default)]
    pub import: PolicySpec,
    /// What we announce to the neighbour; nothing when omitted.
    #[serde(default)]
    pub export: PolicySpec,
}

impl BgpNeighbor {
    /// A neighbour with every optional key left out: nothing imported or exported.
    pub fn new(name: impl Into<String>, address: IpAddr, remote_asn: u32) -> BgpNeighbor {
        BgpNeighbor {
            name: name.into(),
            address,
            remote_asn,
            local_address: None,
            port: None,
            passive: false,
            hold_time: None,
            connect_retry: None,
            families: None,
            password_file: None,
            password: None,
            multihop: None,
            import: PolicySpec::default(),
            export: PolicySpec::default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_BGP_PORT)
    }

    pub fn hold_time(&self) -> u16 {
        self.hold_time.unwrap_or(DEFAULT_HOLD_TIME)
    }

    pub fn connect_retry(&self) -> u16 {
        self.connect_retry.unwrap_or(DEFAULT_CONNECT_RETRY)
    }

    pub fn families(&self) -> Vec<BgpFamily> {
        self.families
            .clone()
            .unwrap_or_else(|| vec![BgpFamily::Ipv4, BgpFamily::Ipv6])
    }
}

impl BgpSection {
    pub fn is_empty(&self) -> bool {
        self.neighbors.is_empty() && self.policies.is_empty()
    }

    /// The policies `spec` stands for, in the order they apply; names that are not defined
    /// are left out (validation reports them).
    pub fn resolve<'a>(&'a self, spec: &'a PolicySpec) -> Vec<&'a Policy> {
        match spec {
            PolicySpec::Inline(policy) => vec![policy],
            PolicySpec::Named(names) => names.iter().filter_map(|n| self.policies.get(n)).collect(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (`GET /metrics`).
///
/// On by default and bound to loopback: like a router's SNMP agent on its management address,
/// it costs nothing until scraped and shows nothing to the network (peer names and traffic
/// volumes are not for everyone). Put a non-loopback address here only on a trusted network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

/// `[log]`: what the daemon logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`), optionally followed by
    /// per-module levels: `"info,meshd::bgp=debug"`. `RUST_LOG`, when set, takes precedence.
    #[serde(default = "default_log_level")]
    pub level: String,
}

/// One `[[peer]]`: a WireGuard peer configured by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPeer {
    pub name: String,
    pub public_key: WireGuardKey,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub allowed_prefixes: Vec<IpNet>,
    /// Seconds between keepalives; `None` disables them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
}

fn default_listen_port() -> u16 {
    DEFAULT_LISTEN_PORT
}

fn default_interface_name() -> String {
    DEFAULT_INTERFACE_NAME.to_owned()
}

fn default_pool4() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("8 is a valid IPv4 prefix length")
}

fn default_node_prefix_len4() -> u8 {
    DEFAULT_NODE_PREFIX_LEN4
}

fn default_asn() -> u32 {
    DEFAULT_ASN
}

fn default_max_paths() -> u32 {
    DEFAULT_MAX_PATHS
}

fn is_default_max_paths(max_paths: &u32) -> bool {
    *max_paths == DEFAULT_MAX_PATHS
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_true() -> bool {
    true
}

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN
}

fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.to_owned()
}

impl Config {
    /// A config with every default filled in: what `meshd init` starts from.
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Config {
            node: NodeSection::new(name, role),
            interface: InterfaceSection::default(),
            mesh: MeshSection::default(),
            routing: RoutingSection::default(),
            bgp: BgpSection::default(),
            metrics: MetricsSection::default(),
            log: LogSection::default(),
            dns: DnsSection::default(),
            paths: PathsSection::default(),
            exit: ExitSection::default(),
            routers: RoutersSection::default(),
            peers: Vec::new(),
        }
    }

    /// The config as TOML text that [`crate::parse`] reads back to an equal `Config`.
    pub fn to_toml_string(&self) -> String {
        // Every field is a string, integer, table or array of those, and optional
        // fields are skipped when empty, so serialisation cannot fail.
        toml::to_string(self).expect("Config always serialises to TOML")
    }
}

impl NodeSection {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        NodeSection {
            name: name.into(),
            role,
            listen_port: DEFAULT_LISTEN_PORT,
            endpoints: Vec::new(),
            handshake_guard: true,
            dataplane_workers: None,
        }
    }
}

impl Default for InterfaceSection {
    fn default() -> Self {
        InterfaceSection {
            name: default_interface_name(),
            mtu: None,
            addresses: Vec::new(),
        }
    }
}

impl Default for MeshSection {
    fn default() -> Self {
        MeshSection {
            pool4: default_pool4(),
            node_prefix_len4: DEFAULT_NODE_PREFIX_LEN4,
            pool6: None,
            native6: None,
        }
    }
}

impl Default for RoutingSection {
    fn default() -> Self {
        RoutingSection {
            asn: DEFAULT_ASN,
            lan_prefixes: Vec::new(),
            anycast_prefixes: Vec::new(),
            max_paths: DEFAULT_MAX_PATHS,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: DEFAULT_METRICS_LISTEN,
        }
    }
}

impl MetricsSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The address to serve on, or `None` when metrics are off.
    pub fn address(&self) -> Option<SocketAddr> {
        self.enabled.then_some(self.listen)
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_log_level(),
        }
    }
}

impl LogSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Spoke => "spoke",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is neither `core` nor `spoke`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role; expected \"core\" or \"spoke\"")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, RoleError> {
        match s {
            "core" => Ok(Role::Core),
            "spoke" => Ok(Role::Spoke),
            _ => Err(RoleError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from docs/architecture.md, shared with the integration tests.
    const EXAMPLE: &str = include_str!("../tests/data/meshd.toml");

    #[test]
    fn example_from_architecture_doc_deserialises() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(config.node.name, "alpha");
        assert_eq!(config.node.role, Role::Core);
        assert_eq!(config.node.endpoints.len(), 3);
        let import = config.bgp.resolve(&config.bgp.neighbors[0].import);
        assert_eq!(import[0].prefixes[0].le, Some(28));
        assert_eq!(config.peers[0].public_key, WireGuardKey([7; 32]));
        assert_eq!(config.peers[0].persistent_keepalive, Some(25));
        assert_eq!(config.interface.mtu, None);
    }

    #[test]
    fn dataplane_workers_default_to_the_cores() {
        let node: Config =
            toml::from_str("[node]\nname = \"a\"\nrole = \"core\"\n").expect("parses");
        assert_eq!(node.node.dataplane_workers, None);
        assert!(!node.to_toml_string().contains("dataplane_workers"));
        assert_eq!(node.node.dataplane_workers_or(2), 2);
        assert_eq!(node.node.dataplane_workers_or(0), 1);
        assert_eq!(
            node.node.dataplane_workers_or(128),
            DEFAULT_MAX_DATAPLANE_WORKERS
        );
        let one: Config =
            toml::from_str("[node]\nname = \"a\"\nrole = \"core\"\ndataplane_workers = 1\n")
                .expect("parses");
        assert_eq!(one.node.dataplane_workers_or(8), 1);
        assert!(one.to_toml_string().contains("dataplane_workers = 1"));
    }

    #[test]
    fn the_handshake_guard_is_on_unless_turned_off() {
        let on: Config = toml::from_str("[node]\nname = \"a\"\nrole = \"core\"\n").unwrap();
        assert!(on.node.handshake_guard);
        // The default is not written back.
        assert!(!on.to_toml_string().contains("handshake_guard"));
        let off: Config =
            toml::from_str("[node]\nname = \"a\"\nrole = \"core\"\nhandshake_guard = false\n")
                .unwrap();
        assert!(!off.node.handshake_guard);
        assert_eq!(
            toml::from_str::<Config>(&off.to_toml_string()).unwrap(),
            off
        );
    }

    #[test]
    fn to_toml_string_round_trips() {
        let config: Config = toml::from_str(EXAMPLE).unwrap();
        let text = config.to_toml_string();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), config);

        let minimal = Config::new("alpha", Role::Spoke);
        let text = minimal.to_toml_string();
        assert!(!text.contains("peer"), "{text}");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), minimal);
    }

    #[test]
    fn defaults_fill_in_missing_sections() {
        let config: Config = toml::from_str("[node]\nname = \"a\"\nrole = \"spoke\"\n").unwrap();
        assert_eq!(config, Config::new("a", Role::Spoke));
        assert_eq!(config.node.listen_port, 51820);
        assert_eq!(config.interface.name, "mesh0");
        assert_eq!(config.mesh.pool4.to_string(), "10.0.0.0/8");
        assert_eq!(config.routing.asn, 64512);
        assert_eq!(
            config.metrics.address(),
            Some("127.0.0.1:9474".parse().unwrap())
        );
        assert_eq!(config.log.level, "info");
    }

    #[test]
    fn metrics_and_log_sections_round_trip() {
        let text = "[node]\nname = \"a\"\nrole = \"core\"\n\
                    [metrics]\nenabled = false\nlisten = \"[::1]:9100\"\n\
                    [log]\nlevel = \"info,meshd::bgp=debug\"\n";
        let config: Config = toml::from_str(text).unwrap();
        assert_eq!(config.metrics.address(), None);
        assert_eq!(config.metrics.listen, "[::1]:9100".parse().unwrap());
        assert_eq!(config.log.level, "info,meshd::bgp=debug");
        let again: Config = toml::from_str(&config.to_toml_string()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn role_strings() {
        assert_eq!("core".parse::<Role>().unwrap(), Role::Core);
        assert_eq!(Role::Spoke.to_string(), "spoke");
        assert!("Core".parse::<Role>().is_err());
    }
}
