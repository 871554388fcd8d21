//! Two meshd speakers over TCP on 127.0.0.x (no root): the session comes up, IPv4 and IPv6
//! routes flow with the right attributes, export policy holds back what it must, a withdrawal
//! arrives, and a restarted peer is reconnected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use meshd::bgp::fsm::State;
use meshd::bgp::guard::{ImportGuard, RouteSource};
use meshd::bgp::packet::{CodecOptions, Family, Message, Notification, Open};
use meshd::bgp::policy::Policy;
use meshd::bgp::rib::BestChange;
use meshd::bgp::speaker::{NeighborConfig, Speaker, SpeakerConfig};
use tokio::sync::mpsc;

mod bgp_support;
use bgp_support::Table;

fn neighbor(name: &str, address: &str, port: u16, asn: u32) -> NeighborConfig {
    NeighborConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        port,
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
        hold_time: 9,
        connect_retry: Duration::from_millis(300),
        families: Family::ALL.to_vec(),
        md5_key: None,
        ttl: None,
    }
}

async fn start_a(port: u16) -> (Speaker, mpsc::UnboundedReceiver<BestChange>) {
    let mut b = neighbor("b", "127.0.0.12", 0, 65002);
    b.passive = true;
    b.next_hop_v6 = Some("2001:db8::11".parse().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let a = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: Ipv4Addr::new(198, 51, 100, 11),
            listen: vec![SocketAddr::new("127.0.0.11".parse().unwrap(), port)],
            neighbors: vec![b],
        },
        tx,
    )
    .await
    .expect("A starts");
    (a, rx)
}

#[tokio::test]
async fn two_speakers_exchange_routes_and_recover_from_a_reset() {
    let (a, _a_routes) = start_a(0).await;
    let port = a.local_addrs()[0].port();
    a.originate("10.1.0.0/16".parse().unwrap());
    a.originate("2001:db8:1::/48".parse().unwrap());

    let mut to_a = neighbor("a", "127.0.0.11", port, 65001);
    to_a.local_address = Some("127.0.0.12".parse().unwrap());
    to_a.import = Policy::accept_prefixes(vec![
        "10.0.0.0/8 le 24".parse().unwrap(),
        "2001:db8::/32 le 64".parse().unwrap(),
    ]);
    to_a.export = Policy::reject_all();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut b_routes = Table::new(rx);
    let b = Speaker::start(
        SpeakerConfig {
            asn: 65002,
            router_id: Ipv4Addr::new(198, 51, 100, 12),
            listen: vec![],
            neighbors: vec![to_a],
        },
        tx,
    )
    .await
    .expect("B starts");
    // B's own route must not reach A: B's export policy rejects everything (RFC 8212).
    b.originate("192.168.9.0/24".parse().unwrap());

    let path = b_routes.wait("10.1.0.0/16", true).await.unwrap();
    assert_eq!(path.next_hop, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)));
    assert_eq!(path.attrs.as_path.as_ref().unwrap().to_string(), "65001");
    let v6 = b_routes.wait("2001:db8:1::/48", true).await.unwrap();
    assert_eq!(v6.next_hop, "2001:db8::11".parse::<IpAddr>().unwrap());

    let sessions = b.sessions().await;
    assert_eq!(sessions[0].state, State::Established);
    let negotiated = sessions[0].negotiated.clone().unwrap();
    assert_eq!(negotiated.hold_time, 9);
    assert!(negotiated.four_octet_as && negotiated.route_refresh);
    assert_eq!(
        sessions[0].advertised, 0,
        "export policy rejected B's route"
    );
    let a_routes = a.routes().await;
    assert!(
        !a_routes
            .iter()
            .any(|(p, _)| *p == "192.168.9.0/24".parse::<IpNet>().unwrap()),
        "A learned a route B's policy should have kept"
    );

    a.withdraw("10.1.0.0/16".parse().unwrap());
    b_routes.wait("10.1.0.0/16", false).await;

    // Reset: A goes away (Cease), B drops A's routes, A comes back on the same port and B
    // reconnects and learns the routes again.
    a.shutdown().await;
    b_routes.wait("2001:db8:1::/48", false).await;
    let (a, _a_routes) = start_a(port).await;
    a.originate("10.1.0.0/16".parse().unwrap());
    b_routes.wait("10.1.0.0/16", true).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Reads one whole message from a raw test peer's socket.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Option<Message> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 19];
    stream.read_exact(&mut header).await.ok()?;
    let len = Message::frame_len(&header).ok()??;
    let mut buf = header.to_vec();
    buf.resize(len, 0);
    stream.read_exact(&mut buf[19..]).await.ok()?;
    Message::decode(&buf, CodecOptions::default()).ok()
}

