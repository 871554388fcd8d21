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
//! 3. A member's own route (empty AS path: originated inside the mesh) is accepted only for
//!    prefixes it owns. A LAN missing from its certificate is refused, whatever its
//!    configuration says.
//! 4. A route that entered the mesh from outside (an AS path naming another AS: a member
//!    re-announcing what its eBGP neighbour, a friend's router, told it; or this node's own
//!    eBGP neighbour) may not carry a prefix someone owns, unless the owner is the member it
//!    came through (its own LAN router speaking BGP), and may not carry unallocated space of
//!    the mesh pools. Anything else, such as a friend's networks or a default route, is
//!    accepted (import policy on the eBGP session decides what enters); longest-prefix match
//!    keeps traffic for an owned prefix going to its owner even under a wider route.
//!
//! 5. A default route (0.0.0.0/0, ::/0) from a member is accepted only if its certificate
//!    approves it as an Internet exit for that family (`meshd invite --exit`), whether it
//!    originated the route or passes on its eBGP neighbour's; otherwise any member could pull
//!    the mesh's Internet traffic to itself. This node's own eBGP neighbours are the
//!    operator's choice (import policy).
//! 6. A shared (anycast) prefix, approved for several members alike (`meshd invite
//!    --anycast`), may come from any of them, and from nobody else.
//! 7. A route from a member that covers the underlay address of a tunnel (a peer's endpoint)
//!    is refused, default routes aside (they go into their own table, behind the fwmark
//!    rules): in the kernel it would send that tunnel's own packets into the mesh, a loop
//!    that kills the tunnel. `meshd invite --route` refuses such LANs already; this catches
//!    what a member re-announces from its eBGP neighbours, and endpoints that change.
//!
//! What this cannot stop: a member that invents an AS path can announce space outside the
//! mesh that nobody owns. Certificates say what is the member's, not what belongs to the
//! Internet; members are admitted by invitation, and the refusal log names the culprit.

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
    /// The addresses the tunnels run to (peers' endpoints), with the peer's name.
    underlay: Vec<(IpAddr, String)>,
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
    /// `member` originated a prefix that its certificate does not authorise.
    NotInCertificate { member: String },
    /// Inside the mesh pool `pool`, but no member's certificate covers it.
    Unallocated { pool: IpNet },
    /// A default route from `member`, whose certificate does not make it an Internet exit for
    /// `family`.
    NotAnExit {
        member: String,
        family: &'static str,
    },
    /// A shared prefix approved for `holders`; the route came from someone else.
    NotShared {
        holders: Vec<String>,
        origin: String,
    },
    /// The prefix covers `address`, where the tunnel to `peer` runs.
    CoversUnderlay { address: IpAddr, peer: String },
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
            Refusal::NotInCertificate { member } => write!(
                f,
                "{member:?} originated it, but its certificate does not authorise the prefix"
            ),
            Refusal::Unallocated { pool } => write!(
                f,
                "the prefix lies in the mesh pool {pool} but no member's certificate covers it"
            ),
            Refusal::NotAnExit { member, family } => write!(
                f,
                "{member:?} is not an approved Internet exit for {family}: its certificate \
                 does not allow it a default route (the CA holder approves exits with \
                 `meshd invite --exit`)"
            ),
            Refusal::NotShared { holders, origin } => write!(
                f,
                "the prefix is shared by {holders:?} by their certificates, but the route comes \
                 from {origin}"
            ),
            Refusal::CoversUnderlay { address, peer } => write!(
                f,
                "it covers {address}, the underlay endpoint of the tunnel to {peer:?}: routed \
                 into the mesh, the tunnel's own packets would go into the tunnels"
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
            underlay: Vec::new(),
        }
    }

    /// The same, knowing where the tunnels run (rule 7): each peer endpoint's address and
    /// the peer's name.
    pub fn with_underlay(mut self, mut underlay: Vec<(IpAddr, String)>) -> Authority {
        underlay.sort();
        underlay.dedup();
        self.underlay = underlay;
        self
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

    /// Whether a route to `prefix` from `source` may enter the RIB (rules 1 to 6).
    pub fn verdict(&self, prefix: &IpNet, source: &RouteSource) -> Result<(), Refusal> {
        let origin = self.origin(source)?;
        if prefix.prefix_len() == 0 {
            return Self::default_route_verdict(prefix, origin);
        }
        // Only what a member sends goes into the TUN; this node's own eBGP neighbours'
        // routes point at them, not into the mesh.
        if let Origin::Member(_) = origin
            && let Some((address, peer)) = self.underlay.iter().find(|(a, _)| prefix.contains(a))
        {
            return Err(Refusal::CoversUnderlay {
                address: *address,
                peer: peer.clone(),
            });
        }
        let holders: Vec<&MeshMember> = self.members.iter().filter(|m| m.shares(prefix)).collect();
        if !holders.is_empty() {
            return self.shared_verdict(&holders, origin);
        }
        match (self.owner(prefix), origin) {
            (Some(owner), Origin::Member(from)) if from.name == owner.name => Ok(()),
            (Some(owner), Origin::Outside) if owner.name == self.own => Ok(()),
            (Some(owner), origin) => Err(Refusal::NotTheOwner {
                owner: owner.name.clone(),
                origin: origin.to_string(),
            }),
            (None, Origin::Member(from)) if !source.external_path => {
                Err(Refusal::NotInCertificate {
                    member: from.name.clone(),
                })
            }
            (None, _) => match self.pools.iter().find(|pool| pool.contains(prefix)) {
                Some(pool) => Err(Refusal::Unallocated { pool: *pool }),
                None => Ok(()),
            },
        }
    }
}

