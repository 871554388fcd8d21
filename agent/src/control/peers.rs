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

use std::collections::{BTreeMap, BTreeSet};
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
            ecmp_ips: Vec::new(),
            persistent_keepalive: (own.role == NodeRole::Spoke).then_some(SPOKE_KEEPALIVE),
            // Cores relay for each other when a direct path fails; spokes go through their core anyway.
            relay: own.role == NodeRole::Core && id.role == NodeRole::Core,
        });
    }
    peers
}

/// The addresses a member's advertised endpoint (`host:port`, as signed in its record)
/// stands for now: itself when it is an IP literal, else its name's current DNS answer.
/// An endpoint that does not parse gives nothing (the record is another node's word).
pub fn member_addresses(endpoint: &str, answers: &crate::dns::Answers) -> Vec<SocketAddr> {
    endpoint
        .parse::<mesh_config::Endpoint>()
        .map(|e| crate::dns::endpoint_addresses(&e, answers))
        .unwrap_or_default()
}

/// The DNS names among members' advertised endpoints, per member (members with none are
/// absent): what the resolver follows, and what to ask again when a member is unreachable.
pub fn member_names<'a>(
    members: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> BTreeMap<String, BTreeSet<String>> {
    members
        .into_iter()
        .filter_map(|(name, endpoints)| {
            let parsed: Vec<mesh_config::Endpoint> =
                endpoints.iter().filter_map(|e| e.parse().ok()).collect();
            let names: BTreeSet<String> = crate::dns::names(&parsed).collect();
            (!names.is_empty()).then(|| (name.to_owned(), names))
        })
        .collect()
}

#[cfg(test)]
mod member_endpoint_tests {
    use super::*;

    #[test]
    fn member_endpoints_use_dns_answers_and_literals_skip_dns() {
        let mut answers = crate::dns::Answers::new();
        assert_eq!(
            member_addresses("203.0.113.7:51820", &answers),
            ["203.0.113.7:51820".parse::<SocketAddr>().unwrap()]
        );
        assert!(member_addresses("vpn.example.net:51820", &answers).is_empty());
        assert!(member_addresses("not an endpoint", &answers).is_empty());
        answers.insert(
            "vpn.example.net".into(),
            vec!["2001:db8::7".parse().unwrap()],
        );
        assert_eq!(
            member_addresses("vpn.example.net:51820", &answers),
            ["[2001:db8::7]:51820".parse::<SocketAddr>().unwrap()]
        );
        let a = vec![
            "vpn.example.net:51820".to_owned(),
            "[2001:db8::1]:51820".to_owned(),
        ];
        let b = vec!["198.51.100.3:51820".to_owned()];
        let names = member_names([("a", a.as_slice()), ("b", b.as_slice())]);
        assert_eq!(names.len(), 1);
        assert_eq!(names["a"].iter().collect::<Vec<_>>(), ["vpn.example.net"]);
    }
}
