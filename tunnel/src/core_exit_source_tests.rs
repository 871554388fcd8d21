//! Source rules in the core: a pinned source's Internet traffic goes to its exit whatever
//! the default route says, the rest of its traffic and everyone else's by destination, a
//! rule that fails closed drops, and what a core forwards is not chosen again. Uses the
//! helpers of the core tests (`node`, `peer`, `pump`, ...).

use super::*;
use crate::exit_source::{ExitSources, SourceExit, SourceRule};

const CLIENT: [u8; 4] = [10, 1, 0, 2];
const OTHER_CLIENT: [u8; 4] = [10, 1, 0, 3];
const INTERNET: [u8; 4] = [192, 0, 2, 1];

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// An exit core `x` (10.x/16) as the ingress node's peer, carrying the default when
/// `default` says so.
fn exit(name: &str, seed: u8, default: bool) -> PeerConfig {
    let mut allowed = vec![format!("10.{seed}.0.0/16")];
    if default {
        allowed.push("0.0.0.0/0".into());
    }
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let mut p = peer(name, seed, &[&format!("127.0.0.1{seed}:51820")], &allowed);
    p.relay = true;
    p
}

/// The ingress core `a` (10.1/16, seed 1) with two clients (10.1.0.2, 10.1.0.3) and the
/// exits x2 (nearest: it carries the default) and x3; each exit and client with `a` as
/// its peer.
struct Mesh {
    a: Node,
    clients: [Node; 2],
    x2: Node,
    x3: Node,
}

impl Mesh {
    fn new() -> Mesh {
        let client = |name: &str, seed: u8, address: &str| {
            let mut p = peer(name, seed, &[], &[address]);
            p.persistent_keepalive = None;
            p
        };
        let a = node(
            1,
            "127.0.0.11:51820",
            vec![
                client("c", 5, "10.1.0.2/32"),
                client("d", 6, "10.1.0.3/32"),
                exit("x2", 2, true),
                exit("x3", 3, false),
            ],
        );
        let to_a = |allowed: &str| vec![peer("a", 1, &["127.0.0.11:51820"], &[allowed])];
        Mesh {
            a,
            clients: [
                node(5, "127.0.0.15:51820", to_a("0.0.0.0/0")),
                node(6, "127.0.0.16:51820", to_a("0.0.0.0/0")),
            ],
            x2: node(2, "127.0.0.12:51820", to_a("10.1.0.0/16")),
            x3: node(3, "127.0.0.13:51820", to_a("10.1.0.0/16")),
        }
    }

    fn pump(&mut self, now: Instant) {
        let [c, d] = &mut self.clients;
        pump(&mut [&mut self.a, c, d, &mut self.x2, &mut self.x3], now);
    }

    /// Sends from client `i` and returns what each exit delivered: (x2, x3).
    fn send_from(&mut self, i: usize, packet: &[u8], now: Instant) -> (usize, usize) {
        send(&mut self.clients[i], packet, now);
        self.pump(now);
        (delivered(&mut self.x2).len(), delivered(&mut self.x3).len())
    }
}

fn rules(exit: SourceExit, fail_closed: bool) -> ExitSources {
    ExitSources {
        destinations: vec![net("0.0.0.0/0"), net("::/0"), net("198.51.100.0/24")],
        rules: vec![SourceRule {
            source: net("10.1.0.2/32"),
            exit,
            fail_closed,
        }],
    }
}

