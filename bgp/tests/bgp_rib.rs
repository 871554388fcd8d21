//! RIB, best path, export rules and import checks: data-file best-path cases and
//! focused tests of each rule.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use meshd_bgp::import::{Refusal, RibOp, import_update};
use meshd_bgp::packet::*;
use meshd_bgp::policy::{Policy, Rejection};
use meshd_bgp::rib::export::{LocalInfo, export_path};
use meshd_bgp::rib::out::{AdjRibOut, Advertised, OutChange, pack_updates, resolve_next_hop};
use meshd_bgp::rib::{LOCAL, Path, PeerId, PeerInfo, Rib};
use serde::Deserialize;

const PEERS: [(&str, PeerId, &str, u32, &str, bool); 6] = [
    ("ebgp1", 1, "198.51.100.2", 65010, "198.51.100.2", false),
    ("ebgp2", 2, "198.51.100.3", 65020, "198.51.100.3", false),
    ("ebgp3", 3, "198.51.100.4", 65010, "198.51.100.4", false),
    ("ibgp1", 4, "10.1.0.1", 65000, "10.1.0.1", true),
    ("ibgp2", 5, "10.2.0.1", 65000, "10.2.0.1", true),
    ("ibgp3", 6, "10.3.0.1", 65000, "10.1.0.1", true),
];

fn peer_info(internal: bool, addr: &str, asn: u32, id: &str) -> PeerInfo {
    PeerInfo {
        address: addr.parse().unwrap(),
        asn,
        bgp_id: id.parse().unwrap(),
        internal,
        rr_client: false,
    }
}

fn rib_with_peers() -> (Rib, HashMap<&'static str, PeerId>) {
    let mut rib = Rib::new();
    let mut ids = HashMap::new();
    for (name, id, addr, asn, bgp_id, internal) in PEERS {
        rib.add_peer(id, peer_info(internal, addr, asn, bgp_id));
        ids.insert(name, id);
    }
    ids.insert("local", LOCAL);
    (rib, ids)
}

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    expect: String,
    path: Vec<PathSpec>,
    /// The multipath group, in order, with `max_paths` (default 8); unchecked when absent.
    group: Option<Vec<String>>,
    max_paths: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathSpec {
    peer: String,
    path: Vec<u32>,
    lp: Option<u32>,
    origin: Option<String>,
    med: Option<u32>,
    next_hop: Option<IpAddr>,
    cost: Option<i64>,
    originator: Option<Ipv4Addr>,
    cluster_len: Option<usize>,
}

fn prefix() -> IpNet {
    "192.168.50.0/24".parse().unwrap()
}

