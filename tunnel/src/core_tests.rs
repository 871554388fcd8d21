//! Tests of the pure core: two or three cores exchange datagrams by hand, with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::stats::DropReason;

struct Node {
    core: DataplaneCore,
    addr: SocketAddr,
    to_device: PacketBatch,
    tx: TxBatch,
}

fn key(seed: u8) -> [u8; 32] {
    [seed; 32]
}

fn public(seed: u8) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from(key(seed))).as_bytes()
}

fn peer(name: &str, seed: u8, endpoints: &[&str], allowed: &[&str]) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        public_key: public(seed),
        endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
        allowed_ips: allowed.iter().map(|a| a.parse().unwrap()).collect(),
        ecmp_ips: Vec::new(),
        persistent_keepalive: None,
        relay: false,
    }
}

fn node(seed: u8, addr: &str, peers: Vec<PeerConfig>) -> Node {
    Node {
        core: DataplaneCore::new(key(seed), &peers).unwrap(),
        addr: addr.parse().unwrap(),
        to_device: PacketBatch::new(),
        tx: TxBatch::new(1 << 20),
    }
}

/// A minimal IPv4 packet (header + payload) from `src` to `dst`.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..].copy_from_slice(payload);
    p
}

/// Datagrams `from` has queued, with their destinations; empties its batch.
fn take_tx(from: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    let out = from
        .tx
        .runs(1)
        .map(|r| (r.dst, r.contents.to_vec()))
        .collect();
    from.tx.clear();
    out
}

/// Delivers every datagram queued at any node to the node owning its destination,
/// until nothing moves. Returns how many datagrams moved.
fn pump(nodes: &mut [&mut Node], now: Instant) -> usize {
    let mut moved = 0;
    loop {
        let mut in_flight = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            for (dst, d) in take_tx(n) {
                in_flight.push((i, dst, d));
            }
        }
        if in_flight.is_empty() {
            return moved;
        }
        for (from, dst, d) in in_flight {
            moved += 1;
            let src_addr = nodes[from].addr;
            if let Some(n) = nodes.iter_mut().find(|n| n.addr == dst) {
                let snap = n.core.snapshot();
                n.core
                    .handle_inbound(&snap, &d, src_addr, now, &mut n.to_device, &mut n.tx);
            }
        }
    }
}

fn send(n: &mut Node, packet: &[u8], now: Instant) {
    let snap = n.core.snapshot();
    n.core.handle_outbound(&snap, packet, now, &mut n.tx);
}

fn delivered(n: &mut Node) -> Vec<Vec<u8>> {
    let out = n.to_device.packets().map(<[u8]>::to_vec).collect();
    n.to_device.clear();
    out
}

fn drops(n: &Node, reason: DropReason) -> u64 {
    n.core.stats().drops.get(reason)
}

/// Core `a` (10.1/16) and spoke-like `b` (10.2/16), peers of each other.
/// a's side of a handshake with b as a bare `Tunn`, to send initiations at will.
fn bare_tunn_a_to_b() -> Tunn {
    Tunn::new(
        StaticSecret::from(key(1)),
        PublicKey::from(public(2)),
        None,
        None,
        7,
        None,
    )
}

fn pair() -> (Node, Node) {
    let a = node(
        1,
        "127.0.0.11:51820",
        vec![peer("b", 2, &["127.0.0.12:51820"], &["10.2.0.0/16"])],
    );
    let b = node(
        2,
        "127.0.0.12:51820",
        vec![peer("a", 1, &["127.0.0.11:51820"], &["10.1.0.0/16"])],
    );
    (a, b)
}

#[test]
fn handshake_then_packets_flow_both_ways() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    let ping = ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"ping");
    send(&mut a, &ping, now);
    // The first packet waits for the handshake; the initiation goes to b's endpoint.
    let init = take_tx(&mut a);
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].0, b.addr);
    assert_eq!(init[0].1.len(), 148);
    a.tx.room()[..148].copy_from_slice(&init[0].1);
    a.tx.commit(148, b.addr);

    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut b), vec![ping.clone()]);

    let pong = ipv4([10, 2, 0, 1], [10, 1, 0, 1], b"pong");
    send(&mut b, &pong, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut a), vec![pong]);

    let sa = a.core.stats();
    let pb = sa.peer("b").unwrap();
    assert_eq!(pb.handshakes, 1);
    assert_eq!(pb.tx_packets, 1);
    assert_eq!(pb.tx_bytes, ping.len() as u64);
    assert_eq!(pb.rx_packets, 1);
    assert!(pb.last_handshake.is_some());
    assert_eq!(sa.drops.total(), 0);
    assert_eq!(b.core.stats().peer("a").unwrap().handshakes, 1);
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"hi"), now);
    pump(&mut [&mut a, &mut b], now);
    delivered(&mut b);
    // a sends from an address that belongs to b's own range: not a's to use.
    send(&mut a, &ipv4([10, 2, 9, 9], [10, 2, 0, 1], b"spoof"), now);
    pump(&mut [&mut a, &mut b], now);
    assert!(delivered(&mut b).is_empty());
    assert_eq!(drops(&b, DropReason::SpoofedSource), 1);
}

