//! Certificate authorisation of received routes. Pure.
//!
//! A member's certificate lists what it may announce: its allocated prefixes and its
//! approved LANs. The rule (docs/architecture.md, "Which routes a member may announce"):
//!
//! 1. The *owner* of a prefix is the member with the most specific authorised prefix that
//!    contains it (a spoke's /80 lies inside its core's /64: the spoke owns it).
//! 2. The *origin* of a route is the member that put it into the mesh: the iBGP neighbour
//!    itself, or the ORIGINATOR_ID a route reflector added. A reflector is believed only for
//!    what it may reflect to us: a core for its own spokes' routes, and for anything when we
//!    are one of its spokes. A route from an eBGP neighbour (or any router that is not a
//!    member) has no member origin: it comes from *outside*.
//! 3. An owned prefix is accepted only from its owner; from outside only when this node is the
//!    owner (its own LAN router telling it about its own LAN).
//! 4. A prefix inside the mesh pools that nobody owns is refused: nobody was allocated it.
//! 5. Anything else (a friend's networks behind a member's eBGP neighbour, a default route) is
//!    accepted from any member or neighbour, subject to import policy; longest-prefix match
//!    keeps traffic for an owned prefix going to its owner even if someone announces a wider
//!    prefix around it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::member::MeshMember;
use crate::bgp::guard::{ImportGuard, RouteSource};

/// The membership as the route check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    own: String,
    members: Vec<MeshMember>,
    pools: Vec<IpNet>,
}

/// Who put a route into the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin<'a> {
    Member(&'a MeshMember),
    Outside,
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The prefix belongs to `owner`; the route came from someone else.
    NotTheOwner { owner: String, origin: String },
    /// ORIGINATOR_ID names no member.
    UnknownOriginator { originator: Ipv4Addr },
    /// `via` may not pass on `originator`'s routes to this node.
    NotAReflector { via: String, originator: String },
    /// Inside the mesh pool `pool`, but no member's certificate covers it.
    Unallocated { pool: IpNet },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotTheOwner { owner, origin } => write!(
                f,
                "the prefix is authorised for {owner:?} by its certificate, but the route \
                 comes from {origin}"
            ),
            Refusal::UnknownOriginator { originator } => {
                write!(f, "its ORIGINATOR_ID {originator} is no member's router id")
            }
            Refusal::NotAReflector { via, originator } => write!(
                f,
                "{via:?} may not reflect {originator:?}'s routes to this node"
            ),
            Refusal::Unallocated { pool } => write!(
                f,
                "the prefix lies in the mesh pool {pool} but no member's certificate covers it"
            ),
        }
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Member(m) => write!(f, "member {:?}", m.name),
            Origin::Outside => f.write_str("outside the mesh"),
        }
    }
}

impl Authority {
    /// The check for node `own` given the verified `members` and the mesh `pools`.
    pub fn new(own: &str, members: Vec<MeshMember>, pools: Vec<IpNet>) -> Authority {
        Authority {
            own: own.to_owned(),
            members,
            pools: pools.iter().map(IpNet::trunc).collect(),
        }
    }

    /// The member with the most specific authorised prefix containing `prefix`.
    pub fn owner(&self, prefix: &IpNet) -> Option<&MeshMember> {
        self.members
            .iter()
            .filter_map(|m| {
                let len = m
                    .authorised()
                    .filter(|auth| auth.contains(prefix))
                    .map(IpNet::prefix_len)
                    .max()?;
                Some((len, m))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, m)| m)
    }

    /// The member whose overlay address `address` is.
    pub fn member_at(&self, address: IpAddr) -> Option<&MeshMember> {
        self.members.iter().find(|m| match address {
            IpAddr::V4(a) => m.router_id == a,
            IpAddr::V6(a) => m.address6 == Some(a),
        })
    }

    fn member_with_id(&self, id: Ipv4Addr) -> Option<&MeshMember> {
        self.members.iter().find(|m| m.router_id == id)
    }

    fn own(&self) -> Option<&MeshMember> {
        self.members.iter().find(|m| m.name == self.own)
    }

