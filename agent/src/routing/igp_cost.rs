//! The BGP decision's IGP-cost step fed by the data plane: the cost to reach a mesh member's
//! next hop is the round-trip time of the tunnel that carries it. Pure.
//!
//! A member's overlay addresses (router id and IPv6 node address, the next hops of what it
//! announces) are carried by the data-plane peer whose prefixes match them most specifically
//! (the member itself, or for a spoke behind another core that core, or for a spoke's view
//! of the mesh its core). The cost is that peer's RTT in milliseconds: the smoothed probe RTT
//! of its active path when it answers probes, else its handshake RTT:
//!
//! - rounded to [`BUCKET_MS`], and changed only when the RTT moves a whole bucket away from
//!   the cost last published (hysteresis), so that jitter does not flap best paths and every
//!   change of cost is a real change of path quality;
//! - `None` (unreachable: the RIB drops paths through it) when the carrying peer has no
//!   session that can carry data any more. Only once it has had one: WireGuard starts a
//!   session with the first packet (here, typically the BGP session's), so a tunnel that was
//!   never up is not evidence of an outage, and excluding its paths would only delay the
//!   first routes until the next refresh;
//! - `None` too when the carrying peer answers path probes, every one of its paths is down
//!   and it is not relayed through another core: the prober knows within about a second,
//!   while the session would look alive for up to three minutes (a dead exit would keep the
//!   default route that long);
//! - 0 while a session is up but not yet measured (the responder measures only when the
//!   initiator's first data message arrives), which is also what the RIB assumes for a next
//!   hop it was never told about.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use super::member::MeshMember;
use crate::dataplane::DataplaneStats;
use crate::peerset::KnownPeer;
use crate::peerset::merge::carrier;

/// How often the data plane's RTTs are read.
pub const COST_REFRESH: Duration = Duration::from_secs(2);
/// Width of a cost bucket, and the distance the RTT must move from the published cost before
/// the cost changes.
pub const BUCKET_MS: u32 = 5;
/// A WireGuard session older than this (Reject-After-Time) carries no more data: the peer is
/// down until a new handshake completes.
const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// What the data plane says about the tunnel towards a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A session can carry data; its RTT if measured.
    Up(Option<Duration>),
    /// No usable session (or the carrying peer is not in the data plane yet).
    Down,
    /// No peer carries the address: the data plane has no opinion, so neither do we.
    NoCarrier,
}

/// The overlay addresses of every member but `own`: the next hops of the routes they announce.
pub fn member_next_hops(own: &str, members: &[MeshMember]) -> Vec<IpAddr> {
    members
        .iter()
        .filter(|m| m.name != own)
        .flat_map(|m| std::iter::once(IpAddr::V4(m.router_id)).chain(m.address6.map(IpAddr::V6)))
        .collect()
}

/// How each of `next_hops` is reached through the data plane's `peers`, judged by `stats`.
pub fn reach_of(
    next_hops: &[IpAddr],
    peers: &[KnownPeer],
    stats: &DataplaneStats,
) -> Vec<(IpAddr, Reach)> {
    let prefixes: Vec<Vec<ipnet::IpNet>> =
        peers.iter().map(|p| p.config.allowed_ips.clone()).collect();
    next_hops
        .iter()
        .map(|&next_hop| {
            let reach = match carrier(&prefixes, next_hop) {
                None => Reach::NoCarrier,
                Some(i) => match stats.peer(&peers[i].config.name) {
                    Some(peer) if probes_fail(peer) => Reach::Down,
                    Some(peer)
                        if peer
                            .last_handshake
                            .is_some_and(|age| age < SESSION_LIFETIME) =>
                    {
                        Reach::Up(measured_rtt(peer))
                    }
                    _ => Reach::Down,
                },
            };
            (next_hop, reach)
        })
        .collect()
}

/// Whether the path prober says the peer cannot be reached: it answers probes (so their
/// silence means something), it has paths and all are down, and no relay core carries its
/// traffic instead.
fn probes_fail(peer: &crate::dataplane::PeerStats) -> bool {
    peer.probing
        && peer.relay.is_none()
        && !peer.paths.is_empty()
        && peer
            .paths
            .iter()
            .all(|path| path.state == meshd_tunnel::path::PathState::Down)
}

