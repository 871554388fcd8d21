//! The speaker core without sockets: sessions driven by scripted messages, collision
//! resolution, neighbour removal, and two cores wired to each other in memory exchanging
//! routes. The tokio shell around it is tested over real TCP in agent/tests/bgp_speaker.rs.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use meshd_bgp::fsm::{SessionConfig, State};
use meshd_bgp::neighbor::NeighborConfig;
use meshd_bgp::packet::{
    AsPath, CodecOptions, Family, Message, Notification, Origin, PathAttributes, Update,
    cease_subcodes,
};
use meshd_bgp::policy::Policy;
use meshd_bgp::rib::{Path, PeerId};
use meshd_bgp::speaker::{ConnEvent, ConnId, Output, SpeakerCore};

const CODEC: CodecOptions = CodecOptions {
    four_octet_as: true,
};

fn neighbor(name: &str, address: &str, asn: u32) -> NeighborConfig {
    NeighborConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        port: 179,
        remote_asn: asn,
        local_address: None,
        passive: false,
        import: Policy::accept_all(),
        export: Policy::accept_all(),
        rr_client: false,
        next_hop_v4: None,
        next_hop_v6: None,
        next_hop_self: meshd_bgp::neighbor::NextHopSelf::Never,
        default_only: false,
        hold_time: 90,
        connect_retry: Duration::from_secs(5),
        families: Family::ALL.to_vec(),
        md5_key: None,
        ttl: None,
    }
}

fn drain(core: &mut SpeakerCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(bytes, CODEC).expect("the core sends valid messages")
}

/// The messages sent on `conn` among `outputs`.
fn sent_on(outputs: &[Output], conn: ConnId) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, bytes } if *c == conn => Some(decode(bytes)),
            _ => None,
        })
        .collect()
}

fn closed(outputs: &[Output], conn: ConnId) -> bool {
    outputs.contains(&Output::Close { conn })
}

fn open_from(asn: u32, id: Ipv4Addr) -> Message {
    Message::Open(
        SessionConfig {
            local_asn: asn,
            remote_asn: 65001,
            bgp_id: id,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            passive: false,
            families: Family::ALL.to_vec(),
        }
        .open(),
    )
}

fn cease_collision() -> Message {
    Message::Notification(Notification::cease(cease_subcodes::CONNECTION_COLLISION))
}

const A_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const A_ADDR: &str = "198.51.100.11";
const B_ADDR: &str = "198.51.100.12";

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Core A (AS 65001) with one eBGP neighbour B (AS 65002), started, its connection attempt
/// made and succeeded: A has sent its OPEN on the returned connection.
fn a_connected(now: Instant) -> (SpeakerCore, PeerId, ConnId) {
    let mut a = SpeakerCore::new(65001, A_ID, &[neighbor("b", B_ADDR, 65002)]).unwrap();
    a.start(now);
    let out = drain(&mut a);
    let [
        Output::Connect {
            peer, conn, remote, ..
        },
    ] = out[..]
    else {
        panic!("one connection attempt expected: {out:?}");
    };
    assert_eq!(remote, sock(B_ADDR, 179));
    a.connected(peer, conn, sock(A_ADDR, 40001), now);
    let out = drain(&mut a);
    assert_eq!(
        out[0],
        Output::Attach {
            peer,
            conn,
            ttl: None
        }
    );
    assert!(matches!(sent_on(&out, conn)[..], [Message::Open(_)]));
    (a, peer, conn)
}

/// [`a_connected`] taken on to Established by B's OPEN and KEEPALIVE.
fn a_established(now: Instant) -> (SpeakerCore, PeerId, ConnId) {
    let (mut a, peer, conn) = a_connected(now);
    let b_id = Ipv4Addr::new(198, 51, 100, 12);
    a.received(peer, conn, ConnEvent::Message(open_from(65002, b_id)), now);
    a.received(peer, conn, ConnEvent::Message(Message::Keepalive), now);
    let out = drain(&mut a);
    assert_eq!(a.sessions()[0].state, State::Established, "{out:?}");
    (a, peer, conn)
}