async fn write_raw(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(bytes).await.unwrap();
}

fn raw_update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    msg.push(2);
    msg.extend_from_slice(&body);
    msg
}

/// Speaker A (127.0.0.`base+3`) with two neighbours: "hand", a raw peer (`base+1`) that the
/// test drives byte by byte, and "good", a second meshd speaker B (`base+2`) that originates
/// 10.2.0.0/16. Returns A, A's table with B's route in it, B and the raw peer's listener.
async fn hand_and_good(base: u8) -> (Speaker, Table, Speaker, tokio::net::TcpListener) {
    let addr = |host: u8| format!("127.0.0.{}", base + host);
    let raw = tokio::net::TcpListener::bind(format!("{}:0", addr(1)))
        .await
        .unwrap();
    let raw_port = raw.local_addr().unwrap().port();
    let mut hand = neighbor("hand", &addr(1), raw_port, 65030);
    hand.local_address = Some(addr(3).parse().unwrap());
    let mut good = neighbor("good", &addr(2), 0, 65002);
    good.passive = true;
    let (tx, rx) = mpsc::unbounded_channel();
    let a = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: Ipv4Addr::new(198, 51, 100, 23),
            listen: vec![SocketAddr::new(addr(3).parse().unwrap(), 0)],
            neighbors: vec![hand, good],
        },
        tx,
    )
    .await
    .unwrap();
    let mut a_routes = Table::new(rx);
    let mut to_a = neighbor("a", &addr(3), a.local_addrs()[0].port(), 65001);
    to_a.local_address = Some(addr(2).parse().unwrap());
    let (tx, _b_rx) = mpsc::unbounded_channel();
    let b = Speaker::start(
        SpeakerConfig {
            asn: 65002,
            router_id: Ipv4Addr::new(198, 51, 100, 22),
            listen: vec![],
            neighbors: vec![to_a],
        },
        tx,
    )
    .await
    .unwrap();
    b.originate("10.2.0.0/16".parse().unwrap());
    a_routes.wait("10.2.0.0/16", true).await;
    (a, a_routes, b, raw)
}