/// The peer's round trip: the smoothed probe RTT of the path its traffic is on (measured
/// every few hundred milliseconds while it carries traffic, so it follows a path switch),
/// else the handshake RTT (a peer that does not answer probes, or before the first reply).
fn measured_rtt(peer: &crate::dataplane::PeerStats) -> Option<Duration> {
    peer.paths
        .iter()
        .find(|path| path.active)
        .and_then(|path| path.srtt)
        .or(peer.rtt)
}

/// The costs told to the speaker so far, and the hysteresis that decides the next ones.
#[derive(Debug, Default)]
pub struct IgpCosts {
    /// By next hop; a next hop missing here costs 0 in the RIB.
    published: HashMap<IpAddr, Option<u32>>,
    /// Next hops whose tunnel has been up.
    been_up: HashSet<IpAddr>,
}

impl IgpCosts {
    /// The cost changes for what the data plane reports now: `(next hop, cost)` to hand to
    /// `Speaker::set_igp_cost`, only for next hops whose cost changed. Next hops no longer
    /// reported keep their last cost (no path should use them any more).
    pub fn update(&mut self, observed: &[(IpAddr, Reach)]) -> Vec<(IpAddr, Option<u32>)> {
        let mut changes = Vec::new();
        for &(next_hop, reach) in observed {
            let published = self.published.get(&next_hop).copied().unwrap_or(Some(0));
            if matches!(reach, Reach::Up(_)) {
                self.been_up.insert(next_hop);
            }
            let wanted = match reach {
                Reach::Down if self.been_up.contains(&next_hop) => None,
                Reach::Down => Some(0),
                Reach::NoCarrier | Reach::Up(None) => Some(0),
                Reach::Up(Some(rtt)) => Some(match published {
                    Some(cost) if within_a_bucket(rtt, cost) => cost,
                    _ => bucket(rtt),
                }),
            };
            if wanted != published {
                changes.push((next_hop, wanted));
            }
            self.published.insert(next_hop, wanted);
        }
        changes
    }
}

/// `rtt` in milliseconds, rounded to the nearest multiple of [`BUCKET_MS`].
fn bucket(rtt: Duration) -> u32 {
    let width = u128::from(BUCKET_MS) * 1000;
    let rounded = (rtt.as_micros() + width / 2) / width * u128::from(BUCKET_MS);
    u32::try_from(rounded).unwrap_or(u32::MAX)
}

