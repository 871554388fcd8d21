//! The speaker's sessions and paths as `meshd routes` reports them. Pure.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::exits::{ExitChoice, Reason, exit_name};
use super::member::MeshMember;
use crate::api::report::{BgpRouteEntry, BgpSessionEntry, BgpView, ExitEntry};
use crate::bgp::fsm::State;
use crate::bgp::packet::Origin;
use crate::bgp::rib::best::Step;
use crate::bgp::rib::group::Standing;
use crate::bgp::speaker::{RouteEntry, SessionStatus};

/// The view for a speaker of AS `asn` with `router_id`; `members` name the announcers.
pub fn view_of(
    asn: u32,
    router_id: Ipv4Addr,
    sessions: &[SessionStatus],
    paths: &[RouteEntry],
    members: &[MeshMember],
) -> BgpView {
    BgpView {
        asn,
        router_id: Some(router_id),
        sessions: session_entries(asn, sessions),
        routes: paths.iter().map(|p| route_entry(p, members)).collect(),
        exits: Vec::new(),
    }
}

/// `routes` (a view's, in prefix order, the best path of a prefix first) with the paths to the
/// `changed` prefixes replaced by `fresh`, the speaker's paths to them now (a prefix it has no
/// path to any more is gone). What the routing plane does at each flush, instead of copying the
/// whole table.
pub fn patch_routes(
    routes: &mut Vec<BgpRouteEntry>,
    changed: &BTreeSet<IpNet>,
    fresh: &[RouteEntry],
    members: &[MeshMember],
) {
    routes.retain(|r| !changed.contains(&r.prefix));
    routes.extend(fresh.iter().map(|p| route_entry(p, members)));
    // Two sorted runs: the stable sort merges them in linear time.
    routes.sort_by_key(|r| (r.prefix, !r.best));
}

/// The exits the default routes and the `[[exit.route]]` destinations use, for the view.
pub fn exit_entries(choices: &[ExitChoice]) -> Vec<ExitEntry> {
    choices
        .iter()
        .map(|choice| {
            let (reason, unreachable) = match &choice.reason {
                Reason::Nearest => ("nearest", &[][..]),
                Reason::Rule { skipped } => ("rule", &skipped[..]),
                Reason::Fallback { skipped } => ("fallback", &skipped[..]),
                Reason::NoExit => ("none", &choice.via[..]),
            };
            ExitEntry {
                prefix: choice.prefix,
                exit: choice.used.as_ref().and_then(|u| u.exit.clone()),
                next_hop: choice.used.as_ref().and_then(|u| u.next_hop),
                cost: choice.used.as_ref().map(|u| u.igp_cost),
                reason: reason.to_owned(),
                via: choice.via.clone(),
                unreachable: unreachable.to_vec(),
            }
        })
        .collect()
}

/// The sessions of a speaker of AS `asn`, for the view.
pub fn session_entries(asn: u32, sessions: &[SessionStatus]) -> Vec<BgpSessionEntry> {
    sessions.iter().map(|s| session_entry(asn, s)).collect()
}

fn session_entry(asn: u32, s: &SessionStatus) -> BgpSessionEntry {
    BgpSessionEntry {
        name: s.name.clone(),
        address: s.address,
        remote_asn: s.remote_asn,
        state: state_name(s.state).to_owned(),
        internal: s.remote_asn == asn,
        rr_client: s.rr_client,
        router_id: s.negotiated.as_ref().map(|n| n.peer_id),
        advertised: s.advertised,
        accepted: s.accepted,
        refused: s.refused_total(),
        refused_by_reason: s
            .refused
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), *n))
            .collect(),
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Idle => "idle",
        State::Connect => "connect",
        State::Active => "active",
        State::OpenSent => "open_sent",
        State::OpenConfirm => "open_confirm",
        State::Established => "established",
    }
}

/// What a path's standing is called in the view (`BgpRouteEntry::selection`).
fn selection_name(standing: Standing) -> &'static str {
    match standing {
        Standing::Best => "best",
        Standing::Equal => "equal_cost",
        Standing::MaxPaths => "max_paths",
        Standing::SameNextHop => "same_next_hop",
        Standing::Unreachable => "unreachable",
        Standing::Worse(Step::Local) => "local_route",
        Standing::Worse(Step::LocalPref) => "local_pref",
        Standing::Worse(Step::AsPathLength) => "as_path_length",
        Standing::Worse(Step::Origin) => "origin",
        Standing::Worse(Step::Med) => "med",
        Standing::Worse(Step::External) => "ebgp_preferred",
        Standing::Worse(Step::IgpCost) => "igp_cost",
    }
}

