//! What a node's certificate says about it: the identity the CA binds from the node's
//! allocation, and how long the certificate is valid. Shared by the commands that admit nodes
//! (`init`, `invite`, `join`) and the control plane that admits and renews them.

use ipnet::IpNet;
use mesh_config::Role;
use mesh_config::alloc::NodeAllocation;
use pki::{Approvals, NodeIdentity, NodeRole};

/// How long a node certificate is valid before the node must renew it.
pub const NODE_CERT_VALIDITY: time::Duration = time::Duration::days(90);

/// How long after its expiry the CA holder still renews a node certificate (on a renewal
/// connection only, for a certificate it issued and did not revoke, for the same keys): a
/// router left unplugged for a few months comes back under its name and prefixes.
pub const RENEWAL_GRACE: time::Duration = time::Duration::days(180);

/// What the CA binds into a node's certificate, from the node's allocation. `foreign`: a
/// router that runs no meshd, whose core stands in for it.
pub fn node_identity(
    allocation: &NodeAllocation,
    lan_prefixes: &[IpNet],
    approvals: &Approvals,
    wireguard_public_key: [u8; 32],
    foreign: bool,
) -> NodeIdentity {
    NodeIdentity {
        name: allocation.name.clone(),
        role: node_role(allocation.role),
        core: allocation.core.clone(),
        prefixes: vec![
            IpNet::V4(allocation.ipv4),
            IpNet::V6(allocation.ipv6),
            IpNet::V6(allocation.ipv6_clients),
        ],
        lan_prefixes: lan_prefixes.to_vec(),
        wireguard_key: wireguard_public_key,
        approvals: approvals.clone(),
        foreign,
    }
}

/// The certificate's name for a config role (the two crates name the same thing).
pub fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Core => NodeRole::Core,
        Role::Spoke => NodeRole::Spoke,
    }
}