/// The next NOTIFICATION on a raw peer's socket (other messages skipped), then the close.
async fn notification_then_close(s: &mut tokio::net::TcpStream) -> Notification {
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read_message(s).await {
                Some(Message::Notification(n)) => return Some(n),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .expect("answer within 5 s")
    .expect("a NOTIFICATION before the close");
    assert_eq!(read_message(s).await, None, "connection closed");
    answer
}

/// Whether A's session with B is still up and A still has B's route.
async fn good_session_unharmed(a: &Speaker) {
    let sessions = a.sessions().await;
    let good = sessions.iter().find(|s| s.name == "good").unwrap();
    assert_eq!(good.state, State::Established);
    assert!(
        a.routes()
            .await
            .iter()
            .any(|(p, _)| *p == "10.2.0.0/16".parse::<IpNet>().unwrap())
    );
}

#[tokio::test]
async fn malformed_opens_get_the_right_notification_and_spare_other_sessions() {
    let (a, _a_routes, b, raw) = hand_and_good(40).await;
    let accept = async || {
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), raw.accept())
            .await
            .expect("meshd connects")
            .unwrap();
        assert!(matches!(read_message(&mut s).await, Some(Message::Open(_))));
        s
    };
    let open = |asn: u32, hold: u16| {
        Message::Open(Open::new(
            asn,
            hold,
            Ipv4Addr::new(198, 51, 100, 41),
            vec![],
        ))
        .encode(CodecOptions::default())
        .unwrap()
    };
    // Not the AS configured for the neighbour: 2/2 Bad Peer AS.
    let mut s = accept().await;
    write_raw(&mut s, &open(65099, 9)).await;
    let n = notification_then_close(&mut s).await;
    assert_eq!((n.code, n.subcode), (2, 2), "{n:?}");
    // Hold time 1 (RFC 4271 allows 0 or at least 3): 2/6 Unacceptable Hold Time. meshd
    // connects again after its retry time.
    let mut s = accept().await;
    let mut bad_hold = open(65030, 9);
    bad_hold[22..24].copy_from_slice(&1u16.to_be_bytes());
    write_raw(&mut s, &bad_hold).await;
    let n = notification_then_close(&mut s).await;
    assert_eq!((n.code, n.subcode), (2, 6), "{n:?}");
    // A header whose marker is not all ones: 1/1 Connection Not Synchronized.
    let mut s = accept().await;
    let mut unsynced = open(65030, 9);
    unsynced[0] = 0;
    write_raw(&mut s, &unsynced).await;
    let n = notification_then_close(&mut s).await;
    assert_eq!((n.code, n.subcode), (1, 1), "{n:?}");

    good_session_unharmed(&a).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn malformed_updates_get_the_right_answer_and_spare_other_sessions() {
    let (a, mut a_routes, b, raw) = hand_and_good(20).await;

    // The hand-driven session: OPEN, KEEPALIVE both ways.
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), raw.accept())
        .await
        .expect("meshd connects")
        .unwrap();
    assert!(matches!(read_message(&mut s).await, Some(Message::Open(_))));
    let open = Open::new(65030, 9, Ipv4Addr::new(198, 51, 100, 21), vec![]);
    write_raw(
        &mut s,
        &Message::Open(open).encode(CodecOptions::default()).unwrap(),
    )
    .await;
    write_raw(
        &mut s,
        &Message::Keepalive.encode(CodecOptions::default()).unwrap(),
    )
    .await;
    assert_eq!(read_message(&mut s).await, Some(Message::Keepalive));

    let origin = |v: u8| vec![0x40, 1, 1, v];
    let as_path = [0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x06]; // AS_SEQUENCE [65030]
    let next_hop = [0x40, 3, 4, 127, 0, 0, 21];
    let attrs = |o: Vec<u8>| [o, as_path.to_vec(), next_hop.to_vec()].concat();
    // RFC 7606: a bad ORIGIN makes the route a withdrawal and the session stays up.
    write_raw(&mut s, &raw_update(&attrs(origin(5)), &[24, 192, 168, 60])).await;
    // A good one is then learned.
    write_raw(&mut s, &raw_update(&attrs(origin(0)), &[24, 192, 168, 61])).await;
    a_routes.wait("192.168.61.0/24", true).await;
    assert!(
        !a_routes.has("192.168.60.0/24"),
        "treat-as-withdraw route was installed"
    );
    // An unrecognized well-known attribute ends the session with NOTIFICATION 3/2.
    let mut bad = attrs(origin(0));
    bad.extend_from_slice(&[0x40, 99, 1, 0]);
    write_raw(&mut s, &raw_update(&bad, &[24, 192, 168, 62])).await;
    let answer = notification_then_close(&mut s).await;
    assert_eq!((answer.code, answer.subcode), (3, 2));
    a_routes.wait("192.168.61.0/24", false).await;

    // The other session never noticed.
    good_session_unharmed(&a).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Both speakers connect out and listen; one session must come up and stay up.
#[tokio::test]
async fn both_sides_active_settle_on_one_session() {
    let a_listener = SocketAddr::new("127.0.0.31".parse().unwrap(), 0);
    let b_listener = SocketAddr::new("127.0.0.32".parse().unwrap(), 0);
    // Ports are needed before the speakers start: reserve them with throwaway listeners.
    let reserve = |addr| std::net::TcpListener::bind(addr).unwrap();
    let (la, lb) = (reserve(a_listener), reserve(b_listener));
    let (pa, pb) = (
        la.local_addr().unwrap().port(),
        lb.local_addr().unwrap().port(),
    );
    drop((la, lb));
    let mut speakers = Vec::new();
    let mut tables = Vec::new();
    for (me, my_port, other, other_port, asn, other_asn, id) in [
        ("127.0.0.31", pa, "127.0.0.32", pb, 65031, 65032, 31),
        ("127.0.0.32", pb, "127.0.0.31", pa, 65032, 65031, 32),
    ] {
        let mut n = neighbor("other", other, other_port, other_asn);
        n.local_address = Some(me.parse().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Speaker::start(
            SpeakerConfig {
                asn,
                router_id: Ipv4Addr::new(198, 51, 100, id),
                listen: vec![SocketAddr::new(me.parse().unwrap(), my_port)],
                neighbors: vec![n],
            },
            tx,
        )
        .await
        .unwrap();
        s.originate(format!("10.{id}.0.0/16").parse().unwrap());
        speakers.push(s);
        tables.push(Table::new(rx));
    }
    tables[0].wait("10.32.0.0/16", true).await;
    tables[1].wait("10.31.0.0/16", true).await;
    // Still up a while later (no flapping between the two connections).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for s in &speakers {
        assert_eq!(s.sessions().await[0].state, State::Established);
    }
    assert!(
        tables[0]
            .best
            .get(&"10.32.0.0/16".parse().unwrap())
            .unwrap()
            .is_some()
    );
    for s in speakers {
        s.shutdown().await;
    }
}

