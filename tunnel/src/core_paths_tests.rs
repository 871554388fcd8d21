//! Failover of the whole core, on a virtual clock: two cores with two uplinks each (ISP1 on
//! 198.51.100.0/24, ISP2 on 203.0.113.0/24), a ping stream every 50 ms, and an ISP that
//! silently drops everything or an uplink whose address goes away. The cores probe, switch
//! and fail back by themselves; the test only moves datagrams and time.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

const PORT: u16 = 51820;
const STEP: Duration = Duration::from_millis(5);
const PING_EVERY: Duration = Duration::from_millis(50);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn public(seed: u8) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from([seed; 32])).as_bytes()
}

struct Core {
    core: DataplaneCore,
    addrs: Vec<IpAddr>,
    to_device: PacketBatch,
    tx: TxBatch,
    next_tick: Instant,
}

impl Core {
    fn new(seed: u8, addrs: &[&str], peer: PeerConfig) -> Self {
        Core {
            core: DataplaneCore::new([seed; 32], &[peer]).unwrap(),
            addrs: addrs.iter().map(|a| ip(a)).collect(),
            to_device: PacketBatch::new(),
            tx: TxBatch::new(1 << 20),
            next_tick: Instant::now(),
        }
    }

    fn timers(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.core.tick(now, &mut self.tx);
            self.next_tick = now + Duration::from_millis(250);
        } else if self.core.next_path_deadline().is_some_and(|d| d <= now) {
            self.core.poll_paths(now, &mut self.tx);
        }
    }

    fn peer_stats(&self) -> PeerStats {
        self.core.stats().peers.remove(0)
    }
}

fn peer(name: &str, seed: u8, endpoints: &[&str], allowed: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        public_key: public(seed),
        endpoints: endpoints
            .iter()
            .map(|e| SocketAddr::new(ip(e), PORT))
            .collect(),
        allowed_ips: vec![allowed.parse().unwrap()],
        ecmp_ips: Vec::new(),
        persistent_keepalive: None,
        relay: false,
    }
}

/// The two ISPs and what is cut: a cut address neither sends nor receives anything.
struct Net {
    nodes: [Core; 2],
    cut: HashSet<IpAddr>,
    now: Instant,
    /// When alpha received each of beta's replies.
    replies: Vec<Instant>,
    next_ping: Instant,
}

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        let mut alpha = Core::new(
            1,
            &["198.51.100.1", "203.0.113.1"],
            peer("beta", 2, &["198.51.100.2", "203.0.113.2"], "10.2.0.0/16"),
        );
        let mut beta = Core::new(
            2,
            &["198.51.100.2", "203.0.113.2"],
            peer("alpha", 1, &["198.51.100.1", "203.0.113.1"], "10.1.0.0/16"),
        );
        for n in [&mut alpha, &mut beta] {
            n.core.set_local_addresses(uplinks(&n.addrs), now);
            n.next_tick = now;
        }
        Net {
            nodes: [alpha, beta],
            cut: HashSet::new(),
            now,
            replies: Vec::new(),
            next_ping: now,
        }
    }

    /// Runs the clock for `d`: pings from alpha to beta, beta answers each one.
    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.now += STEP;
            let now = self.now;
            if now >= self.next_ping {
                self.next_ping += PING_EVERY;
                let snap = self.nodes[0].core.snapshot();
                let n = &mut self.nodes[0];
                n.core
                    .handle_outbound(&snap, &ipv4([10, 1, 0, 1], [10, 2, 0, 1]), now, &mut n.tx);
            }
            for n in &mut self.nodes {
                n.timers(now);
            }
            self.deliver();
            // Beta answers every ping it got; alpha notes every answer.
            let pings = self.nodes[1].to_device.packets().count();
            self.nodes[1].to_device.clear();
            for _ in 0..pings {
                let snap = self.nodes[1].core.snapshot();
                let n = &mut self.nodes[1];
                n.core
                    .handle_outbound(&snap, &ipv4([10, 2, 0, 1], [10, 1, 0, 1]), now, &mut n.tx);
            }
            self.deliver();
            let answers = self.nodes[0].to_device.packets().count();
            self.nodes[0].to_device.clear();
            self.replies.extend(std::iter::repeat_n(now, answers));
        }
    }

    /// Moves every queued datagram to the node owning its destination (instantly), unless
    /// its source or destination is cut; until nothing moves.
    fn deliver(&mut self) {
        loop {
            let mut in_flight = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                for run in n.tx.runs(1) {
                    // No source given: the kernel's choice, the first address of the family.
                    let src = run.src.unwrap_or_else(|| {
                        *n.addrs
                            .iter()
                            .find(|a| a.is_ipv4() == run.dst.is_ipv4())
                            .unwrap()
                    });
                    assert!(n.addrs.contains(&src), "sent from a foreign address {src}");
                    in_flight.push((i, src, run.dst, run.contents.to_vec()));
                }
                n.tx.clear();
            }
            if in_flight.is_empty() {
                return;
            }
            for (from, src, dst, datagram) in in_flight {
                if self.cut.contains(&src) || self.cut.contains(&dst.ip()) {
                    continue;
                }
                let Some(to) = self.nodes.iter().position(|n| n.addrs.contains(&dst.ip())) else {
                    continue;
                };
                if to == from {
                    continue;
                }
                let n = &mut self.nodes[to];
                let snap = n.core.snapshot();
                n.core.handle_inbound_on(
                    &snap,
                    &datagram,
                    SocketAddr::new(src, PORT),
                    Some(dst.ip()),
                    self.now,
                    &mut n.to_device,
                    &mut n.tx,
                );
            }
        }
    }

    /// The longest time without a reply at alpha after `since`.
    fn longest_gap_after(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut gap = Duration::ZERO;
        for &t in self.replies.iter().filter(|&&t| t > since) {
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(self.now - last)
    }

    fn alpha_local(&self) -> Option<IpAddr> {
        self.nodes[0].peer_stats().local_address
    }
}

