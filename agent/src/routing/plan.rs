//! The routing plane's plan, from this node's certificate and the verified membership: which
//! iBGP sessions to hold, where to listen and what to originate. Pure.
//!
//! - cores hold a full mesh of iBGP sessions among themselves;
//! - a spoke holds one session, with its core; its core marks it an RFC 4456 route-reflector
//!   client, so the spoke's routes reach the other cores and every route reaches the spoke;
//! - sessions run between overlay addresses (`10.N.0.1`), inside the tunnels, never on the
//!   underlay: one session per pair carries both families (MP-BGP), IPv6 routes with the
//!   node's overlay IPv6 address as next hop;
//! - the router id is the node's overlay IPv4 address, the AS is `[routing] asn`;
//! - a node originates what its certificate allocates (the /16, its IPv6 prefix; the /96
//!   client pool lies inside that and is not announced separately) and its LANs;
//! - an exit (`[exit] serve`) originates 0.0.0.0/0 and ::/0, and a node with
//!   `[routing] anycast_prefixes` originates those, but only what its certificate approves:
//!   unlike an unapproved LAN (announced, for the others to decide), an unapproved default or
//!   shared prefix would pull traffic towards a node that every member refuses, so it is
//!   withheld and the operator told why.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::member::MeshMember;
use crate::bgp::packet::Family;
use crate::bgp::policy::Policy;
use crate::bgp::speaker::{BGP_PORT, NeighborConfig};
use mesh_config::routers::{RouterRoutes, RoutersSection, router_settings};
use meshd_bgp::neighbor::NextHopSelf;

/// Hold time of the mesh's sessions: a member whose tunnel fails is noticed in half a minute
/// at worst (the membership and the data plane usually notice first).
pub const MESH_HOLD_TIME: u16 = 30;
/// Pause between connection attempts: the first attempt often precedes the tunnel's first
/// handshake, and connecting over a tunnel costs next to nothing.
pub const MESH_CONNECT_RETRY: Duration = Duration::from_secs(2);

/// What the speaker should do, for one state of the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub router_id: Ipv4Addr,
    /// The node's overlay addresses, port 179.
    pub listen: Vec<SocketAddr>,
    /// The iBGP sessions, one per member this node peers with, sorted by name.
    pub neighbors: Vec<NeighborConfig>,
    /// This node's own routes.
    pub originate: Vec<IpNet>,
    /// `[routing] lan_prefixes` the certificate does not approve: announced (the others
    /// decide), but the operator is told the other members will refuse them.
    pub unapproved_lans: Vec<IpNet>,
    /// What the configuration asks for but the certificate does not approve: not announced.
    pub withheld: Vec<Withheld>,
}

/// What the configuration asks this node to announce beyond its allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnRoutes<'a> {
    /// `[routing] lan_prefixes`.
    pub lans: &'a [IpNet],
    /// `[exit] serve`.
    pub exit_serve: bool,
    /// `[routing] anycast_prefixes`.
    pub anycast: &'a [IpNet],
}

/// A configured route the certificate does not approve, and so is not announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Withheld {
    /// `[exit] serve`, but the certificate does not make this node an exit for the family
    /// of this default route.
    ExitDefault(IpNet),
    /// An `anycast_prefixes` entry outside every shared prefix the certificate approves.
    Anycast(IpNet),
}

impl std::fmt::Display for Withheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Withheld::ExitDefault(default) => {
                let family = match default {
                    IpNet::V4(_) => "IPv4",
                    IpNet::V6(_) => "IPv6",
                };
                write!(
                    f,
                    "[exit] serve: {default} not announced: this node's certificate does not \
                     approve it as an Internet exit for {family} (the CA holder approves exits \
                     with `meshd invite --exit`)"
                )
            }
            Withheld::Anycast(prefix) => write!(
                f,
                "[routing] anycast_prefixes: {prefix} not announced: it is not inside a shared \
                 prefix this node's certificate approves (the CA holder approves them with \
                 `meshd invite --anycast`)"
            ),
        }
    }
}

/// The plan for node `own` in a mesh of `members` (which may include `own`); `routers` is
/// `[routers.NAME]`, what a core sends the foreign routers it stands in for.
pub fn plan(
    own: &MeshMember,
    members: &[MeshMember],
    asn: u32,
    configured: OwnRoutes<'_>,
    routers: &RoutersSection,
) -> Plan {
    let (mut originate, unapproved_lans) = originations(own, configured.lans);
    let (extra, withheld) = approved_extras(own, configured);
    originate.extend(extra);
    originate.sort();
    originate.dedup();
    Plan {
        router_id: own.router_id,
        listen: listen_addresses(own),
        neighbors: mesh_neighbors(own, members, asn, routers),
        originate,
        unapproved_lans,
        withheld,
    }
}