fn update_from_b(prefix: &str, path: Vec<u32>) -> Message {
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(path)),
        next_hop: Some(B_ADDR.parse().unwrap()),
        ..PathAttributes::default()
    };
    let prefix: IpNet = prefix.parse().unwrap();
    let IpNet::V4(v4) = prefix else {
        panic!("IPv4 only here")
    };
    Message::Update(Update {
        attributes: attrs,
        nlri: vec![v4],
        ..Update::default()
    })
}

#[test]
fn a_session_comes_up_and_learns_a_route() {
    let now = Instant::now();
    let (mut a, peer, conn) = a_connected(now);
    let b_id = Ipv4Addr::new(198, 51, 100, 12);
    a.received(peer, conn, ConnEvent::Message(open_from(65002, b_id)), now);
    let out = drain(&mut a);
    assert_eq!(sent_on(&out, conn), vec![Message::Keepalive]);
    a.received(peer, conn, ConnEvent::Message(Message::Keepalive), now);
    let out = drain(&mut a);
    // Nothing to announce yet: End-of-RIB for both families.
    let eor: Vec<Message> = Family::ALL
        .iter()
        .map(|f| Message::Update(Update::end_of_rib(*f)))
        .collect();
    assert_eq!(sent_on(&out, conn), eor);

    let update = update_from_b("10.2.0.0/16", vec![65002]);
    a.received(peer, conn, ConnEvent::Message(update), now);
    let out = drain(&mut a);
    let best: Vec<&Output> = out
        .iter()
        .filter(|o| matches!(o, Output::Best(_)))
        .collect();
    let [Output::Best(change)] = best[..] else {
        panic!("one best-route change expected: {out:?}");
    };
    assert_eq!(change.prefix, "10.2.0.0/16".parse::<IpNet>().unwrap());
    let path = change.best.as_ref().expect("a route");
    assert_eq!((path.peer, path.next_hop), (peer, B_ADDR.parse().unwrap()));
    assert_eq!(a.best_routes().len(), 1);

    // A connection from an address that is no neighbour is not attached.
    a.incoming(sock("203.0.113.9", 50000), sock(A_ADDR, 179), now);
    assert!(drain(&mut a).is_empty());

    // The connection drops: the route goes, the session retries after connect-retry.
    a.received(peer, conn, ConnEvent::Closed, now);
    let out = drain(&mut a);
    assert!(closed(&out, conn), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Best(c) if c.best.is_none()))
    );
    assert!(a.best_routes().is_empty());
    let retry = a.next_deadline().expect("a connect-retry timer");
    a.tick(retry);
    let out = drain(&mut a);
    assert!(
        matches!(out[..], [Output::Connect { conn: next, .. }] if next != conn),
        "{out:?}"
    );
}

#[test]
fn a_collision_keeps_the_connection_of_the_higher_identifier() {
    let now = Instant::now();
    for (b_id, keep_ours) in [
        (Ipv4Addr::new(198, 51, 100, 1), true),
        (Ipv4Addr::new(198, 51, 100, 200), false),
    ] {
        let (mut a, peer, ours) = a_connected(now);
        // B's own connection arrives while A waits for B's OPEN on its own.
        a.incoming(sock(B_ADDR, 50000), sock(A_ADDR, 179), now);
        let out = drain(&mut a);
        let [Output::Attach { conn: theirs, .. }] = out[..] else {
            panic!("the second connection is attached: {out:?}");
        };
        a.received(
            peer,
            theirs,
            ConnEvent::Message(open_from(65002, b_id)),
            now,
        );
        let out = drain(&mut a);
        let (loser, winner) = if keep_ours {
            (theirs, ours)
        } else {
            (ours, theirs)
        };
        assert_eq!(
            sent_on(&out, loser),
            vec![cease_collision()],
            "{b_id}: {out:?}"
        );
        assert!(
            closed(&out, loser) && !closed(&out, winner),
            "{b_id}: {out:?}"
        );
        if !keep_ours {
            // The kept connection starts over: our OPEN, then (B's OPEN was already seen)
            // a KEEPALIVE.
            let sent = sent_on(&out, winner);
            assert!(
                matches!(sent[..], [Message::Open(_), Message::Keepalive]),
                "{sent:?}"
            );
        }
        // Ours kept: B's OPEN on it is still to come.
        let state = if keep_ours {
            State::OpenSent
        } else {
            State::OpenConfirm
        };
        assert_eq!(a.sessions()[0].state, state, "{b_id}");
        // Reports from the closed connection change nothing.
        a.received(peer, loser, ConnEvent::Closed, now);
        assert!(drain(&mut a).is_empty());
    }
}