#[test]
fn transit_between_spokes_stays_inside_the_core() {
    let now = Instant::now();
    let mut core = node(
        1,
        "127.0.0.11:51820",
        vec![
            peer("s1", 2, &[], &["10.2.0.0/16"]),
            peer("s2", 3, &[], &["10.3.0.0/16"]),
        ],
    );
    let mut s1 = node(
        2,
        "127.0.0.12:51820",
        vec![peer("core", 1, &["127.0.0.11:51820"], &["10.0.0.0/8"])],
    );
    let mut s2 = node(
        3,
        "127.0.0.13:51820",
        vec![peer("core", 1, &["127.0.0.11:51820"], &["10.0.0.0/8"])],
    );
    // s2 calls the core first so the core learns where s2 is.
    send(
        &mut s2,
        &ipv4([10, 3, 0, 1], [10, 1, 0, 1], b"hello core"),
        now,
    );
    pump(&mut [&mut core, &mut s1, &mut s2], now);
    assert_eq!(delivered(&mut core).len(), 1);

    let packet = ipv4([10, 2, 0, 1], [10, 3, 0, 1], b"spoke to spoke");
    send(&mut s1, &packet, now);
    pump(&mut [&mut core, &mut s1, &mut s2], now);
    assert!(
        delivered(&mut core).is_empty(),
        "transit must not reach the core's device"
    );
    assert_eq!(delivered(&mut s2), vec![packet]);
    let stats = core.core.stats();
    assert_eq!(stats.peer("s1").unwrap().transit_packets, 1);
    assert_eq!(stats.peer("s2").unwrap().tx_packets, 1);

    // A spoke may not relay a third party's source through the core.
    send(&mut s1, &ipv4([10, 3, 0, 7], [10, 3, 0, 1], b"spoof"), now);
    pump(&mut [&mut core, &mut s1, &mut s2], now);
    assert!(delivered(&mut s2).is_empty());
    assert_eq!(drops(&core, DropReason::SpoofedSource), 1);
}

#[test]
fn packets_without_route_or_endpoint_are_counted() {
    let now = Instant::now();
    let mut a = node(
        1,
        "127.0.0.11:51820",
        vec![peer("b", 2, &[], &["10.2.0.0/16"])],
    );
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 9, 0, 1], b"x"), now);
    assert_eq!(drops(&a, DropReason::NoRoute), 1);
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    assert_eq!(drops(&a, DropReason::NoEndpoint), 1);
    send(&mut a, &[0x45, 0, 0], now);
    assert_eq!(drops(&a, DropReason::InvalidInnerPacket), 1);
    assert!(a.tx.is_empty());
}

#[test]
fn receiver_index_finds_the_peer_and_unknown_indexes_are_dropped() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut a, &mut b], now);
    delivered(&mut b);
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"y"), now);
    let (_, mut data) = take_tx(&mut a).remove(0);
    // Point the receiver index at a peer index nobody has.
    let idx = u32::from_le_bytes(data[4..8].try_into().unwrap());
    data[4..8].copy_from_slice(&(idx ^ 0x00ff_ff00).to_le_bytes());
    let snap = b.core.snapshot();
    b.core
        .handle_inbound(&snap, &data, a.addr, now, &mut b.to_device, &mut b.tx);
    assert_eq!(drops(&b, DropReason::UnknownPeer), 1);
}