fn uplinks(addrs: &[IpAddr]) -> Vec<LocalUplink> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| LocalUplink {
            address: *a,
            interface: format!("wan{}", i + 1),
        })
        .collect()
}

/// A minimal IPv4 packet.
fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

fn started() -> Net {
    let mut net = Net::new();
    net.run(Duration::from_secs(5));
    assert!(
        net.replies.len() > 80,
        "pings flow before the cut: {} replies",
        net.replies.len()
    );
    assert_eq!(
        net.alpha_local(),
        Some(ip("198.51.100.1")),
        "primary uplink first"
    );
    net
}

#[test]
fn an_isp_that_drops_everything_costs_less_than_a_second() {
    let mut net = started();
    let cut_at = net.now;
    net.cut.insert(ip("198.51.100.1"));
    net.run(Duration::from_secs(5));
    let gap = net.longest_gap_after(cut_at);
    eprintln!("ISP drops everything: gap {gap:?}");
    assert!(gap < Duration::from_secs(1), "gap {gap:?}");
    assert_eq!(net.alpha_local(), Some(ip("203.0.113.1")));
    let beta = net.nodes[1].peer_stats();
    assert_eq!(beta.endpoint.map(|e| e.ip()), Some(ip("203.0.113.1")));
}

#[test]
fn an_uplink_that_goes_away_moves_traffic_at_once_and_back_after_the_hold() {
    let mut net = started();
    let cut_at = net.now;
    net.cut.insert(ip("198.51.100.1"));
    let now = net.now;
    net.nodes[0]
        .core
        .set_local_addresses(uplinks(&[ip("203.0.113.1")]), now);
    net.run(Duration::from_secs(3));
    let gap = net.longest_gap_after(cut_at);
    // Alpha moves at once; beta's replies follow when its probes of the old path are lost.
    eprintln!("uplink gone: gap {gap:?}");
    assert!(gap < Duration::from_secs(1), "gap {gap:?}");
    assert_eq!(net.alpha_local(), Some(ip("203.0.113.1")));
    let switched = net.nodes[0].peer_stats().path_switches;

    // The uplink returns: traffic goes back to it after the failback hold, once.
    net.cut.clear();
    let now = net.now;
    net.nodes[0]
        .core
        .set_local_addresses(uplinks(&[ip("198.51.100.1"), ip("203.0.113.1")]), now);
    net.run(Duration::from_secs(5));
    assert_eq!(net.alpha_local(), Some(ip("203.0.113.1")), "held back");
    net.run(Duration::from_secs(10));
    assert_eq!(net.alpha_local(), Some(ip("198.51.100.1")), "failed back");
    net.run(Duration::from_secs(20));
    let stats = net.nodes[0].peer_stats();
    assert_eq!(stats.path_switches, switched + 1, "no flapping");
    assert!(stats.paths.iter().any(|p| p.active));
    assert!(stats.last_received.is_some());
}