#[test]
fn removing_a_neighbour_ceases_its_session_and_withdraws_its_routes() {
    let now = Instant::now();
    let (mut a, peer, conn) = a_established(now);
    a.received(
        peer,
        conn,
        ConnEvent::Message(update_from_b("10.2.0.0/16", vec![65002])),
        now,
    );
    drain(&mut a);
    a.remove_neighbor(B_ADDR.parse().unwrap(), now);
    let out = drain(&mut a);
    let sent = sent_on(&out, conn);
    assert!(
        matches!(&sent[..], [Message::Notification(n)] if n.code == 6),
        "{sent:?}"
    );
    assert!(closed(&out, conn));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Best(c) if c.best.is_none()))
    );
    assert!(a.sessions().is_empty() && a.best_routes().is_empty());
}

/// Two cores and the connections between them, carried out in the order the cores asked.
struct Wire {
    nodes: Vec<(IpAddr, SpeakerCore)>,
    /// (node, connection) to (other node, its peer id for us, its connection).
    links: HashMap<(usize, ConnId), (usize, PeerId, ConnId)>,
    queue: VecDeque<(usize, Output)>,
    now: Instant,
}

impl Wire {
    fn node(&self, ip: IpAddr) -> usize {
        self.nodes.iter().position(|(a, _)| *a == ip).unwrap()
    }

    fn collect(&mut self, n: usize) -> Vec<Output> {
        let out = drain(&mut self.nodes[n].1);
        self.queue.extend(out.iter().cloned().map(|o| (n, o)));
        out
    }

    fn attached(out: &[Output]) -> Option<(PeerId, ConnId)> {
        out.iter().find_map(|o| match o {
            Output::Attach { peer, conn, .. } => Some((*peer, *conn)),
            _ => None,
        })
    }

    /// Carries out everything until the cores are quiet.
    fn settle(&mut self) {
        while let Some((n, output)) = self.queue.pop_front() {
            let now = self.now;
            match output {
                Output::Connect {
                    peer, conn, remote, ..
                } => {
                    let m = self.node(remote.ip());
                    let from = SocketAddr::new(self.nodes[n].0, 40000 + conn as u16);
                    self.nodes[m].1.incoming(from, remote, now);
                    let accepted = Self::attached(&self.collect(m));
                    match accepted {
                        Some((m_peer, m_conn)) => {
                            self.nodes[n].1.connected(peer, conn, from, now);
                            self.links.insert((n, conn), (m, m_peer, m_conn));
                            self.links.insert((m, m_conn), (n, peer, conn));
                        }
                        None => self.nodes[n].1.connect_failed(peer, conn, &"refused", now),
                    }
                    self.collect(n);
                }
                Output::Send { conn, bytes } => {
                    if let Some(&(m, peer, m_conn)) = self.links.get(&(n, conn)) {
                        let event = ConnEvent::Message(decode(&bytes));
                        self.nodes[m].1.received(peer, m_conn, event, now);
                        self.collect(m);
                    }
                }
                Output::Close { conn } => {
                    if let Some((m, peer, m_conn)) = self.links.remove(&(n, conn)) {
                        self.links.remove(&(m, m_conn));
                        self.nodes[m]
                            .1
                            .received(peer, m_conn, ConnEvent::Closed, now);
                        self.collect(m);
                    }
                }
                Output::Attach { .. } | Output::ListenerKey { .. } | Output::Best(_) => {}
            }
        }
    }
}