#[test]
fn best_path_cases_from_data_file() {
    let cases: Cases =
        toml::from_str(include_str!("data/bgp/best_path_cases.toml")).expect("parses");
    assert!(cases.case.len() >= 14);
    let mut failures = Vec::new();
    for case in &cases.case {
        let (mut rib, ids) = rib_with_peers();
        for spec in &case.path {
            let id = ids[spec.peer.as_str()];
            let next_hop = spec.next_hop.unwrap_or_else(|| {
                rib.peer(id)
                    .map_or("192.0.2.1".parse().unwrap(), |p| p.address)
            });
            if let Some(cost) = spec.cost {
                rib.set_igp_cost(next_hop, u32::try_from(cost).ok());
            }
            let attrs = PathAttributes {
                origin: Some(match spec.origin.as_deref() {
                    None | Some("igp") => Origin::Igp,
                    Some("egp") => Origin::Egp,
                    Some("incomplete") => Origin::Incomplete,
                    Some(other) => panic!("origin {other}"),
                }),
                as_path: Some(AsPath::from_sequence(spec.path.iter().copied())),
                local_pref: spec.lp,
                med: spec.med,
                originator_id: spec.originator,
                cluster_list: vec![Ipv4Addr::new(10, 0, 0, 9); spec.cluster_len.unwrap_or(0)],
                ..PathAttributes::default()
            };
            rib.announce(
                prefix(),
                Path {
                    peer: id,
                    next_hop,
                    attrs: Arc::new(attrs),
                },
            );
        }
        let name_of = |peer: PeerId| ids.iter().find(|(_, id)| **id == peer).map(|(n, _)| *n);
        let winner = rib.best(&prefix()).map(|p| p.peer);
        let name = winner.and_then(name_of);
        if name != Some(case.expect.as_str()) {
            failures.push(format!(
                "{}: expected {}, got {:?}",
                case.name, case.expect, name
            ));
        }
        // The choice must not depend on the order paths arrived in.
        let (mut rib2, _) = rib_with_peers();
        for p in rib.paths(&prefix()).iter().rev() {
            rib2.announce(prefix(), (**p).clone());
        }
        for spec in &case.path {
            if let Some(cost) = spec.cost {
                let id = ids[spec.peer.as_str()];
                let nh = rib.peer(id).map(|p| p.address).unwrap();
                rib2.set_igp_cost(nh, u32::try_from(cost).ok());
            }
        }
        if rib2.best(&prefix()).map(|p| p.peer) != winner {
            failures.push(format!("{}: depends on arrival order", case.name));
        }
        if let Some(expected) = &case.group {
            let max_paths = case.max_paths.unwrap_or(8);
            let group_of = |rib: &mut Rib| {
                rib.set_max_paths(max_paths);
                let group: Vec<&str> = rib
                    .multipath(&prefix())
                    .iter()
                    .filter_map(|p| name_of(p.peer))
                    .collect();
                (group.join(" "), rib.best(&prefix()).map(|p| p.peer))
            };
            let (group, best) = group_of(&mut rib);
            if group != expected.join(" ") {
                failures.push(format!(
                    "{}: expected group [{}], got [{group}]",
                    case.name,
                    expected.join(" ")
                ));
            }
            if best != winner {
                failures.push(format!("{}: multipath moved the best path", case.name));
            }
            if group_of(&mut rib2).0 != group {
                failures.push(format!("{}: group depends on arrival order", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn path(peer: PeerId, nh: &str, asns: &[u32]) -> Path {
    Path {
        peer,
        next_hop: nh.parse().unwrap(),
        attrs: Arc::new(PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(asns.iter().copied())),
            ..PathAttributes::default()
        }),
    }
}

#[test]
fn changes_are_reported_only_when_the_best_path_changes() {
    let (mut rib, _) = rib_with_peers();
    let a = path(1, "198.51.100.2", &[65010]);
    let b = path(2, "198.51.100.3", &[65020, 1]);
    let c1 = rib
        .announce(prefix(), a.clone())
        .expect("first path is best");
    assert_eq!(c1.best.as_ref(), Some(&a));
    assert_eq!(
        rib.announce(prefix(), b.clone()),
        None,
        "worse path: no change"
    );
    assert_eq!(
        rib.announce(prefix(), a.clone()),
        None,
        "same path again: no change"
    );
    let c2 = rib.withdraw(1, prefix()).expect("best withdrawn");
    assert_eq!(c2.best, Some(b));
    let c3 = rib.remove_peer(2);
    assert_eq!(c3.len(), 1);
    assert_eq!(c3[0].best, None);
    assert!(rib.is_empty());
}

#[test]
fn igp_cost_changes_move_the_best_path() {
    let (mut rib, _) = rib_with_peers();
    rib.announce(prefix(), path(4, "10.1.0.1", &[65020]));
    rib.announce(prefix(), path(5, "10.2.0.1", &[65020]));
    assert_eq!(rib.best(&prefix()).unwrap().peer, 4);
    let changes = rib.set_igp_cost("10.1.0.1".parse().unwrap(), Some(50));
    assert_eq!(changes.len(), 1);
    assert_eq!(rib.best(&prefix()).unwrap().peer, 5);
    let changes = rib.set_igp_cost("10.2.0.1".parse().unwrap(), None);
    assert_eq!(changes[0].best.as_ref().unwrap().peer, 4);
    assert!(
        rib.set_igp_cost("10.2.0.1".parse().unwrap(), None)
            .is_empty()
    );
}

#[test]
fn candidates_are_the_paths_with_a_reachable_next_hop_and_their_costs() {
    let (mut rib, _) = rib_with_peers();
    let default: IpNet = "0.0.0.0/0".parse().unwrap();
    assert!(rib.candidates(&default).is_empty(), "no paths");
    rib.announce(default, path(4, "10.1.0.1", &[]));
    rib.announce(default, path(5, "10.2.0.1", &[]));
    // A path from a session the RIB does not know is never selected, so it is no candidate.
    rib.announce(default, path(9, "10.9.0.1", &[]));
    rib.set_igp_cost("10.1.0.1".parse().unwrap(), Some(30));
    rib.set_igp_cost("10.2.0.1".parse().unwrap(), Some(10));
    let listed = |rib: &Rib| {
        let mut all: Vec<(PeerId, u32)> = rib
            .candidates(&default)
            .iter()
            .map(|(p, cost)| (p.peer, *cost))
            .collect();
        all.sort_unstable();
        all
    };
    assert_eq!(listed(&rib), [(4, 30), (5, 10)], "the runner-up too");
    assert_eq!(rib.best(&default).unwrap().peer, 5);
    rib.set_igp_cost("10.2.0.1".parse().unwrap(), None);
    assert_eq!(
        listed(&rib),
        [(4, 30)],
        "an unreachable next hop is left out"
    );
    assert_eq!(rib.best(&default).unwrap().peer, 4);
}

fn local() -> LocalInfo {
    LocalInfo {
        asn: 65000,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        cluster_id: Ipv4Addr::new(10, 0, 0, 1),
    }
}

#[test]
fn route_reflection_rules() {
    let client = PeerInfo {
        rr_client: true,
        ..peer_info(true, "10.1.0.1", 65000, "10.1.0.1")
    };
    let non_client = peer_info(true, "10.2.0.1", 65000, "10.2.0.1");
    let other_non_client = peer_info(true, "10.3.0.1", 65000, "10.3.0.1");
    let from_client = path(4, "10.1.0.1", &[65020]);
    let from_non_client = path(5, "10.2.0.1", &[65020]);
    // Client routes go to non-clients, with ORIGINATOR_ID and our cluster id.
    let (nh, attrs) =
        export_path(&local(), 6, &other_non_client, &from_client, Some(&client)).unwrap();
    assert_eq!(nh, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(attrs.originator_id, Some(Ipv4Addr::new(10, 1, 0, 1)));
    assert_eq!(attrs.cluster_list, vec![Ipv4Addr::new(10, 0, 0, 1)]);
    // Non-client routes go to clients but not to other non-clients.
    assert!(export_path(&local(), 4, &client, &from_non_client, Some(&non_client)).is_some());
    assert!(
        export_path(
            &local(),
            6,
            &other_non_client,
            &from_non_client,
            Some(&non_client)
        )
        .is_none()
    );
    // Never back to the peer it came from.
    assert!(export_path(&local(), 4, &client, &from_client, Some(&client)).is_none());
}

#[test]
fn ebgp_export_rewrites_attributes() {
    let to = peer_info(false, "198.51.100.2", 65010, "198.51.100.2");
    let mut p = path(5, "10.2.0.1", &[65020]);
    p.attrs = Arc::new(PathAttributes {
        local_pref: Some(300),
        med: Some(7),
        originator_id: Some(Ipv4Addr::new(10, 9, 9, 9)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 1)],
        ..(*p.attrs).clone()
    });
    let from = peer_info(true, "10.2.0.1", 65000, "10.2.0.1");
    let (nh, attrs) = export_path(&local(), 1, &to, &p, Some(&from)).unwrap();
    assert_eq!(nh, None, "next hop self");
    assert_eq!(attrs.as_path.unwrap().to_string(), "65000 65020");
    assert_eq!(attrs.local_pref, None);
    assert_eq!(attrs.med, None);
    assert_eq!(attrs.originator_id, None);
    assert!(attrs.cluster_list.is_empty());
}

#[test]
fn well_known_communities_limit_export() {
    use meshd_bgp::rib::export::{NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED};
    let external = peer_info(false, "198.51.100.2", 65010, "198.51.100.2");
    let internal = peer_info(true, "10.3.0.1", 65000, "10.3.0.1");
    let from = peer_info(false, "198.51.100.3", 65020, "198.51.100.3");
    let tagged = |c: u32| {
        let mut p = path(2, "198.51.100.3", &[65020]);
        p.attrs = Arc::new(PathAttributes {
            communities: vec![c],
            ..(*p.attrs).clone()
        });
        p
    };
    for c in [NO_EXPORT, NO_EXPORT_SUBCONFED] {
        assert!(export_path(&local(), 1, &external, &tagged(c), Some(&from)).is_none());
        assert!(export_path(&local(), 6, &internal, &tagged(c), Some(&from)).is_some());
    }
    assert!(export_path(&local(), 1, &external, &tagged(NO_ADVERTISE), Some(&from)).is_none());
    assert!(export_path(&local(), 6, &internal, &tagged(NO_ADVERTISE), Some(&from)).is_none());
    assert!(export_path(&local(), 1, &external, &tagged(0xFDE8_0001), Some(&from)).is_some());
}

fn ebgp_update(asns: &[u32]) -> Update {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(asns.iter().copied())),
            next_hop: Some(Ipv4Addr::new(198, 51, 100, 2)),
            local_pref: Some(999),
            ..PathAttributes::default()
        },
        nlri: vec!["192.168.50.0/24".parse().unwrap()],
        withdrawn: vec!["192.168.51.0/24".parse().unwrap()],
        ..Update::default()
    }
}

#[test]
fn import_checks() {
    let peer = peer_info(false, "198.51.100.2", 65010, "198.51.100.2");
    let all = Policy::accept_all();
    let ok = import_update(&local(), 1, &peer, &all, &ebgp_update(&[65010]));
    assert_eq!(ok.refused, None);
    assert_eq!(
        ok.ops[0],
        RibOp::Withdraw("192.168.51.0/24".parse().unwrap())
    );
    let RibOp::Announce(_, p) = &ok.ops[1] else {
        panic!("announce expected")
    };
    assert_eq!(p.attrs.local_pref, None, "LOCAL_PREF from eBGP discarded");
    let wrong_first = import_update(&local(), 1, &peer, &all, &ebgp_update(&[65020]));
    assert_eq!(wrong_first.refused, Some(Refusal::FirstAsNotNeighbor));
    assert_eq!(
        wrong_first.ops[1],
        RibOp::Refuse(prefix(), Refusal::FirstAsNotNeighbor)
    );
    let looped = import_update(&local(), 1, &peer, &all, &ebgp_update(&[65010, 65000]));
    assert_eq!(looped.refused, Some(Refusal::AsLoop));
    let mut malformed = ebgp_update(&[65010]);
    malformed.problems.push(AttrProblem {
        type_code: 1,
        action: ErrorAction::TreatAsWithdraw,
        what: "test",
    });
    assert_eq!(
        import_update(&local(), 1, &peer, &all, &malformed).refused,
        Some(Refusal::Malformed)
    );
    let denied = import_update(
        &local(),
        1,
        &peer,
        &Policy::reject_all(),
        &ebgp_update(&[65010]),
    );
    assert_eq!(denied.rejected_by_policy, 1);
    assert_eq!(
        denied.ops[1],
        RibOp::Refuse(prefix(), Refusal::Policy(Rejection::Default))
    );
    let ibgp = peer_info(true, "10.2.0.1", 65000, "10.2.0.1");
    let mut reflected = ebgp_update(&[65010]);
    reflected.attributes.cluster_list = vec![local().cluster_id];
    assert_eq!(
        import_update(&local(), 5, &ibgp, &all, &reflected).refused,
        Some(Refusal::ReflectionLoop)
    );
}

#[test]
fn adj_rib_out_sends_only_changes_and_packs_into_valid_updates() {
    let mut out = AdjRibOut::new();
    let attrs = Arc::new(PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([65000])),
        ..PathAttributes::default()
    });
    let v4 = Advertised {
        next_hop: NextHop::V4(Ipv4Addr::new(198, 51, 100, 1)),
        attrs: attrs.clone(),
    };
    let v6 = Advertised {
        next_hop: NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        },
        attrs,
    };
    let mut changes = Vec::new();
    for i in 0..3000u32 {
        let p4 =
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap());
        changes.extend(out.set(p4, Some(v4.clone())));
        let p6: IpNet = format!("2001:db8:{:x}::/48", i).parse().unwrap();
        changes.extend(out.set(p6, Some(v6.clone())));
    }
    assert_eq!(changes.len(), 6000);
    assert_eq!(
        out.set("10.0.0.0/24".parse().unwrap(), Some(v4.clone())),
        None
    );
    changes.push(out.set("10.0.1.0/24".parse().unwrap(), None).unwrap());
    assert!(matches!(changes.last(), Some(OutChange::Withdraw(_))));
    let updates = pack_updates(changes);
    assert!(updates.len() > 2, "split into several messages");
    let mut announced = 0;
    for u in updates {
        let bytes = Message::Update(u)
            .encode(CodecOptions::default())
            .expect("fits 4096 octets");
        let Message::Update(back) = Message::decode(&bytes, CodecOptions::default()).unwrap()
        else {
            panic!()
        };
        assert!(!back.treat_as_withdraw());
        announced += back.announced().count();
    }
    assert_eq!(announced, 6000);
}