/// The default routes and shared prefixes `own` announces because the configuration asks
/// and its certificate approves, and what is withheld.
pub fn approved_extras(own: &MeshMember, configured: OwnRoutes<'_>) -> (Vec<IpNet>, Vec<Withheld>) {
    let mut announce = Vec::new();
    let mut withheld = Vec::new();
    if configured.exit_serve {
        let defaults: [IpNet; 2] = [
            IpNet::V4(ipnet::Ipv4Net::default()),
            IpNet::V6(ipnet::Ipv6Net::default()),
        ];
        for default in defaults {
            if own.is_exit_for(&default) {
                announce.push(default);
            } else {
                withheld.push(Withheld::ExitDefault(default));
            }
        }
    }
    for prefix in configured.anycast.iter().map(IpNet::trunc) {
        if own.shares(&prefix) {
            announce.push(prefix);
        } else {
            withheld.push(Withheld::Anycast(prefix));
        }
    }
    withheld.sort();
    withheld.dedup();
    (announce, withheld)
}

/// Where the speaker accepts connections: the overlay addresses only.
pub fn listen_addresses(own: &MeshMember) -> Vec<SocketAddr> {
    let mut listen = vec![SocketAddr::new(IpAddr::V4(own.router_id), BGP_PORT)];
    listen.extend(
        own.address6
            .map(|a| SocketAddr::new(IpAddr::V6(a), BGP_PORT)),
    );
    listen
}

/// The iBGP neighbours of `own`.
pub fn mesh_neighbors(
    own: &MeshMember,
    members: &[MeshMember],
    asn: u32,
    routers: &RoutersSection,
) -> Vec<NeighborConfig> {
    let mut neighbors: Vec<NeighborConfig> = members
        .iter()
        .filter(|m| m.name != own.name)
        .filter_map(|m| {
            let rr_client = match (own.is_core(), m.is_core()) {
                (true, true) => false,
                (true, false) if m.is_spoke_of(&own.name) => true,
                (false, true) if own.core.as_deref() == Some(m.name.as_str()) => false,
                _ => return None,
            };
            // Only the foreign routers this core stands in for have settings here.
            let send = if m.foreign && rr_client {
                router_settings(routers, &m.name).send
            } else {
                RouterRoutes::Mesh
            };
            Some(mesh_neighbor(own, m, asn, rr_client, send))
        })
        .collect();
    neighbors.sort_by(|a, b| a.name.cmp(&b.name));
    neighbors
}

fn mesh_neighbor(
    own: &MeshMember,
    member: &MeshMember,
    asn: u32,
    rr_client: bool,
    send: RouterRoutes,
) -> NeighborConfig {
    NeighborConfig {
        name: member.name.clone(),
        address: IpAddr::V4(member.router_id),
        port: BGP_PORT,
        remote_asn: asn,
        local_address: Some(IpAddr::V4(own.router_id)),
        passive: false,
        // Inside the mesh the certificate check (super::authority) decides, not a policy.
        import: Policy::accept_all(),
        export: Policy::accept_all(),
        rr_client,
        next_hop_v4: Some(own.router_id),
        next_hop_v6: own.address6,
        // A foreign router knows no member's address but its core's: everything it is sent
        // goes through the core anyway, so the core is the next hop of every route.
        next_hop_self: if member.foreign && rr_client {
            NextHopSelf::All
        } else {
            NextHopSelf::External
        },
        default_only: send == RouterRoutes::Default,
        hold_time: MESH_HOLD_TIME,
        connect_retry: MESH_CONNECT_RETRY,
        families: Family::ALL.to_vec(),
        // The tunnel already authenticates and encrypts the session.
        md5_key: None,
        ttl: None,
    }
}

/// This node's own routes, and the configured LANs its certificate does not approve.
pub fn originations(own: &MeshMember, configured_lans: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    let mut routes: BTreeSet<IpNet> = BTreeSet::new();
    // Allocated prefixes inside another allocated prefix (the /96 client pool) add nothing.
    for prefix in &own.allocated {
        let inside_another = own
            .allocated
            .iter()
            .any(|other| other != prefix && other.contains(prefix));
        if !inside_another {
            routes.insert(*prefix);
        }
    }
    routes.extend(own.lans.iter().copied());
    let mut unapproved = Vec::new();
    for lan in configured_lans.iter().map(IpNet::trunc) {
        if !own.lans.contains(&lan) {
            unapproved.push(lan);
        }
        routes.insert(lan);
    }
    (routes.into_iter().collect(), unapproved)
}