impl Authority {
    /// Rule 5: a member's default route needs its exit approval for the family.
    fn default_route_verdict(prefix: &IpNet, origin: Origin<'_>) -> Result<(), Refusal> {
        match origin {
            Origin::Member(from) if from.is_exit_for(prefix) => Ok(()),
            Origin::Member(from) => Err(Refusal::NotAnExit {
                member: from.name.clone(),
                family: match prefix {
                    IpNet::V4(_) => "IPv4",
                    IpNet::V6(_) => "IPv6",
                },
            }),
            Origin::Outside => Ok(()),
        }
    }

    /// Rule 6: a shared prefix comes from one of the members it is approved for (or from
    /// this node's own eBGP neighbours when this node is one of them).
    fn shared_verdict(&self, holders: &[&MeshMember], origin: Origin<'_>) -> Result<(), Refusal> {
        let allowed = match origin {
            Origin::Member(from) => holders.iter().any(|h| h.name == from.name),
            Origin::Outside => holders.iter().any(|h| h.name == self.own),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NotShared {
                holders: holders.iter().map(|h| h.name.clone()).collect(),
                origin: origin.to_string(),
            })
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

    /// core1 with spoke3 (LAN 192.168.42.0/24), core2 with spoke4 (LAN 192.168.43.0/24);
    /// core2 is an IPv4 Internet exit, core1 and spoke4 share 192.0.2.53/32. The tunnels run
    /// to 198.51.100.1 (core1), 198.51.100.2 (core2) and 2001:db8:100::3 (spoke3).
    fn authority(own: &str) -> Authority {
        let shared = vec!["192.0.2.53/32".parse().unwrap()];
        let mut core1 = core(1);
        core1.approvals.anycast.clone_from(&shared);
        let mut core2 = core(2);
        core2.approvals.exit_ipv4 = true;
        let mut spoke4 = spoke(4, 2, &["192.168.43.0/24"]);
        spoke4.approvals.anycast = shared;
        let identities = [core1, core2, spoke(3, 1, &["192.168.42.0/24"]), spoke4];
        let members = identities
            .iter()
            .map(|i| MeshMember::from_identity(i).unwrap())
            .collect();
        let underlay = [
            ("198.51.100.1", "core1"),
            ("198.51.100.2", "core2"),
            ("2001:db8:100::3", "spoke3"),
        ]
        .iter()
        .map(|(a, n)| (a.parse().unwrap(), (*n).to_owned()))
        .collect();
        Authority::new(
            own,
            members,
            vec!["10.0.0.0/8".parse().unwrap(), "fd00::/48".parse().unwrap()],
        )
        .with_underlay(underlay)
    }

    /// One case per line: this node | prefix | source | verdict | what a refusal mentions.
    /// Sources: `own N` (originated by the member at 10.N.0.1), `outside N` (learnt by that
    /// member over eBGP: its AS path names another AS), either with `via R` when the route
    /// reflector at 10.R.0.1 passed it on (ORIGINATOR_ID 10.N.0.1), or `ebgp` (this node's
    /// own eBGP neighbour).
    const CASES: &str = "
        # Owners announcing their own space, directly.
        core1  | 10.2.0.0/16        | own 2           | accept |
        core1  | 10.3.0.0/16        | own 3           | accept |
        core1  | 192.168.42.0/24    | own 3           | accept |
        core1  | 192.168.42.128/25  | own 3           | accept |
        core1  | fd00:0:0:1:3::/80  | own 3           | accept |
        core2  | fd00:0:0:2::/64    | own 2           | accept |
        # Reflected by the owner's core, to another core and to the core's other spoke.
        core2  | 192.168.42.0/24    | own 3 via 1     | accept |
        spoke4 | 192.168.42.0/24    | own 3 via 2     | accept |
        spoke4 | 10.1.0.0/16        | own 1 via 2     | accept |
        # Hijacks: someone else's /16, LAN or a more specific part of it.
        core1  | 10.3.0.0/16        | own 2           | refuse | \"spoke3\"
        core2  | 192.168.42.0/24    | own 4           | refuse | member \"spoke4\"
        core2  | 192.168.42.0/25    | own 1           | refuse | \"spoke3\"
        # A core announcing its spoke's /80 out of its own /64: the spoke owns it.
        core2  | fd00:0:0:1:3::/80  | own 1           | refuse | \"spoke3\"
        # A reflector vouching for what it may not reflect, or for no member.
        core2  | 10.4.0.0/16        | own 4 via 1     | refuse | may not reflect
        core2  | 10.9.0.0/16        | own 9 via 1     | refuse | 10.9.0.1
        # Originating what the certificate does not list (a LAN from the member's own
        # configuration, unallocated mesh space, anything else), directly or reflected.
        core1  | 192.168.99.0/24    | own 3           | refuse | \"spoke3\" originated
        core2  | 192.168.99.0/24    | own 3 via 1     | refuse | certificate
        core1  | 10.200.0.0/16      | own 2           | refuse | certificate
        core1  | 203.0.113.0/24     | own 2           | refuse | certificate
        # From outside through a member: unallocated mesh space is refused ...
        core1  | 10.200.0.0/16      | outside 2       | refuse | 10.0.0.0/8
        core1  | 10.0.0.0/12        | outside 2       | refuse | no member
        core1  | fd00:0:0:77::/64   | outside 2       | refuse | fd00::/48
        # ... and someone else's space, but an owner's LAN router may speak for it ...
        core1  | 192.168.42.0/24    | outside 2       | refuse | \"spoke3\"
        core1  | 192.168.42.0/24    | outside 3       | accept |
        # ... while a friend's network behind a member is accepted.
        core1  | 203.0.113.0/24     | outside 2       | accept |
        spoke3 | 198.18.0.0/15      | outside 4 via 1 | accept |
        # Default routes: only from an approved exit, for its approved family.
        core1  | 0.0.0.0/0          | own 2           | accept |
        core1  | 0.0.0.0/0          | outside 2       | accept |
        spoke3 | 0.0.0.0/0          | own 2 via 1     | accept |
        core1  | ::/0               | own 2           | refuse | \"core2\" is not an approved Internet exit for IPv6
        core2  | 0.0.0.0/0          | own 1           | refuse | \"core1\" is not an approved Internet exit for IPv4
        core2  | 0.0.0.0/0          | outside 1       | refuse | IPv4
        core1  | 0.0.0.0/0          | outside 4 via 2 | refuse | \"spoke4\" is not
        core1  | 0.0.0.0/0          | ebgp            | accept |
        # Shared (anycast) prefixes: from each member they are approved for, nobody else.
        core2  | 192.0.2.53/32      | own 1           | accept |
        core2  | 192.0.2.53/32      | own 4           | accept |
        core1  | 192.0.2.53/32      | own 4 via 2     | accept |
        core1  | 192.0.2.53/32      | own 2           | refuse | shared by [\"core1\", \"spoke4\"]
        core1  | 192.0.2.53/32      | outside 2       | refuse | member \"core2\"
        core1  | 192.0.2.53/32      | ebgp            | accept |
        core2  | 192.0.2.53/32      | ebgp            | refuse | outside the mesh
        core2  | 192.0.2.0/24       | outside 1       | accept |
        # This node's own eBGP neighbours: not members' space, except this node's own.
        core1  | 203.0.113.0/24     | ebgp            | accept |
        core1  | 10.2.0.0/16        | ebgp            | refuse | outside the mesh
        core1  | 192.168.42.0/24    | ebgp            | refuse | outside the mesh
        spoke3 | 192.168.42.0/24    | ebgp            | accept |
        core1  | 10.77.0.0/16       | ebgp            | refuse | no member
        # Routes over the tunnels' own endpoints: from members refused, whoever owns them.
        core1  | 198.51.100.0/24    | outside 2       | refuse | endpoint of the tunnel to \"core1\"
        core1  | 198.51.100.2/32    | outside 4 via 2 | refuse | 198.51.100.2
        core1  | 2001:db8:100::/48  | outside 2       | refuse | \"spoke3\"
        core1  | 198.51.100.128/25  | outside 2       | accept |
        core1  | 198.51.100.0/24    | ebgp            | accept |
        core1  | 0.0.0.0/0          | own 2           | accept |
    ";

    fn source(spec: &str) -> RouteSource {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let address = |n: &str| Ipv4Addr::new(10, n.parse().unwrap(), 0, 1);
        match words.as_slice() {
            ["ebgp"] => RouteSource {
                neighbor: "198.51.100.200".parse().unwrap(),
                internal: false,
                originator_id: None,
                external_path: true,
            },
            [kind, origin, rest @ ..] => {
                let (neighbor, originator_id) = match rest {
                    [] => (address(origin), None),
                    ["via", reflector] => (address(reflector), Some(address(origin))),
                    _ => panic!("bad source {spec:?}"),
                };
                RouteSource {
                    neighbor: IpAddr::V4(neighbor),
                    internal: true,
                    originator_id,
                    external_path: *kind == "outside",
                }
            }
            _ => panic!("bad source {spec:?}"),
        }
    }

    #[test]
    fn a_table_of_cases() {
        let lines = CASES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        for line in lines {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [own, prefix, from, verdict, mention] = cells[..] else {
                panic!("bad case {line:?}");
            };
            let prefix: IpNet = prefix.parse().unwrap();
            let result = authority(own).verdict(&prefix, &source(from));
            assert_eq!(result.is_ok(), verdict == "accept", "{line}: {result:?}");
            if let Err(refusal) = result {
                let text = refusal.to_string();
                assert!(text.contains(mention), "{line}: {text:?} lacks {mention:?}");
            }
        }
    }

    #[test]
    fn an_ibgp_router_that_is_no_member_counts_as_outside() {
        let source = RouteSource {
            neighbor: "10.250.0.9".parse().unwrap(),
            internal: true,
            originator_id: None,
            external_path: false,
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
