//! A mesh member as the routing plane sees it: what its certificate says, plus the addresses
//! that follow from it. Pure.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use pki::{Approvals, NodeIdentity, NodeRole};

/// One member of the mesh (this node included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMember {
    pub name: String,
    pub role: NodeRole,
    /// A spoke's core.
    pub core: Option<String>,
    /// Its overlay IPv4 address (the first host of its IPv4 prefix): the address its BGP
    /// session uses and its router id.
    pub router_id: Ipv4Addr,
    /// Its overlay IPv6 address (the first host of its IPv6 node prefix), the next hop of the
    /// IPv6 routes it announces.
    pub address6: Option<Ipv6Addr>,
    /// Prefixes the CA allocated to it (IPv4 /16, IPv6 /64 or /80, its /96 client pool).
    pub allocated: Vec<IpNet>,
    /// LAN prefixes approved in its certificate.
    pub lans: Vec<IpNet>,
    /// What else its certificate lets it announce: default routes (as an Internet exit) and
    /// shared (anycast) prefixes.
    pub approvals: Approvals,
    /// A router that runs no meshd, behind its core (which runs its BGP session).
    pub foreign: bool,
}

/// Why a certificate cannot be used for routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("member {name:?}: its certificate allocates no IPv4 prefix, so it has no router id")]
pub struct NoIpv4Prefix {
    pub name: String,
}

impl MeshMember {
    /// The member described by a verified certificate.
    pub fn from_identity(identity: &NodeIdentity) -> Result<MeshMember, NoIpv4Prefix> {
        let v4: Option<Ipv4Net> = identity.prefixes.iter().find_map(|p| match p {
            IpNet::V4(net) => Some(net.trunc()),
            IpNet::V6(_) => None,
        });
        let Some(v4) = v4 else {
            return Err(NoIpv4Prefix {
                name: identity.name.clone(),
            });
        };
        // The node prefix is the widest IPv6 prefix; the /96 client pool lies inside it.
        let v6: Option<Ipv6Net> = identity
            .prefixes
            .iter()
            .filter_map(|p| match p {
                IpNet::V6(net) => Some(net.trunc()),
                IpNet::V4(_) => None,
            })
            .min_by_key(Ipv6Net::prefix_len);
        Ok(MeshMember {
            name: identity.name.clone(),
            role: identity.role,
            core: identity.core.clone(),
            router_id: first_host4(v4),
            address6: v6.map(first_host6),
            allocated: identity.prefixes.iter().map(IpNet::trunc).collect(),
            lans: identity.lan_prefixes.iter().map(IpNet::trunc).collect(),
            approvals: Approvals {
                anycast: identity
                    .approvals
                    .anycast
                    .iter()
                    .map(IpNet::trunc)
                    .collect(),
                ..identity.approvals.clone()
            },
            foreign: identity.foreign,
        })
    }

    /// Everything the member may announce: its allocation and its approved LANs.
    pub fn authorised(&self) -> impl Iterator<Item = &IpNet> {
        self.allocated.iter().chain(&self.lans)
    }

    /// Whether its certificate approves it as an Internet exit for `prefix`'s family.
    pub fn is_exit_for(&self, prefix: &IpNet) -> bool {
        self.approvals.exit_for(prefix)
    }

    /// Whether `prefix` lies inside one of its approved shared (anycast) prefixes.
    pub fn shares(&self, prefix: &IpNet) -> bool {
        self.approvals
            .anycast
            .iter()
            .any(|shared| shared.contains(prefix))
    }

    pub fn is_core(&self) -> bool {
        self.role == NodeRole::Core
    }

    /// A spoke of `core`.
    pub fn is_spoke_of(&self, core: &str) -> bool {
        self.role == NodeRole::Spoke && self.core.as_deref() == Some(core)
    }
}

/// The members of a certificate list, skipping (and reporting) those unusable for routing.
pub fn members_of(identities: &[NodeIdentity]) -> (Vec<MeshMember>, Vec<NoIpv4Prefix>) {
    let mut members = Vec::new();
    let mut problems = Vec::new();
    for identity in identities {
        match MeshMember::from_identity(identity) {
            Ok(member) => members.push(member),
            Err(problem) => problems.push(problem),
        }
    }
    (members, problems)
}

/// The address plan's node address: the first host of the node's prefix (`10.N.0.1`).
fn first_host4(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

fn first_host6(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).saturating_add(1))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn identity(
        name: &str,
        role: NodeRole,
        core: Option<&str>,
        prefixes: &[&str],
        lans: &[&str],
    ) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            role,
            core: core.map(Into::into),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            lan_prefixes: lans.iter().map(|p| p.parse().unwrap()).collect(),
            wireguard_key: [name.len() as u8; 32],
            approvals: Default::default(),
            foreign: false,
        }
    }

    /// The address plan's shapes: a core with a /16, /64 and /96, a spoke with a /80 in it.
    pub(crate) fn core(n: u8) -> NodeIdentity {
        identity(
            &format!("core{n}"),
            NodeRole::Core,
            None,
            &[
                &format!("10.{n}.0.0/16"),
                &format!("fd00:0:0:{n}::/64"),
                &format!("fd00:0:0:{n}:0:1::/96"),
            ],
            &[],
        )
    }

    pub(crate) fn spoke(n: u8, core: u8, lans: &[&str]) -> NodeIdentity {
        identity(
            &format!("spoke{n}"),
            NodeRole::Spoke,
            Some(&format!("core{core}")),
            &[
                &format!("10.{n}.0.0/16"),
                &format!("fd00:0:0:{core}:{n}::/80"),
                &format!("fd00:0:0:{core}:{n}:1::/96"),
            ],
            lans,
        )
    }

    #[test]
    fn addresses_follow_the_address_plan() {
        let member = MeshMember::from_identity(&spoke(5, 1, &["192.168.42.0/24"])).unwrap();
        assert_eq!(member.router_id, Ipv4Addr::new(10, 5, 0, 1));
        assert_eq!(member.address6, Some("fd00:0:0:1:5::1".parse().unwrap()));
        assert_eq!(member.authorised().count(), 4);
        assert!(member.is_spoke_of("core1") && !member.is_core());
    }

    #[test]
    fn a_certificate_without_ipv4_is_reported() {
        let odd = identity("odd", NodeRole::Core, None, &["fd00::/64"], &[]);
        let (members, problems) = members_of(&[core(1), odd]);
        assert_eq!(members.len(), 1);
        assert_eq!(problems[0].name, "odd");
        assert!(problems[0].to_string().contains("no router id"));
    }
}