    /// Who put the route into the mesh (rule 2).
    fn origin(&self, source: &RouteSource) -> Result<Origin<'_>, Refusal> {
        let via = match self.member_at(source.neighbor) {
            Some(member) if source.internal => member,
            _ => return Ok(Origin::Outside),
        };
        let originator = match source.originator_id {
            None => return Ok(Origin::Member(via)),
            Some(id) if id == via.router_id => return Ok(Origin::Member(via)),
            Some(id) => self
                .member_with_id(id)
                .ok_or(Refusal::UnknownOriginator { originator: id })?,
        };
        let we_are_its_spoke = self.own().is_some_and(|own| own.is_spoke_of(&via.name));
        if via.is_core() && (originator.is_spoke_of(&via.name) || we_are_its_spoke) {
            Ok(Origin::Member(originator))
        } else {
            Err(Refusal::NotAReflector {
                via: via.name.clone(),
                originator: originator.name.clone(),
            })
        }
    }

    /// Whether a route to `prefix` from `source` may enter the RIB (rules 1 to 5).
    pub fn verdict(&self, prefix: &IpNet, source: &RouteSource) -> Result<(), Refusal> {
        let origin = self.origin(source)?;
        match (self.owner(prefix), origin) {
            (Some(owner), Origin::Member(from)) if from.name == owner.name => Ok(()),
            (Some(owner), Origin::Outside) if owner.name == self.own => Ok(()),
            (Some(owner), origin) => Err(Refusal::NotTheOwner {
                owner: owner.name.clone(),
                origin: origin.to_string(),
            }),
            (None, _) => match self.pools.iter().find(|pool| pool.contains(prefix)) {
                Some(pool) => Err(Refusal::Unallocated { pool: *pool }),
                None => Ok(()),
            },
        }
    }
}