#[test]
fn replayed_and_tampered_packets_are_dropped() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut a, &mut b], now);
    delivered(&mut b);
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"once"), now);
    let (_, data) = take_tx(&mut a).remove(0);
    let snap = b.core.snapshot();
    for _ in 0..2 {
        b.core
            .handle_inbound(&snap, &data, a.addr, now, &mut b.to_device, &mut b.tx);
    }
    assert_eq!(delivered(&mut b).len(), 1);
    assert_eq!(drops(&b, DropReason::Replay), 1);
    let mut tampered = data.clone();
    *tampered.last_mut().unwrap() ^= 1;
    tampered[8] ^= 0x40; // a fresh counter, so the tag check is what fails
    b.core
        .handle_inbound(&snap, &tampered, a.addr, now, &mut b.to_device, &mut b.tx);
    assert_eq!(drops(&b, DropReason::DecryptFailed), 1);
}

#[test]
fn handshake_from_unknown_key_is_refused() {
    let now = Instant::now();
    let (_, mut b) = pair();
    // A stranger that knows b's key but is not b's peer.
    let mut stranger = node(
        9,
        "127.0.0.19:51820",
        vec![peer("b", 2, &["127.0.0.12:51820"], &["10.2.0.0/16"])],
    );
    send(
        &mut stranger,
        &ipv4([10, 9, 0, 1], [10, 2, 0, 1], b"x"),
        now,
    );
    pump(&mut [&mut stranger, &mut b], now);
    assert_eq!(drops(&b, DropReason::UnknownPeer), 1);
    assert!(delivered(&mut b).is_empty());
    // And an initiation meant for someone else's key fails the MAC check.
    let mut wrong = node(
        8,
        "127.0.0.18:51820",
        vec![peer("b", 7, &["127.0.0.12:51820"], &["10.2.0.0/16"])],
    );
    send(&mut wrong, &ipv4([10, 9, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut wrong, &mut b], now);
    assert_eq!(drops(&b, DropReason::InvalidMac), 1);
}

#[test]
fn roaming_peer_is_answered_at_its_new_address() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut a, &mut b], now);
    // b moves to a new address and speaks first.
    b.addr = "127.0.0.22:40000".parse().unwrap();
    send(&mut b, &ipv4([10, 2, 0, 1], [10, 1, 0, 1], b"moved"), now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut a).len(), 1);
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"reply"), now);
    let out = take_tx(&mut a);
    assert_eq!(out[0].0, b.addr);
    assert_eq!(
        a.core.stats().peer("b").unwrap().endpoint,
        Some("127.0.0.22:40000".parse().unwrap())
    );
}

#[test]
fn unanswered_handshake_rotates_to_the_next_endpoint_on_the_clock_given() {
    let t0 = Instant::now();
    let e1: SocketAddr = "198.51.100.2:51820".parse().unwrap();
    let e2: SocketAddr = "203.0.113.2:51820".parse().unwrap();
    let mut a = node(
        1,
        "127.0.0.11:51820",
        vec![peer(
            "b",
            2,
            &["198.51.100.2:51820", "203.0.113.2:51820"],
            &["10.2.0.0/16"],
        )],
    );
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), t0);
    assert_eq!(take_tx(&mut a)[0].0, e1);
    // Nobody answers, neither handshakes nor probes: once the prober has found every path
    // dead, the handshake-timeout rotation decides, as for a peer that does not probe.
    let mut clock = Clock::new(t0);
    let endpoint = |a: &Node| a.core.stats().peer("b").unwrap().endpoint;
    clock.run(&mut a, t0 + Duration::from_secs(4));
    assert_eq!(endpoint(&a), Some(e1));
    clock.run(&mut a, t0 + HANDSHAKE_TIMEOUT);
    assert_eq!(endpoint(&a), Some(e2));
    // The next rotation is timed from the previous one, and wraps around.
    clock.run(&mut a, t0 + HANDSHAKE_TIMEOUT * 2 - Duration::from_secs(1));
    assert_eq!(endpoint(&a), Some(e2));
    clock.run(&mut a, t0 + HANDSHAKE_TIMEOUT * 2);
    assert_eq!(endpoint(&a), Some(e1));
}

/// Drives one node's timers the way the shell does: `tick` every 250 ms, the path probers
/// at their deadlines in between (10 ms resolution); what the node sends is dropped.
struct Clock {
    now: Instant,
    next_tick: Instant,
}

impl Clock {
    fn new(now: Instant) -> Self {
        Clock {
            now,
            next_tick: now,
        }
    }

