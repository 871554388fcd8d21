//! From membership to tunnels: which members this node holds a WireGuard tunnel with, and
//! which prefixes each tunnel carries. Pure.
//!
//! - a core peers with every other core and with its own spokes;
//! - a spoke peers with its core only;
//! - a tunnel to a core carries that core's prefixes and LANs plus those of the core's
//!   spokes, so traffic between spokes of different cores goes core to core;
//! - a spoke's tunnel to its core carries every other member's prefixes: all of the mesh is
//!   behind its core;
//! - spokes may sit behind NAT: their core does not dial them (no endpoints; it learns their
//!   address from authenticated packets) and they keep the path open with keepalives.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use pki::{NodeIdentity, NodeRole};

use super::record::Member;
use crate::dataplane::PeerConfig;

/// Keepalive a spoke sends towards its core (NAT mappings commonly last 30 s or more).
pub const SPOKE_KEEPALIVE: Duration = Duration::from_secs(25);

/// Everything a member may send from and receive at.
fn claims(identity: &NodeIdentity) -> impl Iterator<Item = IpNet> + '_ {
    identity
        .prefixes
        .iter()
        .chain(&identity.lan_prefixes)
        .map(IpNet::trunc)
}

/// The tunnel peers of node `own` given `members` (which may include `own` itself).
/// `resolve` turns a `host:port` endpoint into addresses (names need the shell's resolver).
pub fn tunnel_peers<'a>(
    own: &NodeIdentity,
    members: impl Iterator<Item = &'a Member> + Clone,
    resolve: &dyn Fn(&str) -> Vec<SocketAddr>,
) -> Vec<PeerConfig> {
    let others = members.filter(|m| m.identity.name != own.name);
    let mut peers = Vec::new();
    for member in others.clone() {
        let id = &member.identity;
        let wanted = match (own.role, id.role) {
            (NodeRole::Core, NodeRole::Core) => true,
            (NodeRole::Core, NodeRole::Spoke) => id.core.as_deref() == Some(&own.name),
            (NodeRole::Spoke, NodeRole::Core) => own.core.as_deref() == Some(&id.name),
            (NodeRole::Spoke, NodeRole::Spoke) => false,
        };
        if !wanted {
            continue;
        }
        let mut allowed: Vec<IpNet> = claims(id).collect();
        match (own.role, id.role) {
            (NodeRole::Core, NodeRole::Core) => {
                for spoke in others.clone().filter(|m| {
                    m.identity.role == NodeRole::Spoke
                        && m.identity.core.as_deref() == Some(&id.name)
                }) {
                    allowed.extend(claims(&spoke.identity));
                }
            }
            (NodeRole::Spoke, NodeRole::Core) => {
                for other in others.clone().filter(|m| m.identity.name != id.name) {
                    allowed.extend(claims(&other.identity));
                }
            }
            _ => {}
        }
        allowed.sort();
        allowed.dedup();
        let dial = id.role == NodeRole::Core;
        peers.push(PeerConfig {
            name: id.name.clone(),
            public_key: id.wireguard_key,
            endpoints: if dial {
                member.endpoints.iter().flat_map(|e| resolve(e)).collect()
            } else {
                Vec::new()
            },
            allowed_ips: allowed,
            persistent_keepalive: (own.role == NodeRole::Spoke).then_some(SPOKE_KEEPALIVE),
        });
    }
    peers
}

/// Resolves an endpoint written as an IP literal (`203.0.113.1:51820`, `[2001:db8::1]:51820`)
/// without any lookup; names give nothing here.
pub fn literal_endpoint(endpoint: &str) -> Vec<SocketAddr> {
    endpoint.parse::<SocketAddr>().into_iter().collect()
}