impl ImportGuard for Authority {
    fn check(&self, prefix: &IpNet, source: &RouteSource) -> Result<(), String> {
        self.verdict(prefix, source).map_err(|r| r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::member::tests::{core, spoke};

    /// core1 with spoke3 (LAN 192.168.42.0/24), core2 with spoke4 (LAN 192.168.43.0/24).
    fn authority(own: &str) -> Authority {
        let identities = [
            core(1),
            core(2),
            spoke(3, 1, &["192.168.42.0/24"]),
            spoke(4, 2, &["192.168.43.0/24"]),
        ];
        let members = identities
            .iter()
            .map(|i| MeshMember::from_identity(i).unwrap())
            .collect();
        Authority::new(
            own,
            members,
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/48".parse().unwrap()],
        )
    }

    /// A session with the member whose overlay address is `10.n.0.1`.
    fn from_member(n: u8, originator: Option<u8>) -> RouteSource {
        RouteSource {
            neighbor: IpAddr::V4(Ipv4Addr::new(10, n, 0, 1)),
            internal: true,
            originator_id: originator.map(|o| Ipv4Addr::new(10, o, 0, 1)),
        }
    }

    fn external() -> RouteSource {
        RouteSource {
            neighbor: "198.51.100.200".parse().unwrap(),
            internal: false,
            originator_id: None,
        }
    }

    #[test]
    fn a_table_of_cases() {
        // (this node, prefix, source, accepted, what the refusal mentions)
        let cases: &[(&str, &str, RouteSource, bool, &str)] = &[
            // Owners announcing their own space, directly.
            ("core1", "10.2.0.0/16", from_member(2, None), true, ""),
            ("core1", "10.3.0.0/16", from_member(3, None), true, ""),
            ("core1", "192.168.42.0/24", from_member(3, None), true, ""),
            ("core1", "192.168.42.128/25", from_member(3, None), true, ""),
            ("core1", "fd00:0:0:1:3::/80", from_member(3, None), true, ""),
            ("core2", "fd00:0:0:2::/64", from_member(2, None), true, ""),
            // Reflected by the owner's core, to another core and to the core's other spoke.
            (
                "core2",
                "192.168.42.0/24",
                from_member(1, Some(3)),
                true,
                "",
            ),
            (
                "spoke4",
                "192.168.42.0/24",
                from_member(2, Some(3)),
                true,
                "",
            ),
            ("spoke4", "10.1.0.0/16", from_member(2, Some(1)), true, ""),
            // Hijacks: someone else's /16, LAN or more specific.
            (
                "core1",
                "10.3.0.0/16",
                from_member(2, None),
                false,
                "\"spoke3\"",
            ),
            (
                "core2",
                "192.168.42.0/24",
                from_member(4, None),
                false,
                "member \"spoke4\"",
            ),
            (
                "core2",
                "192.168.42.0/25",
                from_member(1, None),
                false,
                "\"spoke3\"",
            ),
            // The core announcing its spoke's /80 out of its own /64: the spoke owns it.
            (
                "core2",
                "fd00:0:0:1:3::/80",
                from_member(1, None),
                false,
                "\"spoke3\"",
            ),
            // A reflector vouching for what it may not reflect.
            (
                "core2",
                "10.4.0.0/16",
                from_member(1, Some(4)),
                false,
                "may not reflect",
            ),
            (
                "core2",
                "10.9.0.0/16",
                from_member(1, Some(9)),
                false,
                "10.9.0.1",
            ),
            // Mesh space nobody holds.
            (
                "core1",
                "10.200.0.0/16",
                from_member(2, None),
                false,
                "10.0.0.0/8",
            ),
            (
                "core1",
                "10.0.0.0/12",
                from_member(2, None),
                false,
                "no member",
            ),
            (
                "core1",
                "fd00:0:0:77::/64",
                from_member(2, None),
                false,
                "fd00::/48",
            ),
            // Outside the mesh: a friend's network behind a member, a default route.
            ("core1", "203.0.113.0/24", from_member(2, None), true, ""),
            ("core1", "0.0.0.0/0", from_member(2, None), true, ""),
            ("spoke3", "198.18.0.0/15", from_member(1, Some(4)), true, ""),
            ("core1", "203.0.113.0/24", external(), true, ""),
            // eBGP neighbours may not announce members' space, except a node's own LAN
            // router telling it about its own LAN.
            (
                "core1",
                "10.2.0.0/16",
                external(),
                false,
                "outside the mesh",
            ),
            (
                "core1",
                "192.168.42.0/24",
                external(),
                false,
                "outside the mesh",
            ),
            ("spoke3", "192.168.42.0/24", external(), true, ""),
            ("core1", "10.77.0.0/16", external(), false, "no member"),
        ];
        for (own, prefix, source, accepted, mention) in cases {
            let prefix: IpNet = prefix.parse().unwrap();
            let verdict = authority(own).verdict(&prefix, source);
            assert_eq!(
                verdict.is_ok(),
                *accepted,
                "{own} receiving {prefix} from {source:?}: {verdict:?}"
            );
            if let Err(refusal) = verdict {
                let text = refusal.to_string();
                assert!(
                    text.contains(mention),
                    "{prefix}: {text:?} lacks {mention:?}"
                );
            }
        }
    }

    #[test]
    fn an_ibgp_router_that_is_no_member_counts_as_outside() {
        let source = RouteSource {
            neighbor: "10.250.0.9".parse().unwrap(),
            internal: true,
            originator_id: None,
        };
        let refusal = authority("core1")
            .verdict(&"10.2.0.0/16".parse().unwrap(), &source)
            .unwrap_err();
        assert!(
            refusal.to_string().contains("outside the mesh"),
            "{refusal}"
        );
    }

    #[test]
    fn the_most_specific_authorisation_owns_the_prefix() {
        let a = authority("core1");
        let owner = |p: &str| a.owner(&p.parse().unwrap()).map(|m| m.name.clone());
        assert_eq!(owner("fd00:0:0:1::/64").as_deref(), Some("core1"));
        assert_eq!(owner("fd00:0:0:1:3::/80").as_deref(), Some("spoke3"));
        assert_eq!(owner("fd00:0:0:1:3:1::/96").as_deref(), Some("spoke3"));
        assert_eq!(owner("192.168.0.0/16"), None);
    }
}