#[test]
fn forged_probes_get_no_answer_and_replies_are_never_larger() {
    let mut net = started();
    // A request that does not authenticate (a stranger's, or a flipped bit).
    let mut forged = [0u8; probe::PROBE_LEN];
    forged[0] = probe::REQUEST;
    forged[4..12].copy_from_slice(&probe::sender_id(&public(2)));
    let n = &mut net.nodes[0];
    let snap = n.core.snapshot();
    let before = n.core.stats().drops.get(DropReason::InvalidMac);
    n.core.handle_inbound_on(
        &snap,
        &forged,
        "198.51.100.2:51820".parse().unwrap(),
        Some(ip("198.51.100.1")),
        net.now,
        &mut n.to_device,
        &mut n.tx,
    );
    assert!(n.tx.is_empty(), "no answer");
    assert_eq!(n.core.stats().drops.get(DropReason::InvalidMac), before + 1);
    // Every datagram that answers a genuine probe is a probe of the same size.
    net.run(Duration::from_millis(500));
    for run in net.nodes[0].tx.runs(1) {
        if probe::is_probe(run.contents) {
            assert_eq!(run.contents.len(), probe::PROBE_LEN);
        }
    }
}

#[test]
fn a_restarted_core_is_reached_from_its_spoke_within_a_second() {
    // Alpha is the spoke: it knows beta's endpoints and pings through it. Beta, the core,
    // knows no endpoint of alpha (a spoke behind NAT): it answers where alpha comes from.
    let mut net = Net::new();
    let beta_peer = peer("alpha", 1, &[], "10.1.0.0/16");
    net.nodes[1].core = DataplaneCore::new([2; 32], std::slice::from_ref(&beta_peer)).unwrap();
    let now = net.now;
    let addrs = net.nodes[1].addrs.clone();
    net.nodes[1].core.set_local_addresses(uplinks(&addrs), now);
    net.run(Duration::from_secs(5));
    assert!(net.replies.len() > 80, "{} replies", net.replies.len());

    // kill -9 and start again: a new core with the same key and no memory of the session.
    // Alpha keeps sending on the old session, which beta no longer knows.
    let restart_at = net.now;
    net.nodes[1].core = DataplaneCore::new([2; 32], &[beta_peer]).unwrap();
    net.nodes[1]
        .core
        .set_local_addresses(uplinks(&addrs), restart_at);
    net.nodes[1].next_tick = restart_at;
    net.run(Duration::from_secs(3));
    let first = net
        .replies
        .iter()
        .find(|&&t| t > restart_at)
        .map(|t| *t - restart_at);
    eprintln!("core restart: first reply after {first:?}");
    assert!(
        first.is_some_and(|d| d < Duration::from_secs(1)),
        "first reply after the restart: {first:?}"
    );
    assert!(
        net.longest_gap_after(restart_at + Duration::from_secs(1)) < Duration::from_millis(200)
    );
}

#[test]
fn a_restarted_core_handshakes_at_once_with_peers_it_has_endpoints_for() {
    let mut net = started();
    let restart_at = net.now;
    let addrs = net.nodes[1].addrs.clone();
    net.nodes[1].core = DataplaneCore::new(
        [2; 32],
        &[peer(
            "alpha",
            1,
            &["198.51.100.1", "203.0.113.1"],
            "10.1.0.0/16",
        )],
    )
    .unwrap();
    net.nodes[1]
        .core
        .set_local_addresses(uplinks(&addrs), restart_at);
    net.nodes[1].next_tick = restart_at;
    net.run(Duration::from_millis(100));
    assert!(
        net.replies.iter().any(|&t| t > restart_at),
        "pings answered within 100 ms of the restart"
    );
}