/// RFC 4271 §6.8 driven by hand: meshd's own connection is in OpenSent when the peer opens a
/// second one and sends its OPEN there. The connection opened by the higher BGP identifier
/// survives; the other gets Cease/7.
#[tokio::test]
async fn connection_collision_keeps_the_higher_identifiers_connection() {
    for (peer_id, peers_connection_wins) in [(200u8, true), (2u8, false)] {
        let raw = tokio::net::TcpListener::bind("127.0.0.41:0").await.unwrap();
        let mut hand = neighbor(
            "hand",
            "127.0.0.41",
            raw.local_addr().unwrap().port(),
            65041,
        );
        hand.local_address = Some("127.0.0.42".parse().unwrap());
        let (tx, _rx) = mpsc::unbounded_channel();
        let speaker = Speaker::start(
            SpeakerConfig {
                asn: 65001,
                router_id: Ipv4Addr::new(198, 51, 100, 100),
                listen: vec![SocketAddr::new("127.0.0.42".parse().unwrap(), 0)],
                neighbors: vec![hand],
            },
            tx,
        )
        .await
        .unwrap();
        // meshd's connection: accepted, its OPEN read, not answered yet.
        let (mut ours, _) = raw.accept().await.unwrap();
        assert!(matches!(
            read_message(&mut ours).await,
            Some(Message::Open(_))
        ));
        // The peer's connection, with its OPEN.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.41:0".parse().unwrap()).unwrap();
        let mut theirs = socket.connect(speaker.local_addrs()[0]).await.unwrap();
        let open = Open::new(65041, 9, Ipv4Addr::new(198, 51, 100, peer_id), vec![]);
        let open = Message::Open(open).encode(CodecOptions::default()).unwrap();
        write_raw(&mut theirs, &open).await;
        let (mut winner, mut loser) = if peers_connection_wins {
            (theirs, ours)
        } else {
            (ours, theirs)
        };
        let cease = tokio::time::timeout(Duration::from_secs(5), read_message(&mut loser))
            .await
            .expect("loser answered");
        match cease {
            Some(Message::Notification(n)) => assert_eq!((n.code, n.subcode), (6, 7)),
            other => panic!("expected Cease/7 on the losing connection, got {other:?}"),
        }
        if peers_connection_wins {
            // meshd answers the winning connection's OPEN with its own OPEN and a KEEPALIVE.
            assert!(matches!(
                read_message(&mut winner).await,
                Some(Message::Open(_))
            ));
            assert_eq!(read_message(&mut winner).await, Some(Message::Keepalive));
        } else {
            // meshd's own connection goes on: the peer answers there.
            write_raw(&mut winner, &open).await;
            assert_eq!(read_message(&mut winner).await, Some(Message::Keepalive));
        }
        write_raw(
            &mut winner,
            &Message::Keepalive.encode(CodecOptions::default()).unwrap(),
        )
        .await;
        let established = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if speaker.sessions().await[0].state == State::Established {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            established.is_ok(),
            "session on the winning connection (peer id {peer_id})"
        );
        speaker.shutdown().await;
    }
}

/// Refuses one prefix, whoever sends it.
#[derive(Debug)]
struct RefusePrefix(IpNet);

impl ImportGuard for RefusePrefix {
    fn check(&self, prefix: &IpNet, _source: &RouteSource) -> Result<(), String> {
        if *prefix == self.0 {
            Err("refused for the test".into())
        } else {
            Ok(())
        }
    }
}

