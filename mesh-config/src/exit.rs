//! `[exit]`: Internet exits. A node whose certificate approves it may *serve* as an exit
//! (announce the default routes and masquerade mesh traffic out of its uplinks); any node may
//! *use* the mesh's exits for its own and its LANs' Internet traffic, the nearest live one by
//! default, with per-destination rules that prefer named exits.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The routing table that holds the routes through the mesh's exits, away from the main
/// table so that the underlay's own default route stays in place (the "WireGuard default
/// route" trap). 0x6d65 spells "me" and is far from the tables distributions use.
pub const DEFAULT_EXIT_TABLE: u32 = 0x6d65;
/// The firewall mark meshd puts on its own underlay sockets, so that the tunnels themselves
/// never follow the default route into the mesh.
pub const DEFAULT_EXIT_FWMARK: u32 = 0x6d65;

/// `[exit]` in `meshd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitSection {
    /// Serve as an Internet exit for the families the certificate approves
    /// (`meshd invite --exit`, `meshd approve --exit`).
    #[serde(default)]
    pub serve: bool,
    /// Interfaces mesh traffic may leave through, masqueraded; empty: the interfaces of the
    /// main table's default routes, followed as they change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Whether this node sends its Internet traffic through the mesh's exits.
    #[serde(default, rename = "use")]
    pub use_exits: UseExits,
    /// Per-destination preferences, first match wins (`[[exit.route]]`).
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ExitRoute>,
    /// The routing table for routes through exits.
    #[serde(default = "default_table")]
    pub table: u32,
    /// The firewall mark of meshd's underlay sockets.
    #[serde(default = "default_fwmark")]
    pub fwmark: u32,
}

/// `[exit] use`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UseExits {
    /// Internet traffic keeps using this host's own default route.
    #[default]
    None,
    /// Internet traffic goes to the nearest live exit (by the tunnels' round-trip times),
    /// unless a `[[exit.route]]` names another.
    Nearest,
}

/// `[[exit.route]]`: traffic to `destination` leaves through the first live exit of `via`,
/// else through the nearest exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRoute {
    pub destination: IpNet,
    /// Exit node names, most preferred first.
    pub via: Vec<String>,
}

impl ExitSection {
    pub fn is_default(&self) -> bool {
        *self == ExitSection::default()
    }
}

impl Default for ExitSection {
    fn default() -> Self {
        ExitSection {
            serve: false,
            interfaces: Vec::new(),
            use_exits: UseExits::None,
            routes: Vec::new(),
            table: DEFAULT_EXIT_TABLE,
            fwmark: DEFAULT_EXIT_FWMARK,
        }
    }
}

fn default_table() -> u32 {
    DEFAULT_EXIT_TABLE
}

fn default_fwmark() -> u32 {
    DEFAULT_EXIT_FWMARK
}