#[test]
fn next_hop_resolution() {
    let v4: IpNet = "192.168.50.0/24".parse().unwrap();
    let v6: IpNet = "2001:db8:42::/48".parse().unwrap();
    let a4 = Ipv4Addr::new(198, 51, 100, 1);
    let s4 = Some(a4);
    let s6 = Some("2001:db8::1".parse().unwrap());
    assert_eq!(
        resolve_next_hop(&v4, None, s4, s6, false),
        Some(NextHop::V4(a4))
    );
    assert!(matches!(
        resolve_next_hop(&v6, None, s4, s6, false),
        Some(NextHop::V6 { .. })
    ));
    assert!(matches!(
        resolve_next_hop(&v4, None, None, s6, true),
        Some(NextHop::V6 { .. })
    ));
    assert_eq!(resolve_next_hop(&v4, None, None, s6, false), None);
}

#[test]
fn a_change_of_the_multipath_group_alone_is_reported() {
    let (mut rib, _) = rib_with_peers();
    let a = path(4, "10.1.0.1", &[65020]);
    let b = path(5, "10.2.0.1", &[65020]);
    rib.announce(prefix(), a.clone());
    assert_eq!(
        rib.announce(prefix(), b.clone()),
        None,
        "max_paths 1: an equal path that is not the best changes nothing"
    );
    let grown = rib.set_max_paths(8);
    assert_eq!(grown.len(), 1);
    assert_eq!(grown[0].best.as_ref(), Some(&a));
    assert_eq!(grown[0].equal, vec![b.clone()]);
    // The second path gets dearer: the group shrinks, the best stays.
    let shrunk = rib.set_igp_cost("10.2.0.1".parse().unwrap(), Some(30));
    assert_eq!(shrunk.len(), 1);
    assert_eq!(shrunk[0].best.as_ref(), Some(&a));
    assert!(shrunk[0].equal.is_empty());
    assert_eq!(rib.multipath(&prefix()), vec![&a]);
    // Equal again, then the best goes: the other is best alone.
    rib.set_igp_cost("10.2.0.1".parse().unwrap(), Some(0));
    assert_eq!(rib.multipath(&prefix()), vec![&a, &b]);
    let gone = rib.withdraw(4, prefix()).expect("best withdrawn");
    assert_eq!((gone.best, gone.equal), (Some(b), Vec::new()));
    assert!(
        rib.set_max_paths(1).is_empty(),
        "one path left: nothing to change"
    );
}