/// What to change to go from the neighbours `before` to `after`: neighbours to add or
/// replace (new or changed), and addresses to remove.
pub fn neighbor_changes(
    before: &[NeighborConfig],
    after: &[NeighborConfig],
) -> (Vec<NeighborConfig>, Vec<IpAddr>) {
    let add = after
        .iter()
        .filter(|n| !before.contains(n))
        .cloned()
        .collect();
    let remove = before
        .iter()
        .filter(|n| !after.iter().any(|m| m.address == n.address))
        .map(|n| n.address)
        .collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::member::tests::{core, spoke};

    fn members(list: &[pki::NodeIdentity]) -> Vec<MeshMember> {
        list.iter()
            .map(|i| MeshMember::from_identity(i).unwrap())
            .collect()
    }

    fn summary(neighbors: &[NeighborConfig]) -> Vec<(String, String, bool)> {
        neighbors
            .iter()
            .map(|n| (n.name.clone(), n.address.to_string(), n.rr_client))
            .collect()
    }

    fn s(name: &str, address: &str, rr: bool) -> (String, String, bool) {
        (name.into(), address.into(), rr)
    }

    /// Two cores, a spoke on each: who peers with whom (a table of cases).
    #[test]
    fn cores_mesh_spokes_peer_with_their_core_only() {
        let all = members(&[core(1), core(2), spoke(3, 1, &[]), spoke(4, 2, &[])]);
        let cases = [
            (
                0,
                vec![s("core2", "10.2.0.1", false), s("spoke3", "10.3.0.1", true)],
            ),
            (
                1,
                vec![s("core1", "10.1.0.1", false), s("spoke4", "10.4.0.1", true)],
            ),
            (2, vec![s("core1", "10.1.0.1", false)]),
            (3, vec![s("core2", "10.2.0.1", false)]),
        ];
        for (own, expected) in cases {
            let got = mesh_neighbors(&all[own], &all, 64512, &RoutersSection::new());
            assert_eq!(summary(&got), expected, "neighbours of {}", all[own].name);
            for n in &got {
                assert_eq!(n.remote_asn, 64512);
                assert_eq!(n.local_address, Some(IpAddr::V4(all[own].router_id)));
                assert_eq!(n.next_hop_self, NextHopSelf::External);
                assert_eq!(n.next_hop_v6, all[own].address6);
            }
        }
    }

    /// A foreign router behind its core is sent every route with the core as next hop (it
    /// knows no other member's address); the other sessions keep next hops of iBGP routes.
    #[test]
    fn a_foreign_router_gets_its_core_as_next_hop_of_everything() {
        let mut all = members(&[core(1), core(2), spoke(3, 1, &[]), spoke(4, 1, &[])]);
        all[3].foreign = true;
        let got = mesh_neighbors(&all[0], &all, 64512, &RoutersSection::new());
        let by_name = |name: &str| got.iter().find(|n| n.name == name).unwrap().next_hop_self;
        assert_eq!(by_name("spoke4"), NextHopSelf::All);
        assert_eq!(by_name("spoke3"), NextHopSelf::External);
        assert_eq!(by_name("core2"), NextHopSelf::External);
    }

    /// `[routers.NAME] send = "default"` makes that foreign router's session default-only;
    /// the same words for an ordinary spoke or another core's router change nothing.
    #[test]
    fn a_foreign_router_set_to_default_gets_a_default_only_session() {
        use mesh_config::routers::RouterSettings;
        let mut all = members(&[core(1), core(2), spoke(3, 1, &[]), spoke(4, 1, &[])]);
        all[3].foreign = true;
        let default = RouterSettings {
            send: RouterRoutes::Default,
        };
        let routers: RoutersSection = ["spoke3", "spoke4", "core2"]
            .into_iter()
            .map(|name| (name.to_string(), default.clone()))
            .collect();
        let got = mesh_neighbors(&all[0], &all, 64512, &routers);
        let default_only = |name: &str| got.iter().find(|n| n.name == name).unwrap().default_only;
        assert!(default_only("spoke4"));
        assert!(!default_only("spoke3"));
        assert!(!default_only("core2"));
        let mesh = mesh_neighbors(&all[0], &all, 64512, &RoutersSection::new());
        assert!(mesh.iter().all(|n| !n.default_only));
    }

    #[test]
    fn the_plan_listens_on_overlay_addresses_with_the_router_id() {
        let all = members(&[core(1), spoke(3, 1, &["192.168.42.0/24"])]);
        let plan = plan(
            &all[1],
            &all,
            65000,
            OwnRoutes::default(),
            &RoutersSection::new(),
        );
        assert_eq!(plan.router_id, Ipv4Addr::new(10, 3, 0, 1));
        assert_eq!(
            plan.listen,
            vec![
                "10.3.0.1:179".parse::<SocketAddr>().unwrap(),
                "[fd00:0:0:1:3::1]:179".parse().unwrap()
            ]
        );
        assert_eq!(
            plan.originate,
            ["10.3.0.0/16", "192.168.42.0/24", "fd00:0:0:1:3::/80"]
                .map(|p| p.parse::<IpNet>().unwrap())
        );
        assert!(plan.unapproved_lans.is_empty());
        assert!(plan.withheld.is_empty());
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    /// Defaults and shared prefixes are announced as far as the certificate approves them,
    /// withheld (and said) beyond: a table of cases.
    #[test]
    fn exits_and_shared_prefixes_are_announced_only_as_approved() {
        let shared = nets(&["203.0.113.0/28", "2001:db8:53::/48"]);
        // (approved v4 exit, approved v6 exit, serve, configured anycast, announced, withheld)
        type Case<'a> = (
            bool,
            bool,
            bool,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case<'_>; 6] = [
            (false, false, false, &[], &[], &[]),
            (true, true, false, &[], &[], &[]),
            (true, true, true, &[], &["0.0.0.0/0", "::/0"], &[]),
            (true, false, true, &[], &["0.0.0.0/0"], &["::/0"]),
            (false, false, true, &[], &[], &["0.0.0.0/0", "::/0"]),
            (
                false,
                false,
                false,
                &["203.0.113.5/32", "2001:db8:53::53/128", "198.51.100.1/32"],
                &["203.0.113.5/32", "2001:db8:53::53/128"],
                &["198.51.100.1/32"],
            ),
        ];
        for (v4, v6, serve, anycast, announced, withheld) in cases {
            let mut own = MeshMember::from_identity(&core(1)).unwrap();
            own.approvals.exit_ipv4 = v4;
            own.approvals.exit_ipv6 = v6;
            own.approvals.anycast.clone_from(&shared);
            let anycast = nets(anycast);
            let configured = OwnRoutes {
                lans: &[],
                exit_serve: serve,
                anycast: &anycast,
            };
            let what = format!("v4 {v4} v6 {v6} serve {serve} anycast {anycast:?}");
            let (got, got_withheld) = approved_extras(&own, configured);
            assert_eq!(got, nets(announced), "{what}");
            let withheld_nets: Vec<IpNet> = got_withheld
                .iter()
                .map(|w| match w {
                    Withheld::ExitDefault(p) | Withheld::Anycast(p) => *p,
                })
                .collect();
            assert_eq!(withheld_nets, nets(withheld), "{what}");
            let plan = plan(
                &own,
                &[own.clone()],
                64512,
                configured,
                &RoutersSection::new(),
            );
            for prefix in nets(announced) {
                assert!(plan.originate.contains(&prefix), "{what}: {prefix}");
            }
            for prefix in nets(withheld) {
                assert!(!plan.originate.contains(&prefix), "{what}: {prefix}");
            }
        }
    }

    #[test]
    fn withheld_routes_say_why_and_what_to_do() {
        let exit = Withheld::ExitDefault("::/0".parse().unwrap()).to_string();
        assert!(
            exit.contains("Internet exit for IPv6") && exit.contains("--exit"),
            "{exit}"
        );
        let shared = Withheld::Anycast("198.51.100.1/32".parse().unwrap()).to_string();
        assert!(
            shared.contains("198.51.100.1/32") && shared.contains("--anycast"),
            "{shared}"
        );
    }

    #[test]
    fn configured_lans_missing_from_the_certificate_are_flagged() {
        let own = MeshMember::from_identity(&spoke(3, 1, &["192.168.42.0/24"])).unwrap();
        let configured: Vec<IpNet> = vec![
            "192.168.42.0/24".parse().unwrap(),
            "192.168.99.7/24".parse().unwrap(),
        ];
        let (routes, unapproved) = originations(&own, &configured);
        let lan99: IpNet = "192.168.99.0/24".parse().unwrap();
        assert_eq!(unapproved, vec![lan99]);
        assert!(routes.contains(&lan99));
    }

    #[test]
    fn membership_changes_add_replace_and_remove_sessions() {
        let before_members = members(&[core(1), core(2), spoke(3, 1, &[])]);
        let before = mesh_neighbors(
            &before_members[0],
            &before_members,
            64512,
            &RoutersSection::new(),
        );
        // core2 is revoked, core5 joins.
        let after_members = members(&[core(1), spoke(3, 1, &[]), core(5)]);
        let after = mesh_neighbors(
            &after_members[0],
            &after_members,
            64512,
            &RoutersSection::new(),
        );
        let (add, remove) = neighbor_changes(&before, &after);
        assert_eq!(summary(&add), vec![s("core5", "10.5.0.1", false)]);
        assert_eq!(remove, vec![IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1))]);
        // The same membership changes nothing.
        assert_eq!(neighbor_changes(&after, &after), (Vec::new(), Vec::new()));
    }
}
