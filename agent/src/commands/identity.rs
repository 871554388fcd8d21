//! Helpers shared by the commands that create node identities (`init`, `invite`, `join`).

use ipnet::{IpNet, Ipv6Net};
use mesh_config::Role;
use mesh_config::alloc::NodeAllocation;
use pki::{NodeIdentity, NodeRole};
use ring::rand::{SecureRandom, SystemRandom};

/// What the CA binds into a node's certificate, from the node's allocation.
pub fn node_identity(
    allocation: &NodeAllocation,
    lan_prefixes: &[IpNet],
    wireguard_public_key: [u8; 32],
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
    }
}

/// The certificate's name for a config role (the two crates name the same thing).
pub fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Core => NodeRole::Core,
        Role::Spoke => NodeRole::Spoke,
    }
}

/// A random RFC 4193 unique local /48, with the global ID drawn from the OS's secure RNG.
pub fn random_ula48() -> Ipv6Net {
    let mut global_id = [0u8; 5];
    // ring's SystemRandom reads getrandom(2); it fails only if the kernel has no entropy
    // source at all, in which case nothing meshd does with keys could work either.
    SystemRandom::new()
        .fill(&mut global_id)
        .expect("the operating system's random number generator failed");
    mesh_config::alloc::random_ula48(global_id)
}