#[test]
fn a_pinned_client_leaves_through_its_exit_and_the_other_through_the_nearest() {
    let now = Instant::now();
    let mut m = Mesh::new();
    m.a.core
        .set_exit_sources(rules(SourceExit::Via("10.3.0.1".parse().unwrap()), false));

    let to_internet = ipv4(CLIENT, INTERNET, b"pinned");
    assert_eq!(m.send_from(0, &to_internet, now), (0, 1), "through x3");
    assert_eq!(
        m.send_from(1, &ipv4(OTHER_CLIENT, INTERNET, b"not pinned"), now),
        (1, 0),
        "the nearest, x2"
    );
    // Mesh traffic of the pinned client goes by destination: to x2's own address on x2.
    assert_eq!(
        m.send_from(0, &ipv4(CLIENT, [10, 2, 0, 1], b"mesh"), now),
        (1, 0)
    );
    let stats = m.a.core.stats();
    assert_eq!(stats.peer("c").unwrap().transit_packets, 2);

    // From this node's own device (its LAN, sent into the mesh by the kernel): the same.
    send(&mut m.a, &to_internet, now);
    m.pump(now);
    assert_eq!(delivered(&mut m.x3).len(), 1);

    // Peers change (a new client): the rule finds x3 again.
    let mut peers = vec![peer("e", 7, &[], &["10.1.0.4/32"])];
    peers.extend(
        [
            peer("c", 5, &[], &["10.1.0.2/32"]),
            peer("d", 6, &[], &["10.1.0.3/32"]),
        ]
        .into_iter()
        .chain([exit("x2", 2, true), exit("x3", 3, false)]),
    );
    m.a.core.update_peers(&peers).unwrap();
    assert_eq!(m.send_from(0, &to_internet, now), (0, 1));
}

#[test]
fn a_rule_that_fails_closed_drops_and_one_that_falls_back_routes_by_destination() {
    let now = Instant::now();
    let mut m = Mesh::new();
    let to_internet = ipv4(CLIENT, INTERNET, b"pinned");

    m.a.core.set_exit_sources(rules(SourceExit::Drop, true));
    assert_eq!(m.send_from(0, &to_internet, now), (0, 0));
    assert_eq!(drops(&m.a, DropReason::NoExit), 1);
    // Its mesh traffic still flows.
    assert_eq!(
        m.send_from(0, &ipv4(CLIENT, [10, 3, 0, 1], b"mesh"), now),
        (0, 1)
    );

    // The exit's next hop is carried by no peer: closed drops, open goes by destination.
    let gone = SourceExit::Via("10.9.0.1".parse().unwrap());
    m.a.core.set_exit_sources(rules(gone, true));
    assert_eq!(m.send_from(0, &to_internet, now), (0, 0));
    assert_eq!(drops(&m.a, DropReason::NoExit), 2);
    m.a.core.set_exit_sources(rules(gone, false));
    assert_eq!(m.send_from(0, &to_internet, now), (1, 0));
    m.a.core
        .set_exit_sources(rules(SourceExit::ByDestination, false));
    assert_eq!(m.send_from(0, &to_internet, now), (1, 0));

    // This node is the exit: the packet goes to its device (the kernel masquerades it).
    m.a.core.set_exit_sources(rules(SourceExit::Here, false));
    assert_eq!(m.send_from(0, &to_internet, now), (0, 0));
    assert_eq!(delivered(&mut m.a).len(), 1);

    // No rules: back to the default route.
    m.a.core.set_exit_sources(ExitSources::default());
    assert_eq!(m.send_from(0, &to_internet, now), (1, 0));
}

#[test]
fn what_a_core_forwards_is_not_pinned_again() {
    let now = Instant::now();
    let mut m = Mesh::new();
    // x2's own addresses are pinned to x3 on a: what x2 sends through a is not moved.
    m.a.core.set_exit_sources(ExitSources {
        destinations: vec![net("0.0.0.0/0")],
        rules: vec![SourceRule {
            source: net("10.2.0.0/16"),
            exit: SourceExit::Via("10.3.0.1".parse().unwrap()),
            fail_closed: true,
        }],
    });
    let mut x2_peers = vec![peer("a", 1, &["127.0.0.11:51820"], &["10.1.0.0/16"])];
    x2_peers[0].allowed_ips.push(net("0.0.0.0/0"));
    m.x2.core.update_peers(&x2_peers).unwrap();
    send(
        &mut m.x2,
        &ipv4([10, 2, 0, 1], INTERNET, b"from a core"),
        now,
    );
    m.pump(now);
    assert!(delivered(&mut m.x3).is_empty());
    assert_eq!(
        delivered(&mut m.a).len(),
        1,
        "routed by destination: the default is x2's own, so a keeps it"
    );
    assert_eq!(drops(&m.a, DropReason::NoExit), 0);
}
