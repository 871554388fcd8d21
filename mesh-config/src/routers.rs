//! `[routers.NAME]` in `meshd.toml`: how this core serves a foreign router it stands in for
//! (`meshd router add`). A router without a section gets the defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[routers]`: one section per hosted router, by its name.
pub type RoutersSection = BTreeMap<String, RouterSettings>;

/// `[routers.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// What the core announces to the router over its BGP session.
    #[serde(default)]
    pub send: RouterRoutes,
}

/// `[routers.NAME] send`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterRoutes {
    /// Every route of the mesh (its members' prefixes and LANs), with the core as next hop.
    #[default]
    Mesh,
    /// Only 0.0.0.0/0 and ::/0 with the core as next hop, whatever the mesh holds: for a
    /// router that sends everything (mesh and Internet) to its core, as a full tunnel.
    Default,
}

impl RouterRoutes {
    /// The word in `meshd.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouterRoutes::Mesh => "mesh",
            RouterRoutes::Default => "default",
        }
    }
}

/// What `routers` says about router `name`: its section, or the defaults.
pub fn router_settings(routers: &RoutersSection, name: &str) -> RouterSettings {
    routers.get(name).cloned().unwrap_or_default()
}
