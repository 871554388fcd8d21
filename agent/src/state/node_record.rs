//! `node.json`: who this node is in the mesh, as recorded when it was created (`meshd init`) or
//! admitted (`meshd join`). The certificate carries the same facts, signed; this file is the
//! agent's quick, readable copy of them.

use ipnet::IpNet;
use mesh_config::alloc::NodeAllocation;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Format version of `node.json`.
pub const NODE_RECORD_VERSION: u32 = 1;

/// The content of `node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Name, role, index and prefixes the CA allocated.
    pub allocation: NodeAllocation,
    /// LAN prefixes the CA approved for this node to announce.
    pub lan_prefixes: Vec<IpNet>,
    /// SHA-256 fingerprint of the mesh CA certificate (hex), the mesh's identity.
    pub ca_fingerprint: String,
    /// The mesh's name (the CA's organisation).
    pub mesh_name: String,
    /// When this node was created or admitted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The node that holds the mesh CA (that admitted this one), where certificates are
    /// renewed. Absent in files written before renewal existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_holder: Option<String>,
}

impl NodeRecord {
    /// The name of the node holding the mesh CA. Files without `ca_holder` come from
    /// `meshd init`/`join` of a version that named the CA after the node that created it
    /// (`init --name`), so the mesh name is that node's name.
    pub fn ca_holder_name(&self) -> &str {
        self.ca_holder.as_deref().unwrap_or(&self.mesh_name)
    }
}