fn route_entry(entry: &RouteEntry, members: &[MeshMember]) -> BgpRouteEntry {
    let attrs = &entry.path.attrs;
    let own = entry.from.is_none();
    BgpRouteEntry {
        prefix: entry.prefix,
        next_hop: entry
            .from
            .as_ref()
            .map(|_| entry.path.next_hop)
            .filter(|nh| !nh.is_unspecified()),
        as_path: attrs
            .as_path
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        local_pref: attrs.local_pref,
        med: attrs.med,
        communities: attrs
            .communities
            .iter()
            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
            .collect(),
        large_communities: attrs
            .large_communities
            .iter()
            .map(|c| format!("{}:{}:{}", c.global, c.local1, c.local2))
            .collect(),
        origin: match attrs.origin {
            Some(Origin::Igp) | None => "igp",
            Some(Origin::Egp) => "egp",
            Some(Origin::Incomplete) => "incomplete",
        }
        .to_owned(),
        originator_id: attrs.originator_id,
        learnt_from: entry
            .from
            .as_ref()
            .map_or_else(|| "local".to_owned(), |f| f.name.clone()),
        learnt_from_address: entry.from.as_ref().map(|f| f.address),
        best: entry.best,
        kernel: false,
        announcer: (!own)
            .then(|| {
                exit_name(
                    members,
                    attrs.originator_id,
                    entry.path.next_hop,
                    entry.from.as_ref().map(|f| f.address),
                )
            })
            .flatten(),
        igp_cost: entry.igp_cost.filter(|_| !own),
        // Default routes use the one exit chosen for them (`Groups::data_plane_hops`).
        used: entry.standing == Standing::Best
            || (entry.standing == Standing::Equal && entry.prefix.prefix_len() != 0),
        selection: selection_name(entry.standing).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bgp::packet::{AsPath, LargeCommunity, PathAttributes};
    use crate::bgp::rib::Path;
    use crate::bgp::speaker::PeerSummary;

    #[test]
    fn exit_choices_say_which_exit_and_why() {
        use crate::routing::exits::{DefaultPath, choose};
        let path = |prefix: &str, exit: &str, next_hop: &str, cost, best| DefaultPath {
            prefix: prefix.parse().unwrap(),
            next_hop: Some(next_hop.parse().unwrap()),
            exit: Some(exit.to_owned()),
            igp_cost: cost,
            best,
        };
        let defaults = [
            path("0.0.0.0/0", "paris", "10.2.0.1", 10, true),
            path("0.0.0.0/0", "tokyo", "10.3.0.1", 250, false),
        ];
        let rule = |destination: &str, via: &[&str]| mesh_config::ExitRoute {
            destination: destination.parse().unwrap(),
            via: via.iter().map(|v| (*v).to_owned()).collect(),
        };
        let rules = [
            rule("203.0.113.0/24", &["tokyo"]),
            rule("198.51.100.0/24", &["osaka"]),
            rule("2001:db8::/32", &["tokyo"]),
        ];
        let entries = exit_entries(&choose(&defaults, &rules));
        let shown: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{} {:?} {:?} {:?} {} {:?}",
                    e.prefix, e.exit, e.next_hop, e.cost, e.reason, e.unreachable
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                r#"0.0.0.0/0 Some("paris") Some(10.2.0.1) Some(10) nearest []"#,
                r#"203.0.113.0/24 Some("tokyo") Some(10.3.0.1) Some(250) rule []"#,
                r#"198.51.100.0/24 Some("paris") Some(10.2.0.1) Some(10) fallback ["osaka"]"#,
                r#"2001:db8::/32 None None None none ["tokyo"]"#,
            ]
        );
    }

    #[test]
    fn a_patch_replaces_the_changed_prefixes_paths_and_keeps_the_order() {
        let entry = |prefix: &str, peer: &str, best| RouteEntry {
            prefix: prefix.parse().unwrap(),
            path: Path {
                peer: 1,
                next_hop: peer.parse().unwrap(),
                attrs: Arc::new(PathAttributes::default()),
            },
            from: Some(PeerSummary {
                name: peer.into(),
                address: peer.parse().unwrap(),
                internal: true,
            }),
            best,
            igp_cost: Some(0),
            standing: if best {
                Standing::Best
            } else {
                Standing::Worse(Step::IgpCost)
            },
        };
        let old = [
            entry("10.2.0.0/16", "10.2.0.1", true),
            entry("10.2.0.0/16", "10.3.0.1", false),
            entry("10.3.0.0/16", "10.3.0.1", true),
            entry("10.4.0.0/16", "10.4.0.1", true),
        ];
        let mut routes = view_of(64512, Ipv4Addr::new(10, 1, 0, 1), &[], &old, &[]).routes;
        // 10.2/16's best moved, 10.4/16 went, 10.5/16 came; 10.3/16 is untouched.
        let changed: BTreeSet<IpNet> = ["10.2.0.0/16", "10.4.0.0/16", "10.5.0.0/16"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let fresh = [
            entry("10.2.0.0/16", "10.3.0.1", true),
            entry("10.5.0.0/16", "10.5.0.1", true),
        ];
        patch_routes(&mut routes, &changed, &fresh, &[]);
        let shown: Vec<String> = routes
            .iter()
            .map(|r| format!("{} {} {}", r.prefix, r.learnt_from, r.best))
            .collect();
        assert_eq!(
            shown,
            [
                "10.2.0.0/16 10.3.0.1 true",
                "10.3.0.0/16 10.3.0.1 true",
                "10.5.0.0/16 10.5.0.1 true",
            ]
        );
    }

    #[test]
    fn a_shared_prefix_shows_its_announcers_costs_and_which_paths_are_used() {
        use crate::api::report::ecmp_groups;
        use crate::routing::member::tests::core;
        let members: Vec<MeshMember> = [core(2), core(3), core(4)]
            .iter()
            .map(|i| MeshMember::from_identity(i).unwrap())
            .collect();
        // Reflected by core2 (ORIGINATOR_ID) or straight from the announcer.
        let entry = |prefix: &str, announcer: u8, cost, standing| {
            let next_hop = format!("10.{announcer}.0.1");
            RouteEntry {
                prefix: prefix.parse().unwrap(),
                path: Path {
                    peer: u32::from(announcer),
                    next_hop: next_hop.parse().unwrap(),
                    attrs: Arc::new(PathAttributes {
                        originator_id: Some(Ipv4Addr::new(10, announcer, 0, 1)),
                        ..PathAttributes::default()
                    }),
                },
                from: Some(PeerSummary {
                    name: "core2".into(),
                    address: "10.2.0.1".parse().unwrap(),
                    internal: true,
                }),
                best: standing == Standing::Best,
                igp_cost: cost,
                standing,
            }
        };
        let shared = "203.0.113.53/32";
        let paths = [
            entry("0.0.0.0/0", 2, Some(5), Standing::Best),
            entry("0.0.0.0/0", 3, Some(5), Standing::Equal),
            entry(shared, 2, Some(5), Standing::Best),
            entry(shared, 3, Some(5), Standing::Equal),
            entry(shared, 4, Some(30), Standing::Worse(Step::IgpCost)),
            entry(shared, 9, None, Standing::Unreachable),
        ];
        let routes = view_of(64512, Ipv4Addr::new(10, 1, 0, 1), &[], &paths, &members).routes;
        let shown: Vec<String> = routes
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} {:?} {} {}",
                    r.prefix, r.announcer, r.igp_cost, r.used, r.selection
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                r#"0.0.0.0/0 Some("core2") Some(5) true best"#,
                // A default route's equal path is not used: defaults use one exit.
                r#"0.0.0.0/0 Some("core3") Some(5) false equal_cost"#,
                r#"203.0.113.53/32 Some("core2") Some(5) true best"#,
                r#"203.0.113.53/32 Some("core3") Some(5) true equal_cost"#,
                r#"203.0.113.53/32 Some("core4") Some(30) false igp_cost"#,
                // No member 10.9.0.1: named by the neighbour it came from.
                r#"203.0.113.53/32 Some("core2") None false unreachable"#,
            ]
        );

        // The group of the shared prefix (the defaults' choice is under the exits).
        let groups = ecmp_groups(&routes);
        let [group] = &groups[..] else {
            panic!("one group expected: {groups:?}")
        };
        assert_eq!(group.prefix.to_string(), shared);
        assert_eq!(group.reason, "equal_cost");
        assert_eq!(group.cost, Some(5));
        let hops: Vec<String> = group.next_hops.iter().map(ToString::to_string).collect();
        assert_eq!(hops, ["10.2.0.1", "10.3.0.1"]);
        let why: Vec<(bool, &str)> = group
            .paths
            .iter()
            .map(|p| (p.used, p.selection.as_str()))
            .collect();
        assert_eq!(
            why,
            [
                (true, "best"),
                (true, "equal_cost"),
                (false, "igp_cost"),
                (false, "unreachable")
            ]
        );

        // The announcer itself: its own route is used, the other announcer's is not.
        let own = RouteEntry {
            from: None,
            path: Path {
                peer: crate::bgp::rib::LOCAL,
                next_hop: "0.0.0.0".parse().unwrap(),
                attrs: Arc::new(PathAttributes::default()),
            },
            ..entry(shared, 2, Some(0), Standing::Best)
        };
        let paths = [own, entry(shared, 3, Some(5), Standing::Worse(Step::Local))];
        let routes = view_of(64512, Ipv4Addr::new(10, 2, 0, 1), &[], &paths, &members).routes;
        assert_eq!(
            (routes[0].announcer.as_deref(), routes[0].igp_cost),
            (None, None)
        );
        assert_eq!(routes[1].selection, "local_route");
        let groups = ecmp_groups(&routes);
        assert_eq!(groups[0].reason, "local");
        assert!(groups[0].next_hops.is_empty());
        // One next hop through two reflectors is no group.
        let twice = [
            entry(shared, 3, Some(5), Standing::Best),
            RouteEntry {
                from: Some(PeerSummary {
                    name: "core4".into(),
                    address: "10.4.0.1".parse().unwrap(),
                    internal: true,
                }),
                ..entry(shared, 3, Some(5), Standing::SameNextHop)
            },
        ];
        let routes = view_of(64512, Ipv4Addr::new(10, 1, 0, 1), &[], &twice, &members).routes;
        assert!(ecmp_groups(&routes).is_empty());
    }

    #[test]
    fn attributes_are_shown_as_bgp_tools_print_them() {
        let attrs = PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath::from_sequence([65010, 65020])),
            med: Some(5),
            local_pref: Some(200),
            communities: vec![(65010 << 16) | 42],
            large_communities: vec![LargeCommunity {
                global: 65010,
                local1: 1,
                local2: 2,
            }],
            originator_id: Some(Ipv4Addr::new(10, 3, 0, 1)),
            ..PathAttributes::default()
        };
        let entry = RouteEntry {
            prefix: "203.0.113.0/24".parse().unwrap(),
            path: Path {
                peer: 1,
                next_hop: "10.3.0.1".parse().unwrap(),
                attrs: Arc::new(attrs),
            },
            from: Some(PeerSummary {
                name: "beta".into(),
                address: "10.2.0.1".parse().unwrap(),
                internal: true,
            }),
            best: true,
            igp_cost: Some(7),
            standing: Standing::Best,
        };
        let shown = route_entry(&entry, &[]);
        assert_eq!(shown.next_hop, Some("10.3.0.1".parse().unwrap()));
        assert_eq!(shown.as_path, "65010 65020");
        assert_eq!(shown.communities, ["65010:42"]);
        assert_eq!(shown.large_communities, ["65010:1:2"]);
        assert_eq!(shown.origin, "incomplete");
        assert_eq!((shown.local_pref, shown.med), (Some(200), Some(5)));
        assert_eq!(shown.learnt_from, "beta");
        assert!(shown.best && !shown.kernel);

        let own = RouteEntry {
            from: None,
            path: Path {
                next_hop: "0.0.0.0".parse().unwrap(),
                ..entry.path.clone()
            },
            ..entry
        };
        let shown = route_entry(&own, &[]);
        assert_eq!(
            (shown.next_hop, shown.learnt_from.as_str()),
            (None, "local")
        );
    }
}