/// Whether `rtt` lies less than one bucket away from `cost` (milliseconds).
fn within_a_bucket(rtt: Duration, cost: u32) -> bool {
    let cost = Duration::from_millis(u64::from(cost));
    let width = Duration::from_millis(u64::from(BUCKET_MS));
    rtt.abs_diff(cost) < width
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::PeerStats;
    use crate::peerset::PeerKind;
    use crate::peerset::merge::tests::peer;
    use crate::routing::member::members_of;
    use crate::routing::member::tests::{core, spoke};

    const MEMBER: PeerKind = PeerKind::Node(Some(mesh_config::Role::Core));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer_stats(
        name: &str,
        last_handshake: Option<Duration>,
        rtt: Option<Duration>,
    ) -> PeerStats {
        PeerStats {
            name: name.into(),
            public_key: [0; 32],
            endpoint: None,
            rx_bytes: 0,
            rx_packets: 0,
            tx_bytes: 0,
            tx_packets: 0,
            transit_packets: 0,
            handshakes: 0,
            last_handshake,
            rtt,
            ..Default::default()
        }
    }

    #[test]
    fn buckets_round_to_the_nearest_five_milliseconds() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_micros(2_499), 0),
            (Duration::from_micros(2_500), 5),
            (ms(12), 10),
            (ms(13), 15),
            (ms(100), 100),
            (Duration::from_secs(u64::MAX), u32::MAX),
        ];
        for (rtt, cost) in cases {
            assert_eq!(bucket(rtt), cost, "{rtt:?}");
        }
    }

    /// A peer that answers probes is costed by the smoothed RTT of the path its traffic is
    /// on (here the backup, 41 ms), not by the handshake RTT nor by an idle path.
    #[test]
    fn a_probing_peer_costs_its_active_paths_smoothed_rtt() {
        use meshd_tunnel::path::{Path, PathSource, PathState, PathStats};
        let path = |remote: &str, srtt: u64, active: bool| PathStats {
            path: Path {
                local: None,
                remote: remote.parse().unwrap(),
            },
            path_id: 0,
            source: PathSource::Learned,
            preference: 0,
            state: PathState::Up,
            srtt: Some(ms(srtt)),
            rttvar: Duration::ZERO,
            lost: 0,
            sampled: 10,
            consecutive_misses: 0,
            up_since: None,
            active,
        };
        let mut probing = peer_stats("core2", Some(ms(1_000)), Some(ms(23)));
        probing.probing = true;
        probing.paths = vec![
            path("198.51.100.2:51820", 9, false),
            path("203.0.113.2:51820", 41, true),
        ];
        assert_eq!(measured_rtt(&probing), Some(ms(41)));
        // No reply yet on the active path: the handshake RTT stands in.
        probing.paths[1].srtt = None;
        assert_eq!(measured_rtt(&probing), Some(ms(23)));
    }

    /// A live session is not enough when the prober has seen every path die: the next hop is
    /// down at once, unless a relay carries the peer's traffic or the peer does not probe.
    #[test]
    fn a_probing_peer_whose_paths_are_all_down_is_down_unless_relayed() {
        use meshd_tunnel::path::{Path, PathSource, PathState, PathStats};
        let path = |remote: &str, state: PathState| PathStats {
            path: Path {
                local: None,
                remote: remote.parse().unwrap(),
            },
            path_id: 0,
            source: PathSource::Learned,
            preference: 0,
            state,
            srtt: Some(ms(9)),
            rttvar: Duration::ZERO,
            lost: 0,
            sampled: 10,
            consecutive_misses: 0,
            up_since: None,
            active: false,
        };
        let peers = [peer("exit", 1, MEMBER, &["10.2.0.0/16"])];
        let hop = [ip("10.2.0.1")];
        let reach = |stats: PeerStats| {
            let stats = DataplaneStats {
                peers: vec![stats],
                drops: Default::default(),
            };
            reach_of(&hop, &peers, &stats)[0].1
        };
        // A fresh session, probes answered until now.
        let mut exit = peer_stats("exit", Some(ms(10_000)), Some(ms(9)));
        exit.probing = true;
        exit.paths = vec![
            path("198.51.100.2:51820", PathState::Down),
            path("203.0.113.2:51820", PathState::Up),
        ];
        assert_eq!(reach(exit.clone()), Reach::Up(Some(ms(9))), "one path left");
        exit.paths[1].state = PathState::Down;
        assert_eq!(reach(exit.clone()), Reach::Down, "every path down");
        let mut relayed = exit.clone();
        relayed.relay = Some("core3".into());
        assert_eq!(reach(relayed), Reach::Up(Some(ms(9))), "a relay carries it");
        let mut not_probing = exit.clone();
        not_probing.probing = false;
        assert_eq!(
            reach(not_probing),
            Reach::Up(Some(ms(9))),
            "silence of a peer that never answers probes means nothing"
        );
        let mut unknown = exit.clone();
        unknown.paths[0].state = PathState::Unknown;
        assert_eq!(reach(unknown), Reach::Up(Some(ms(9))), "not yet known");

        // And the cost follows: the next hop becomes unreachable, then comes back.
        let mut costs = IgpCosts::default();
        exit.paths[1].state = PathState::Up;
        costs.update(&[(hop[0], reach(exit.clone()))]);
        exit.paths[1].state = PathState::Down;
        assert_eq!(
            costs.update(&[(hop[0], reach(exit.clone()))]),
            vec![(hop[0], None)]
        );
        exit.paths[1].state = PathState::Up;
        assert_eq!(
            costs.update(&[(hop[0], reach(exit))]),
            vec![(hop[0], Some(10))]
        );
    }

    #[test]
    fn next_hops_are_every_other_members_v4_and_v6_addresses() {
        let (members, _) = members_of(&[core(1), core(2), spoke(5, 2, &[])]);
        let hops = member_next_hops("core1", &members);
        let expected = ["10.2.0.1", "fd00:0:0:2::1", "10.5.0.1", "fd00:0:0:2:5::1"].map(ip);
        assert_eq!(hops, expected);
    }

    /// core1's view: core2 direct, spoke5 behind core2, spoke6 its own spoke (down), and an
    /// address nobody carries.
    #[test]
    fn a_next_hop_costs_what_the_tunnel_carrying_it_measures() {
        let peers = vec![
            peer(
                "core2",
                2,
                MEMBER,
                &[
                    "10.2.0.0/16",
                    "fd00:0:0:2::/64",
                    "10.5.0.0/16",
                    "fd00:0:0:2:5::/80",
                ],
            ),
            peer("spoke6", 6, MEMBER, &["10.6.0.0/16", "fd00:0:0:1:6::/80"]),
            peer("fresh", 7, MEMBER, &["10.7.0.0/16"]),
            peer("quiet", 8, MEMBER, &["10.8.0.0/16"]),
            peer("stale", 9, MEMBER, &["10.9.0.0/16"]),
        ];
        let stats = DataplaneStats {
            peers: vec![
                peer_stats("core2", Some(ms(30_000)), Some(ms(23))),
                peer_stats("spoke6", None, Some(ms(8))),
                peer_stats("quiet", Some(ms(1_000)), None),
                peer_stats("stale", Some(Duration::from_secs(200)), Some(ms(4))),
            ],
            drops: Default::default(),
        };
        let hops = [
            "10.2.0.1",
            "fd00:0:0:2:5::1",
            "10.6.0.1",
            "10.7.0.1",
            "10.8.0.1",
            "10.9.0.1",
            "10.99.0.1",
        ]
        .map(ip);
        let reach: Vec<Reach> = reach_of(&hops, &peers, &stats)
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            reach,
            [
                Reach::Up(Some(ms(23))),
                Reach::Up(Some(ms(23))), // a spoke behind core2: core2's tunnel
                Reach::Down,             // its session is gone (the old RTT is not used)
                Reach::Down,             // in the peer set, not yet in the data plane
                Reach::Up(None),         // not measured yet
                Reach::Down,             // older than Reject-After-Time
                Reach::NoCarrier,
            ]
        );
        let mut costs = IgpCosts::default();
        let mut changes = costs.update(&reach_of(&hops, &peers, &stats));
        changes.sort();
        let expected = [("10.2.0.1", Some(25)), ("fd00:0:0:2:5::1", Some(25))];
        assert_eq!(
            changes,
            expected.map(|(a, c)| (ip(a), c)),
            "unmeasured, uncarried and never-up next hops stay at 0, unsent"
        );

        // core2's session is gone, spoke6 comes up, quiet (up before) left the data plane.
        let stats = DataplaneStats {
            peers: vec![
                peer_stats("core2", None, Some(ms(23))),
                peer_stats("spoke6", Some(ms(10)), Some(ms(8))),
            ],
            drops: Default::default(),
        };
        let mut changes = costs.update(&reach_of(&hops, &peers, &stats));
        changes.sort();
        let expected = [
            ("10.2.0.1", None),
            ("10.6.0.1", Some(10)),
            ("10.8.0.1", None),
            ("fd00:0:0:2:5::1", None),
        ];
        assert_eq!(changes, expected.map(|(a, c)| (ip(a), c)));
    }

    #[test]
    fn jitter_within_a_bucket_changes_nothing() {
        let hop = ip("10.2.0.1");
        let mut costs = IgpCosts::default();
        // (measured RTT, change sent)
        let steps: [(Reach, Option<Option<u32>>); 11] = [
            (Reach::Down, None), // never up yet: no outage, no exclusion
            (Reach::Up(Some(ms(12))), Some(Some(10))),
            (Reach::Up(Some(ms(13))), None), // rounds to 15, but is within 5 ms of 10
            (Reach::Up(Some(ms(7))), None),
            (Reach::Up(Some(Duration::from_micros(14_999))), None),
            (Reach::Up(Some(ms(15))), Some(Some(15))), // a whole bucket away
            (Reach::Up(Some(ms(11))), None),
            (Reach::Up(None), Some(Some(0))),
            (Reach::Down, Some(None)),
            (Reach::Down, None),
            (Reach::Up(Some(ms(11))), Some(Some(10))), // back up: no stale cost held
        ];
        for (i, (reach, change)) in steps.into_iter().enumerate() {
            let expected: Vec<(IpAddr, Option<u32>)> =
                change.map(|c| (hop, c)).into_iter().collect();
            assert_eq!(
                costs.update(&[(hop, reach)]),
                expected,
                "step {i}: {reach:?}"
            );
        }
    }

    #[test]
    fn a_first_measurement_near_zero_sends_nothing() {
        let hop = ip("fd00:0:0:2::1");
        let mut costs = IgpCosts::default();
        assert!(costs.update(&[(hop, Reach::Up(Some(ms(2))))]).is_empty());
        assert!(costs.update(&[(hop, Reach::NoCarrier)]).is_empty());
        assert_eq!(
            costs.update(&[(hop, Reach::Up(Some(ms(40))))]),
            [(hop, Some(40))]
        );
    }
}