/// A speaker at `address` with one neighbour, A at 127.0.0.51, and routes originated.
async fn spoke_of_a(address: &str, asn: u32, a_port: u16, prefixes: &[&str]) -> (Speaker, Table) {
    let mut to_a = neighbor("a", "127.0.0.51", a_port, 65001);
    to_a.local_address = Some(address.parse().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let speaker = Speaker::start(
        SpeakerConfig {
            asn,
            router_id: address.parse().unwrap(),
            listen: vec![],
            neighbors: vec![to_a],
        },
        tx,
    )
    .await
    .unwrap();
    for p in prefixes {
        speaker.originate(p.parse().unwrap());
    }
    (speaker, Table::new(rx))
}

async fn wait_state(speaker: &Speaker, name: &str, state: State) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if speaker
                .sessions()
                .await
                .iter()
                .any(|s| s.name == name && s.state == state)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "session {name} not {state:?} within 10 s");
}

/// Neighbours come and go at run time without disturbing the others; a replaced neighbour's
/// session restarts with its new configuration; a guard refuses routes and, when lifted, the
/// peers are asked (ROUTE-REFRESH) to send them again.
#[tokio::test]
async fn neighbours_are_added_replaced_and_removed_at_run_time() {
    let (tx, rx) = mpsc::unbounded_channel();
    let a = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: Ipv4Addr::new(127, 0, 0, 51),
            listen: vec![SocketAddr::new("127.0.0.51".parse().unwrap(), 0)],
            neighbors: vec![],
        },
        tx,
    )
    .await
    .unwrap();
    let mut a_routes = Table::new(rx);
    let port = a.local_addrs()[0].port();
    a.originate("10.1.0.0/16".parse().unwrap());
    a.set_guard(Some(std::sync::Arc::new(RefusePrefix(
        "10.66.0.0/16".parse().unwrap(),
    ))));
    let (b, mut b_routes) =
        spoke_of_a("127.0.0.52", 65002, port, &["10.66.0.0/16", "10.2.0.0/16"]).await;
    let (c, _c_routes) = spoke_of_a("127.0.0.53", 65003, port, &["10.3.0.0/16"]).await;
    let passive = |name: &str, address: &str, asn| {
        let mut n = neighbor(name, address, 0, asn);
        n.passive = true;
        n
    };

    a.add_neighbor(passive("b", "127.0.0.52", 65002));
    a_routes.wait("10.2.0.0/16", true).await;
    b_routes.wait("10.1.0.0/16", true).await;
    assert!(!a_routes.has("10.66.0.0/16"), "the guard let 10.66/16 in");

    // Adding C leaves B's session alone: B learns C's route through A, never losing A's.
    a.add_neighbor(passive("c", "127.0.0.53", 65003));
    a_routes.wait("10.3.0.0/16", true).await;
    b_routes.wait("10.3.0.0/16", true).await;
    assert!(b_routes.has("10.1.0.0/16"), "B lost A's route");
    // Adding B again with the same configuration changes nothing.
    a.add_neighbor(passive("b", "127.0.0.52", 65002));
    assert_eq!(a.sessions().await.len(), 2);

    // The guard lifted: B is asked for its routes again and 10.66/16 arrives.
    a.set_guard(None);
    a_routes.wait("10.66.0.0/16", true).await;

    // Removing C withdraws its routes at A and at B; B's session stays up.
    a.remove_neighbor("127.0.0.53".parse().unwrap());
    a_routes.wait("10.3.0.0/16", false).await;
    b_routes.wait("10.3.0.0/16", false).await;
    let sessions = a.sessions().await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].name.as_str(), sessions[0].state),
        ("b", State::Established)
    );

    // B replaced with an import policy that rejects everything: its session restarts and its
    // routes are gone from A.
    let mut strict = passive("b", "127.0.0.52", 65002);
    strict.import = Policy::reject_all();
    a.add_neighbor(strict);
    a_routes.wait("10.2.0.0/16", false).await;
    wait_state(&a, "b", State::Established).await;
    b_routes.wait("10.1.0.0/16", true).await;
    assert!(!a_routes.has("10.2.0.0/16"));

    let all = a.all_paths().await;
    let own = all
        .iter()
        .find(|e| e.prefix == "10.1.0.0/16".parse::<IpNet>().unwrap())
        .unwrap();
    assert!(own.best && own.from.is_none(), "{own:?}");
    for s in [a, b, c] {
        s.shutdown().await;
    }
}
