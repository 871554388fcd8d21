//! Relay through a third core, on a virtual clock: three cores on one ISP
//! (198.51.100.1-3), pings from alpha to beta every 50 ms; the ISP drops everything between
//! alpha and beta (both directions) while gamma still reaches both. Traffic must go through
//! gamma within a second, and back to the direct path once it works again.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::path::RelayReason;

const PORT: u16 = 51820;
const STEP: Duration = Duration::from_millis(5);
const PING_EVERY: Duration = Duration::from_millis(50);
const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

fn addr(i: usize) -> IpAddr {
    IpAddr::from([198, 51, 100, i as u8 + 1])
}

fn prefix(i: usize) -> [u8; 4] {
    [10, i as u8 + 1, 0, 1]
}

fn public(i: usize) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from([i as u8 + 1; 32])).as_bytes()
}

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

struct Node {
    core: DataplaneCore,
    to_device: PacketBatch,
    tx: TxBatch,
    next_tick: Instant,
}

struct Net {
    nodes: Vec<Node>,
    /// Pairs of nodes (lower index first) between which the ISP drops everything.
    cut: HashSet<(usize, usize)>,
    now: Instant,
    replies: Vec<Instant>,
    next_ping: Instant,
}

impl Net {
    fn new(relay: bool) -> Self {
        let now = Instant::now();
        let nodes = (0..3)
            .map(|i| {
                let peers: Vec<PeerConfig> = (0..3)
                    .filter(|&j| j != i)
                    .map(|j| PeerConfig {
                        name: NAMES[j].into(),
                        public_key: public(j),
                        endpoints: vec![SocketAddr::new(addr(j), PORT)],
                        allowed_ips: vec![format!("10.{}.0.0/16", j + 1).parse().unwrap()],
                        ecmp_ips: Vec::new(),
                        persistent_keepalive: None,
                        relay,
                    })
                    .collect();
                let core = DataplaneCore::new([i as u8 + 1; 32], &peers).unwrap();
                core.set_local_addresses(
                    vec![LocalUplink {
                        address: addr(i),
                        interface: "isp".into(),
                    }],
                    now,
                );
                Node {
                    core,
                    to_device: PacketBatch::new(),
                    tx: TxBatch::new(1 << 20),
                    next_tick: now,
                }
            })
            .collect();
        Net {
            nodes,
            cut: HashSet::new(),
            now,
            replies: Vec::new(),
            next_ping: now,
        }
    }

    fn send(&mut self, i: usize, packet: &[u8]) {
        let n = &mut self.nodes[i];
        let snap = n.core.snapshot();
        n.core.handle_outbound(&snap, packet, self.now, &mut n.tx);
    }

    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.now += STEP;
            let now = self.now;
            if now >= self.next_ping {
                self.next_ping += PING_EVERY;
                self.send(0, &ipv4(prefix(0), prefix(1)));
            }
            for n in &mut self.nodes {
                if now >= n.next_tick {
                    n.core.tick(now, &mut n.tx);
                    n.next_tick = now + Duration::from_millis(250);
                } else if n.core.next_path_deadline().is_some_and(|d| d <= now) {
                    n.core.poll_paths(now, &mut n.tx);
                }
            }
            self.deliver();
            let pings = self.nodes[1].to_device.packets().count();
            self.nodes[1].to_device.clear();
            for _ in 0..pings {
                self.send(1, &ipv4(prefix(1), prefix(0)));
            }
            self.deliver();
            let answers = self.nodes[0].to_device.packets().count();
            self.nodes[0].to_device.clear();
            self.replies.extend(std::iter::repeat_n(now, answers));
            self.nodes[2].to_device.clear();
        }
    }

    fn deliver(&mut self) {
        loop {
            let mut in_flight = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                for run in n.tx.runs(1) {
                    in_flight.push((i, run.dst, run.contents.to_vec()));
                }
                n.tx.clear();
            }
            if in_flight.is_empty() {
                return;
            }
            for (from, dst, datagram) in in_flight {
                let Some(to) = (0..3).find(|&j| addr(j) == dst.ip()) else {
                    continue;
                };
                if self.cut.contains(&(from.min(to), from.max(to))) {
                    continue;
                }
                let n = &mut self.nodes[to];
                let snap = n.core.snapshot();
                n.core.handle_inbound_on(
                    &snap,
                    &datagram,
                    SocketAddr::new(addr(from), PORT),
                    Some(dst.ip()),
                    self.now,
                    &mut n.to_device,
                    &mut n.tx,
                );
            }
        }
    }

    fn longest_gap_after(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut gap = Duration::ZERO;
        for &t in self.replies.iter().filter(|&&t| t > since) {
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(self.now - last)
    }

    fn stats(&self, node: usize, peer: usize) -> PeerStats {
        self.nodes[node]
            .core
            .stats()
            .peers
            .into_iter()
            .find(|p| p.name == NAMES[peer])
            .unwrap()
    }

    fn drops(&self, node: usize, reason: DropReason) -> u64 {
        self.nodes[node].core.stats().drops.get(reason)
    }
}

fn started(relay: bool) -> Net {
    let mut net = Net::new(relay);
    // gamma talks to both, so every tunnel has a session.
    net.send(2, &ipv4(prefix(2), prefix(0)));
    net.send(2, &ipv4(prefix(2), prefix(1)));
    net.run(Duration::from_secs(5));
    assert!(
        net.replies.len() > 80,
        "no mesh: {} replies",
        net.replies.len()
    );
    net
}