#[test]
fn each_path_says_where_it_stands_in_the_multipath_group() {
    use meshd_bgp::rib::best::Step;
    use meshd_bgp::rib::group::Standing;
    let (mut rib, _) = rib_with_peers();
    rib.set_max_paths(2);
    // Four iBGP paths through three next hops, and one with a lower LOCAL_PREF.
    let a = path(4, "10.1.0.1", &[65020]);
    let b = path(5, "10.2.0.1", &[65020]);
    let c = path(6, "10.3.0.1", &[65020]);
    let mut low = path(1, "198.51.100.9", &[65020]);
    Arc::make_mut(&mut low.attrs).local_pref = Some(50);
    for p in [&a, &b, &c, &low] {
        rib.announce(prefix(), p.clone());
    }
    let standing = |rib: &Rib, p: &Path| {
        rib.standings(&prefix())
            .into_iter()
            .find(|(path, _, _)| *path == p)
            .map(|(_, cost, standing)| (cost, standing))
            .unwrap()
    };
    assert_eq!(standing(&rib, &a), (Some(0), Standing::Best));
    // Of the equals, the lower router id (ibgp3's 10.1.0.1) joins first.
    assert_eq!(standing(&rib, &c), (Some(0), Standing::Equal));
    assert_eq!(
        standing(&rib, &b),
        (Some(0), Standing::MaxPaths),
        "as good, but two is the most"
    );
    assert_eq!(
        standing(&rib, &low),
        (Some(0), Standing::Worse(Step::LocalPref))
    );
    // Dearer, then unreachable.
    rib.set_igp_cost("10.3.0.1".parse().unwrap(), Some(30));
    assert_eq!(
        standing(&rib, &c),
        (Some(30), Standing::Worse(Step::IgpCost))
    );
    assert_eq!(standing(&rib, &b), (Some(0), Standing::Equal));
    rib.set_igp_cost("10.3.0.1".parse().unwrap(), None);
    assert_eq!(standing(&rib, &c), (None, Standing::Unreachable));
    // A second path through a next hop already in the group adds nothing: ibgp3 now
    // announces through ibgp2's next hop, and its lower router id puts it first.
    rib.set_max_paths(8);
    let again = path(6, "10.2.0.1", &[65020]);
    rib.announce(prefix(), again.clone());
    assert_eq!(standing(&rib, &again).1, Standing::Equal);
    assert_eq!(standing(&rib, &b).1, Standing::SameNextHop);
    assert!(Standing::Equal.in_group() && !Standing::SameNextHop.in_group());
}