#[test]
fn two_cores_exchange_routes_over_an_in_memory_wire() {
    let now = Instant::now();
    let mut to_a = neighbor("a", A_ADDR, 65001);
    to_a.passive = true;
    to_a.import = Policy::accept_prefixes(vec!["10.0.0.0/8 le 24".parse().unwrap()]);
    let a = SpeakerCore::new(65001, A_ID, &[neighbor("b", B_ADDR, 65002)]).unwrap();
    let b = SpeakerCore::new(65002, Ipv4Addr::new(198, 51, 100, 12), &[to_a]).unwrap();
    let mut wire = Wire {
        nodes: vec![(A_ADDR.parse().unwrap(), a), (B_ADDR.parse().unwrap(), b)],
        links: HashMap::new(),
        queue: VecDeque::new(),
        now,
    };
    for n in 0..2 {
        wire.nodes[n].1.start(now);
        wire.collect(n);
    }
    wire.settle();
    for (_, core) in &wire.nodes {
        assert_eq!(core.sessions()[0].state, State::Established);
    }

    wire.nodes[0].1.originate("10.1.0.0/16".parse().unwrap());
    wire.nodes[0].1.originate("192.0.2.0/24".parse().unwrap());
    wire.collect(0);
    wire.settle();
    let b_routes: Vec<(IpNet, Path)> = wire.nodes[1].1.best_routes();
    assert_eq!(
        b_routes.len(),
        1,
        "import policy keeps 192.0.2.0/24 out: {b_routes:?}"
    );
    let (prefix, path) = &b_routes[0];
    assert_eq!(*prefix, "10.1.0.0/16".parse::<IpNet>().unwrap());
    assert_eq!(
        path.next_hop,
        A_ADDR.parse::<IpAddr>().unwrap(),
        "eBGP: next hop self"
    );
    assert_eq!(path.attrs.as_path, Some(AsPath::from_sequence(vec![65001])));

    wire.nodes[0].1.withdraw("10.1.0.0/16".parse().unwrap());
    wire.collect(0);
    wire.settle();
    assert!(wire.nodes[1].1.best_routes().is_empty());
}

#[test]
fn usable_paths_follow_the_next_hops_reachability() {
    let now = Instant::now();
    let (mut a, peer, conn) = a_established(now);
    let default: IpNet = "0.0.0.0/0".parse().unwrap();
    assert!(a.usable_paths(&default).is_empty());
    a.received(
        peer,
        conn,
        ConnEvent::Message(update_from_b("0.0.0.0/0", vec![65002])),
        now,
    );
    drain(&mut a);
    let next_hop: IpAddr = B_ADDR.parse().unwrap();
    a.set_igp_cost(next_hop, Some(12));
    let usable = a.usable_paths(&default);
    assert_eq!(usable.len(), 1);
    assert_eq!(usable[0].igp_cost, 12);
    assert!(usable[0].entry.best);
    assert_eq!(usable[0].entry.path.next_hop, next_hop);
    assert_eq!(
        usable[0].entry.from.as_ref().map(|f| f.address),
        Some(next_hop)
    );
    a.set_igp_cost(next_hop, None);
    assert!(a.usable_paths(&default).is_empty(), "next hop unreachable");
}