    fn run(&mut self, n: &mut Node, until: Instant) {
        while self.now < until {
            self.now = (self.now + Duration::from_millis(10)).min(until);
            if self.now >= self.next_tick {
                n.core.tick(self.now, &mut n.tx);
                self.next_tick += Duration::from_millis(250);
            } else if n.core.next_path_deadline().is_some_and(|d| d <= self.now) {
                n.core.poll_paths(self.now, &mut n.tx);
            }
            n.tx.clear();
        }
    }
}

#[test]
fn a_peer_with_an_endpoint_or_keepalive_is_dialled_on_the_first_tick() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    // A peer with neither an endpoint nor a keepalive (a spoke behind NAT, seen from its
    // core) waits until it makes contact.
    let mut core = node(
        3,
        "127.0.0.13:51820",
        vec![peer("b", 2, &[], &["10.2.0.0/16"])],
    );
    core.core.tick(now, &mut core.tx);
    assert!(take_tx(&mut core).is_empty());
    let mut spoke_view = peer("a", 1, &["127.0.0.11:51820"], &["10.1.0.0/16"]);
    spoke_view.persistent_keepalive = Some(Duration::from_secs(25));
    b.core.update_peers(&[spoke_view]).unwrap();
    b.core.tick(now, &mut b.tx);
    let out: Vec<_> = take_tx(&mut b)
        .into_iter()
        .filter(|(_, d)| !probe::is_probe(d))
        .collect();
    assert_eq!(out.len(), 1, "one handshake initiation (besides probes)");
    assert_eq!(out[0].0, "127.0.0.11:51820".parse::<SocketAddr>().unwrap());
    assert_eq!(out[0].1[0], 1, "message type 1: handshake initiation");
    // The answer completes the session, so the core can now reach the spoke first.
    let snap = a.core.snapshot();
    a.core
        .handle_inbound(&snap, &out[0].1, b.addr, now, &mut a.to_device, &mut a.tx);
    pump(&mut [&mut a, &mut b], now);
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"first"), now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut b).len(), 1);
    // Only once: the next tick does not start another handshake.
    b.core.tick(now, &mut b.tx);
    assert!(take_tx(&mut b).iter().all(|(_, d)| d[0] != 1));
}

#[test]
fn a_peer_that_handshook_first_is_not_dialled_again_on_the_first_tick() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut b).len(), 1);
    b.core.tick(now, &mut b.tx);
    assert!(
        take_tx(&mut b).iter().all(|(_, d)| d[0] != 1),
        "no second handshake"
    );
    assert_eq!(a.core.stats().peer("b").unwrap().handshakes, 1);
}

#[test]
fn update_peers_keeps_sessions_of_unchanged_peers() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    pump(&mut [&mut a, &mut b], now);
    delivered(&mut b);
    let mut peers = vec![peer("b", 2, &["127.0.0.12:51820"], &["10.2.0.0/16"])];
    peers.push(peer("c", 3, &[], &["10.3.0.0/16"]));
    a.core.update_peers(&peers).unwrap();
    // No new handshake needed: the datagram is data (type 4).
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"still"), now);
    let out = take_tx(&mut a);
    assert_eq!(out[0].1[0], 4);
    // Duplicate prefixes are refused with a message naming both peers.
    peers[1].allowed_ips = vec!["10.2.0.0/16".parse().unwrap()];
    let err = a.core.update_peers(&peers).unwrap_err().to_string();
    assert!(err.contains("\"b\"") && err.contains("\"c\""), "{err}");
}

#[test]
fn replayed_handshake_initiation_is_rejected() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"x"), now);
    let (_, init) = take_tx(&mut a).remove(0);
    let snap = b.core.snapshot();
    for _ in 0..2 {
        b.core
            .handle_inbound(&snap, &init, a.addr, now, &mut b.to_device, &mut b.tx);
    }
    assert_eq!(drops(&b, DropReason::HandshakeRejected), 1);
    assert_eq!(b.core.stats().peer("a").unwrap().handshakes, 1);
}