#[test]
fn traffic_goes_through_the_third_core_while_the_direct_path_is_cut_and_then_back() {
    let mut net = started(true);
    let cut_at = net.now;
    net.cut.insert((0, 1));
    net.run(Duration::from_secs(5));
    let gap = net.longest_gap_after(cut_at);
    assert!(gap < Duration::from_secs(1), "replies stopped for {gap:?}");
    let alpha_to_beta = net.stats(0, 1);
    assert_eq!(alpha_to_beta.relay.as_deref(), Some("gamma"));
    assert_eq!(alpha_to_beta.relay_reason, Some(RelayReason::DirectDown));
    assert!(alpha_to_beta.relayed_packets > 50);
    assert_eq!(
        net.stats(1, 0).relay.as_deref(),
        Some("gamma"),
        "beta answers via gamma too"
    );
    assert!(net.stats(2, 0).transit_packets > 50 && net.stats(2, 1).transit_packets > 50);

    // The ISP recovers: direct again after the return hold, without a gap.
    let healed_at = net.now;
    net.cut.clear();
    net.run(Duration::from_secs(6));
    assert!(net.longest_gap_after(healed_at) < Duration::from_millis(200));
    assert_eq!(net.stats(0, 1).relay, None);
    assert_eq!(net.stats(1, 0).relay, None);
    let transit = net.stats(2, 0).transit_packets;
    net.run(Duration::from_secs(2));
    assert_eq!(
        net.stats(2, 0).transit_packets,
        transit,
        "still through gamma"
    );
}

#[test]
fn without_relay_peers_a_cut_stops_the_traffic() {
    let mut net = started(false);
    let cut_at = net.now;
    net.cut.insert((0, 1));
    net.run(Duration::from_secs(5));
    assert!(net.longest_gap_after(cut_at) >= Duration::from_secs(4));
    assert_eq!(net.stats(0, 1).relay, None);
}

#[test]
fn a_core_cannot_use_another_cores_addresses_while_the_direct_path_works() {
    let mut net = started(true);
    let before = net.drops(1, DropReason::SpoofedSource);
    // gamma's device sends a packet from alpha's prefix to beta (gamma routes 10.2/16 to
    // beta): alpha and beta are fine directly, so beta refuses it.
    net.send(2, &ipv4(prefix(0), prefix(1)));
    net.run(Duration::from_millis(5));
    assert_eq!(net.drops(1, DropReason::SpoofedSource), before + 1);
}

/// alpha uses beta as its Internet exit (beta's peer entry carries 0.0.0.0/0) and gamma
/// does too, through alpha. What gamma sends to alpha's own addresses must reach alpha's
/// device, not go on to beta; what it sends to the Internet goes on to beta.
#[test]
fn packets_for_own_prefixes_stay_here_when_an_exit_default_covers_them() {
    let mut net = started(true);
    let with_default = |node: usize, exit: usize| -> Vec<PeerConfig> {
        (0..3)
            .filter(|&j| j != node)
            .map(|j| {
                let mut allowed: Vec<ipnet::IpNet> =
                    vec![format!("10.{}.0.0/16", j + 1).parse().unwrap()];
                if j == exit {
                    allowed.push("0.0.0.0/0".parse().unwrap());
                }
                PeerConfig {
                    name: NAMES[j].into(),
                    public_key: public(j),
                    endpoints: vec![SocketAddr::new(addr(j), PORT)],
                    allowed_ips: allowed,
                    ecmp_ips: Vec::new(),
                    persistent_keepalive: None,
                    relay: true,
                }
            })
            .collect()
    };
    net.nodes[0].core.update_peers(&with_default(0, 1)).unwrap();
    net.nodes[2].core.update_peers(&with_default(2, 0)).unwrap();
    net.nodes[0]
        .core
        .set_own_prefixes(&["10.1.0.0/16".parse().unwrap()]);
    for n in &mut net.nodes {
        n.to_device.clear();
    }
    let arrived = |net: &Net, node: usize, dst: [u8; 4]| -> usize {
        net.nodes[node]
            .to_device
            .packets()
            .filter(|p| p[16..20] == dst)
            .count()
    };

    let transit = |net: &Net| net.stats(0, 2).transit_packets;
    let before = transit(&net);
    net.send(2, &ipv4(prefix(2), prefix(0)));
    net.deliver();
    assert_eq!(arrived(&net, 0, prefix(0)), 1, "alpha's own address");
    assert_eq!(arrived(&net, 1, prefix(0)), 0, "relayed to the exit");
    assert_eq!(transit(&net), before);
    // (beta itself drops what alpha passes on from gamma: gamma is its own peer, so the
    // source does not route back to alpha. In a mesh gamma uses beta directly.)
    net.send(2, &ipv4(prefix(2), [192, 0, 2, 1]));
    net.deliver();
    assert_eq!(arrived(&net, 0, [192, 0, 2, 1]), 0);
    assert_eq!(transit(&net), before + 1, "the Internet goes on to beta");

    // Without the own prefixes (the bug): alpha's address follows the default to beta.
    net.nodes[0].core.set_own_prefixes(&[]);
    for n in &mut net.nodes {
        n.to_device.clear();
    }
    net.send(2, &ipv4(prefix(2), prefix(0)));
    net.deliver();
    assert_eq!(arrived(&net, 0, prefix(0)), 0);
    assert_eq!(transit(&net), before + 2);
}