#[test]
fn sessions_count_accepted_and_refused_routes_until_the_session_ends() {
    use meshd_bgp::refusals::Kind;
    let now = Instant::now();
    let (mut a, peer, conn) = a_established(now);
    let count = |a: &SpeakerCore| {
        let s = &a.sessions()[0];
        (s.accepted, s.refused.clone())
    };
    // The same looping route in ten UPDATEs is one refused prefix; another one is accepted.
    for _ in 0..10 {
        let looped = update_from_b("192.168.50.0/24", vec![65002, 65001]);
        a.received(peer, conn, ConnEvent::Message(looped), now);
    }
    let good = update_from_b("192.168.51.0/24", vec![65002]);
    a.received(peer, conn, ConnEvent::Message(good), now);
    drain(&mut a);
    assert_eq!(count(&a), (1, vec![(Kind::AsLoop, 1)]));
    assert_eq!(a.sessions()[0].refused_total(), 1);
    // The accepted route comes back looped: it leaves the RIB and counts as refused.
    let looped = update_from_b("192.168.51.0/24", vec![65002, 65001]);
    a.received(peer, conn, ConnEvent::Message(looped), now);
    drain(&mut a);
    assert!(a.best_routes().is_empty());
    assert_eq!(count(&a), (0, vec![(Kind::AsLoop, 2)]));
    // A withdrawal takes a refused prefix out of the count.
    let withdraw = Message::Update(Update {
        withdrawn: vec!["192.168.50.0/24".parse().unwrap()],
        ..Update::default()
    });
    a.received(peer, conn, ConnEvent::Message(withdraw), now);
    drain(&mut a);
    assert_eq!(count(&a), (0, vec![(Kind::AsLoop, 1)]));
    // A new session starts from nothing.
    a.received(peer, conn, ConnEvent::Closed, now);
    drain(&mut a);
    assert_eq!(count(&a), (0, vec![]));
}

/// A default-only neighbour gets 0.0.0.0/0 and ::/0 from us at session start and nothing of
/// the RIB, then or later; what it announces is learnt as usual.
#[test]
fn a_default_only_neighbour_gets_the_default_routes_and_nothing_else() {
    let now = Instant::now();
    let mut config = neighbor("b", B_ADDR, 65002);
    config.default_only = true;
    config.next_hop_v6 = Some("2001:db8::1".parse().unwrap());
    let mut a = SpeakerCore::new(65001, A_ID, &[config]).unwrap();
    a.originate("10.9.0.0/16".parse().unwrap());
    a.start(now);
    let out = drain(&mut a);
    let Some((peer, conn)) = out.iter().find_map(|o| match o {
        Output::Connect { peer, conn, .. } => Some((*peer, *conn)),
        _ => None,
    }) else {
        panic!("a connection attempt expected: {out:?}");
    };
    a.connected(peer, conn, sock(A_ADDR, 40001), now);
    drain(&mut a);
    let b_id = Ipv4Addr::new(198, 51, 100, 12);
    a.received(peer, conn, ConnEvent::Message(open_from(65002, b_id)), now);
    a.received(peer, conn, ConnEvent::Message(Message::Keepalive), now);
    let out = drain(&mut a);
    let announced = |messages: &[Message]| -> Vec<IpNet> {
        let mut prefixes = Vec::new();
        for message in messages {
            if let Message::Update(update) = message {
                prefixes.extend(update.nlri.iter().map(|p| IpNet::V4(*p)));
                if let Some(reach) = &update.mp_reach {
                    prefixes.extend(reach.nlri.iter().copied());
                }
            }
        }
        prefixes
    };
    let sent = sent_on(&out, conn);
    // One UPDATE per family, in no particular order.
    let mut defaults = announced(&sent);
    defaults.sort();
    assert_eq!(
        defaults,
        ["0.0.0.0/0", "::/0"].map(|p| p.parse::<IpNet>().unwrap()),
        "{sent:?}"
    );
    let first = sent.iter().find_map(|m| match m {
        Message::Update(u) if !u.nlri.is_empty() => Some(u.attributes.next_hop),
        _ => None,
    });
    assert_eq!(
        first,
        Some(Some(A_ADDR.parse().unwrap())),
        "our address as next hop"
    );

    // Later changes of the RIB are not passed on; B's own routes are learnt.
    a.originate("10.8.0.0/16".parse().unwrap());
    a.received(
        peer,
        conn,
        ConnEvent::Message(update_from_b("10.2.0.0/16", vec![65002])),
        now,
    );
    let out = drain(&mut a);
    assert!(announced(&sent_on(&out, conn)).is_empty(), "{out:?}");
    assert!(
        a.best_routes()
            .iter()
            .any(|(prefix, _)| *prefix == "10.2.0.0/16".parse::<IpNet>().unwrap())
    );
}