#[test]
fn handshake_flood_gets_cookies_and_a_cookie_holder_gets_through() {
    let now = Instant::now();
    let (a, mut b) = pair();
    // A low limit keeps the test fast (each initiation costs several Diffie-Hellmans).
    const LIMIT: u64 = 10;
    b.core =
        DataplaneCore::with_handshake_limit(key(2), &[peer("a", 1, &[], &["10.1.0.0/16"])], LIMIT)
            .unwrap();
    // Play a's side with a bare Tunn so we can resend initiations at will.
    let mut tunn = bare_tunn_a_to_b();
    let mut buf = vec![0u8; 2048];
    let snap = b.core.snapshot();
    let mut cookie = None;
    // 50 ms apart: the per-source rate lets every one through to the load check.
    let mut at = now;
    for _ in 0..(LIMIT + 5) {
        at += Duration::from_millis(50);
        let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, true)
        else {
            panic!("no initiation");
        };
        b.core
            .handle_inbound(&snap, init, a.addr, at, &mut b.to_device, &mut b.tx);
        for (dst, d) in take_tx(&mut b) {
            assert_eq!(dst, a.addr);
            if d.len() == 64 {
                cookie = Some(d);
            }
        }
    }
    assert!(drops(&b, DropReason::UnderLoad) > 0);
    let cookie = cookie.expect("a cookie reply under load");
    assert!(matches!(
        tunn.decapsulate(Some(b.addr.ip()), &cookie, &mut buf),
        TunnResult::Done
    ));
    // With the cookie, the next initiation carries a valid MAC2 and is answered.
    let under_load = drops(&b, DropReason::UnderLoad);
    let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, true) else {
        panic!("no initiation");
    };
    at += Duration::from_millis(50);
    b.core
        .handle_inbound(&snap, init, a.addr, at, &mut b.to_device, &mut b.tx);
    assert_eq!(drops(&b, DropReason::UnderLoad), under_load);
    let replies = take_tx(&mut b);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.len(), 92, "a handshake response");
}

#[test]
fn a_flood_from_one_address_is_cut_to_its_per_source_rate_and_others_still_get_in() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    // The attacker knows b's public key, so its initiations carry a valid MAC1 (the same
    // initiation resent: the per-source check comes before any MAC or timestamp check).
    let mut attacker = Tunn::new(
        StaticSecret::from(key(9)),
        PublicKey::from(public(2)),
        None,
        None,
        3,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = attacker.format_handshake_initiation(&mut buf, false)
    else {
        panic!("no initiation");
    };
    let init = init.to_vec();
    let from: SocketAddr = "203.0.113.66:40000".parse().unwrap();
    let snap = b.core.snapshot();
    for _ in 0..10_000 {
        b.core
            .handle_inbound(&snap, &init, from, now, &mut b.to_device, &mut b.tx);
    }
    let limited = drops(&b, DropReason::RateLimited);
    assert!(limited >= 10_000 - 5, "{limited} of 10000 rate limited");
    assert!(take_tx(&mut b).len() <= 5, "no reply beyond the burst");
    // A real peer from another address completes its handshake in the middle of it.
    send(
        &mut a,
        &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"still here"),
        now,
    );
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut b).len(), 1);
}

thread_local! {
    static FUZZ_NODE: std::cell::RefCell<Node> = std::cell::RefCell::new(pair().1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes, and arbitrary bytes dressed as each WireGuard message type with
    /// its exact length, never panic and never produce a packet for the device.
    #[test]
    fn malformed_datagrams_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        kind in 0u8..9,
    ) {
        let mut datagram = body;
        let len = match kind { 1 => Some(148), 2 => Some(92), 3 => Some(64), 4 => Some(datagram.len().max(32)), _ => None };
        if let Some(len) = len {
            datagram.resize(len, 0);
            datagram[..4].copy_from_slice(&u32::from(kind).to_le_bytes());
        }
        // Dressed as a path probe (0x50) or a reach query or answer (0x54, 0x55): 64 bytes.
        if let Some(first) = match kind { 6 => Some(0x50u8), 7 => Some(0x54), 8 => Some(0x55), _ => None } {
            datagram.resize(64, 0);
            datagram[0] = first;
        }
        // One node for all cases: building one per case would dominate the run time.
        FUZZ_NODE.with_borrow_mut(|b| {
            let before = b.core.stats().drops.total();
            let snap = b.core.snapshot();
            let from: SocketAddr = "127.0.0.11:51820".parse().unwrap();
            b.core.handle_inbound(&snap, &datagram, from, Instant::now(), &mut b.to_device, &mut b.tx);
            prop_assert!(b.to_device.is_empty());
            prop_assert_eq!(b.core.stats().drops.total(), before + 1);
            Ok(())
        })?;
    }
}

/// Delivers everything `from` has queued to `to`, as received at `at`.
fn deliver(from: &mut Node, to: &mut Node, at: Instant) {
    let src = from.addr;
    for (dst, datagram) in take_tx(from) {
        assert_eq!(dst, to.addr);
        let snap = to.core.snapshot();
        to.core
            .handle_inbound(&snap, &datagram, src, at, &mut to.to_device, &mut to.tx);
    }
}

#[test]
fn both_ends_measure_the_round_trip_of_a_handshake() {
    let start = Instant::now();
    let (mut a, mut b) = pair();
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"ping"), start);
    assert_eq!(a.core.stats().peer("b").unwrap().rtt, None);
    // 20 ms there, 25 ms back.
    deliver(&mut a, &mut b, start + Duration::from_millis(20));
    deliver(&mut b, &mut a, start + Duration::from_millis(45));
    assert_eq!(
        a.core.stats().peer("b").unwrap().rtt,
        Some(Duration::from_millis(45))
    );
    // The responder: from its response to the initiator's first data on the new session
    // (its keepalive and the queued ping), 30 ms on the way there.
    assert_eq!(b.core.stats().peer("a").unwrap().rtt, None);
    deliver(&mut a, &mut b, start + Duration::from_millis(75));
    assert_eq!(
        b.core.stats().peer("a").unwrap().rtt,
        Some(Duration::from_millis(55))
    );
    // Later data on that session measures nothing more.
    send(&mut a, &ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"again"), start);
    deliver(&mut a, &mut b, start + Duration::from_millis(500));
    assert_eq!(
        b.core.stats().peer("a").unwrap().rtt,
        Some(Duration::from_millis(55))
    );
}

#[test]
fn handshake_messages_are_told_from_data_by_type_and_length() {
    let mut tunn = bare_tunn_a_to_b();
    let mut buf = vec![0u8; 2048];
    let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, true) else {
        panic!("no initiation");
    };
    assert!(DataplaneCore::is_handshake(init));
    for (kind, len) in [(1u8, 148usize), (2, 92), (3, 64)] {
        let mut message = vec![0u8; len];
        message[0] = kind;
        assert!(DataplaneCore::is_handshake(&message), "type {kind}");
        // The wrong length, a data message, or garbage in the reserved bytes: not handshakes.
        assert!(!DataplaneCore::is_handshake(&message[..len - 1]));
        message[2] = 1;
        assert!(!DataplaneCore::is_handshake(&message));
    }
    let mut data = vec![0u8; 148];
    data[0] = 4;
    assert!(!DataplaneCore::is_handshake(&data));
    assert!(!DataplaneCore::is_handshake(&[]));
    assert!(!DataplaneCore::is_handshake(&[1]));
}

/// The shell's path for handshakes: the per-source check on receipt, the work from the
/// queue. A session comes up through it exactly as through `handle_inbound`.
#[test]
fn a_handshake_through_the_queue_path_brings_the_session_up() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    let packet = ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"hello");
    let snap = a.core.snapshot();
    a.core.handle_outbound(&snap, &packet, now, &mut a.tx);
    for _ in 0..4 {
        let mut moved = false;
        for from_a in [true, false] {
            let (sender, receiver) = if from_a {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let sent_from = sender.addr;
            for (_, datagram) in take_tx(sender) {
                moved = true;
                let snap = receiver.core.snapshot();
                if DataplaneCore::is_handshake(&datagram) {
                    assert!(receiver.core.admit_handshake(sent_from.ip(), now));
                    receiver.core.handle_queued_handshake(
                        &snap,
                        &datagram,
                        sent_from,
                        None,
                        now,
                        &mut receiver.tx,
                    );
                } else {
                    receiver.core.handle_inbound(
                        &snap,
                        &datagram,
                        sent_from,
                        now,
                        &mut receiver.to_device,
                        &mut receiver.tx,
                    );
                }
            }
        }
        if !moved {
            break;
        }
    }
    assert_eq!(b.to_device.packets().next(), Some(&packet[..]));
    assert_eq!(b.core.stats().peer("a").unwrap().handshakes, 1);
    // Something that is not a handshake never reaches the handshake work.
    let snap = b.core.snapshot();
    b.core
        .handle_queued_handshake(&snap, &packet, a.addr, None, now, &mut b.tx);
    assert_eq!(drops(&b, DropReason::Malformed), 1);
}

#[path = "core_ecmp_tests.rs"]
mod ecmp;

#[path = "core_exit_source_tests.rs"]
mod exit_source;

#[path = "core_rekey_tests.rs"]
mod rekey;
