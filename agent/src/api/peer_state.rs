//! Whether a peer is up, stale or down: the one place that decides it, for `meshd peers`,
//! `meshd status` and the metrics alike. Pure: the data plane's [`PeerStats`] and `now` in.
//!
//! # The rule, in order
//!
//! 1. **down** when there is no live session: no handshake yet, or the last one is 180 s old
//!    or older (WireGuard's REJECT_AFTER_TIME: an older session carries nothing).
//! 2. **down** when the peer answers path probes (it is meshd) and every one of its paths is
//!    Down: three probes in a row went unanswered on each, so nothing we send arrives.
//! 3. **up** when an authenticated packet (data, keepalive, handshake or probe reply) came
//!    from the peer within its silence limit (below).
//! 4. **stale** otherwise: the session has not expired, but the peer has been silent longer
//!    than it would be if it were there. Never "up" for a silent peer.
//!
//! # The silence limit, and why
//!
//! Twice the interval at which a live peer sends something even when idle, plus 2 s for
//! one round trip and scheduling: one lost packet is not yet "stale", two are.
//!
//! - A peer that answers probes: the prober probes the active path every 2 s while idle
//!   (and faster after a loss), so a live meshd peer is heard from at least every ~2 s:
//!   limit **6 s**. A killed meshd peer has all its paths Down after three lost probes each,
//!   0.3–2.5 s after the kill depending on where in the idle probe cycle it fell (worst
//!   cases on the virtual clock, 10 ms RTT: 2.4 s on one path, 2.8 s on two), so it shows
//!   **down within 3 s**, never up after 6 s; "stale" is rarely seen for it.
//! - A peer that does not answer probes (wireguard-go, a phone, a router exported with
//!   `meshd export`): its persistent keepalive is the interval; meshd configures both ends
//!   of a link with the same keepalive, so ours is what we expect from it. With the usual
//!   25 s that is **52 s**. Without one, WireGuard's passive keepalive (a keepalive 10 s
//!   after received data when nothing else goes back) is the only thing we can count on:
//!   **22 s**. Such a peer, killed, is **stale within 52 s (22 s)** and **down** when its
//!   session expires, at most 180 s after the last handshake.
//!
//! An idle peer without keepalive is stale while idle: that is the truth, we have not heard
//! from it.

use std::time::{Duration, Instant};

use meshd_tunnel::path::PathState;
use serde::{Deserialize, Serialize};

use crate::dataplane::PeerStats;

/// A session older than this is expired: WireGuard rejects it after 180 s without a new
/// handshake (REJECT_AFTER_TIME).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// How often the prober hears from an idle meshd peer at the least (its idle probe interval).
pub const PROBE_IDLE_INTERVAL: Duration = Duration::from_secs(2);

/// WireGuard's passive keepalive: a peer that received data and sent nothing back sends a
/// keepalive after this long.
pub const PASSIVE_KEEPALIVE: Duration = Duration::from_secs(10);

/// Added to twice the interval: one round trip, timers and scheduling.
pub const SILENCE_GRACE: Duration = Duration::from_secs(2);

/// What a peer is to this node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Up,
    Stale,
    Down,
}

impl PeerState {
    /// Every state, in display order.
    pub const ALL: [PeerState; 3] = [PeerState::Up, PeerState::Stale, PeerState::Down];

    /// The state's name in JSON, output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Stale => "stale",
            PeerState::Down => "down",
        }
    }

    /// The value of `meshd_peer_state_code`: 0 down, 1 stale, 2 up (higher is better).
    pub fn code(self) -> u8 {
        match self {
            PeerState::Down => 0,
            PeerState::Stale => 1,
            PeerState::Up => 2,
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the state is what it is, for people and `--json` (`state_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No handshake completed yet.
    NoSession,
    /// The last handshake is [`SESSION_LIFETIME`] old or older.
    SessionExpired,
    /// The peer answers probes and every path is Down.
    AllPathsDown,
    /// An authenticated packet within the silence limit.
    Heard,
    /// Silent longer than the silence limit, session still live.
    Silent,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSession => "no session",
            Reason::SessionExpired => "session expired",
            Reason::AllPathsDown => "all paths down",
            Reason::Heard => "heard from recently",
            Reason::Silent => "silent, session not expired",
        }
    }
}

/// The verdict on one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: PeerState,
    pub reason: Reason,
    /// Time since the last authenticated packet from the peer (`None`: none ever came).
    pub last_received_ago: Option<Duration>,
    /// The silence limit applied.
    pub silence_limit: Duration,
}

/// How long `stats`' peer may be silent and still count as up (see the module docs).
/// `keepalive` is the peer's configured persistent keepalive.
pub fn silence_limit(probing: bool, keepalive: Option<Duration>) -> Duration {
    let interval = if probing {
        PROBE_IDLE_INTERVAL
    } else {
        keepalive
            .filter(|k| !k.is_zero())
            .unwrap_or(PASSIVE_KEEPALIVE)
    };
    interval * 2 + SILENCE_GRACE
}

/// Up, stale or down for the peer of `stats` at `now` (the clock the data plane's
/// `last_received` was taken on).
pub fn health(stats: &PeerStats, keepalive: Option<Duration>, now: Instant) -> Health {
    let last_received_ago = stats
        .last_received
        .map(|at| now.saturating_duration_since(at));
    let silence_limit = silence_limit(stats.probing, keepalive);
    let verdict = |state, reason| Health {
        state,
        reason,
        last_received_ago,
        silence_limit,
    };
    match stats.last_handshake {
        None => return verdict(PeerState::Down, Reason::NoSession),
        Some(age) if age >= SESSION_LIFETIME => {
            return verdict(PeerState::Down, Reason::SessionExpired);
        }
        Some(_) => {}
    }
    if stats.probing
        && !stats.paths.is_empty()
        && stats.paths.iter().all(|p| p.state == PathState::Down)
    {
        return verdict(PeerState::Down, Reason::AllPathsDown);
    }
    match last_received_ago {
        Some(ago) if ago <= silence_limit => verdict(PeerState::Up, Reason::Heard),
        _ => verdict(PeerState::Stale, Reason::Silent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_tunnel::path::{
        Path, PathAction, PathCandidate, PathProber, PathSource, ProberConfig,
    };

    fn stats(now: Instant) -> PeerStats {
        PeerStats {
            name: "beta".into(),
            public_key: [7; 32],
            endpoint: None,
            local_address: None,
            last_received: Some(now),
            probing: false,
            paths: Vec::new(),
            last_switch: None,
            path_switches: 0,
            rx_bytes: 0,
            rx_packets: 0,
            tx_bytes: 0,
            tx_packets: 0,
            transit_packets: 0,
            relay: None,
            relay_reason: None,
            relayed_packets: 0,
            handshakes: 1,
            last_handshake: Some(Duration::ZERO),
            rtt: None,
        }
    }

    #[test]
    fn limits_are_the_documented_ones() {
        assert_eq!(silence_limit(true, None), Duration::from_secs(6));
        assert_eq!(
            silence_limit(true, Some(Duration::from_secs(25))),
            Duration::from_secs(6)
        );
        assert_eq!(
            silence_limit(false, Some(Duration::from_secs(25))),
            Duration::from_secs(52)
        );
        assert_eq!(silence_limit(false, None), Duration::from_secs(22));
        assert_eq!(
            silence_limit(false, Some(Duration::ZERO)),
            Duration::from_secs(22)
        );
    }

    #[test]
    fn no_or_expired_session_is_down_even_when_heard_from() {
        let now = Instant::now();
        let mut s = stats(now);
        s.last_handshake = None;
        assert_eq!(health(&s, None, now).state, PeerState::Down);
        assert_eq!(health(&s, None, now).reason, Reason::NoSession);
        s.last_handshake = Some(SESSION_LIFETIME);
        assert_eq!(health(&s, None, now).reason, Reason::SessionExpired);
        s.last_handshake = Some(SESSION_LIFETIME - Duration::from_secs(1));
        assert_eq!(health(&s, None, now).state, PeerState::Up);
    }

    #[test]
    fn a_silent_peer_is_never_up() {
        let t0 = Instant::now();
        let mut s = stats(t0);
        s.last_received = None;
        let h = health(&s, None, t0);
        assert_eq!((h.state, h.last_received_ago), (PeerState::Stale, None));
        s.last_received = Some(t0);
        for (after, state) in [
            (0, PeerState::Up),
            (22, PeerState::Up),
            (23, PeerState::Stale),
        ] {
            let now = t0 + Duration::from_secs(after);
            s.last_handshake = Some(Duration::from_secs(after));
            let h = health(&s, None, now);
            assert_eq!(h.state, state, "{after} s after the last packet");
            assert_eq!(h.last_received_ago, Some(Duration::from_secs(after)));
        }
    }

    /// A meshd peer on one path, probed by the real prober on a virtual clock: it answers
    /// every probe after 10 ms until it is killed, then nothing.
    struct ProbedPeer {
        prober: PathProber,
        handshake_at: Instant,
        last_received: Instant,
        alive: bool,
        pending: Vec<(Instant, u32, u64)>,
    }

    impl ProbedPeer {
        fn new(paths: &[&str], t0: Instant) -> Self {
            let mut prober = PathProber::new(ProberConfig::default(), 1);
            let candidates = paths
                .iter()
                .enumerate()
                .map(|(i, remote)| PathCandidate {
                    path: Path {
                        local: None,
                        remote: remote.parse().unwrap(),
                    },
                    preference: u8::try_from(i).unwrap(),
                    source: PathSource::Configured {
                        name: (*remote).to_owned(),
                    },
                })
                .collect();
            prober.set_candidates(candidates, t0);
            prober.set_session_up(true, t0);
            ProbedPeer {
                prober,
                handshake_at: t0,
                last_received: t0,
                alive: true,
                pending: Vec::new(),
            }
        }

        /// Runs the clock to `now` in 10 ms steps, answering probes while alive.
        fn run_until(&mut self, from: Instant, now: Instant) {
            let mut t = from;
            while t < now {
                t += Duration::from_millis(10);
                let due: Vec<_> = self.pending.iter().filter(|p| p.0 <= t).copied().collect();
                self.pending.retain(|p| p.0 > t);
                for (_, id, seq) in due {
                    self.prober.probe_reply(id, seq, t);
                    self.last_received = t;
                }
                for action in self.prober.poll(t) {
                    if let PathAction::SendProbe { path_id, seq, .. } = action
                        && self.alive
                    {
                        self.pending
                            .push((t + Duration::from_millis(10), path_id, seq));
                    }
                }
            }
        }

        fn stats(&self, now: Instant) -> PeerStats {
            let mut s = stats(self.last_received);
            s.probing = self.prober.probing_supported();
            s.paths = self.prober.path_stats();
            s.last_handshake = Some(now - self.handshake_at);
            s
        }
    }

    /// The worst (stale, down) over kills at every 100 ms of the 2 s idle probe cycle.
    fn worst_after_kill(paths: &[&str], keepalive: Option<Duration>) -> (f64, f64) {
        (0..20).fold((0.0f64, 0.0f64), |(stale, down), phase| {
            let t0 = Instant::now();
            let mut peer = ProbedPeer::new(paths, t0);
            let (s, d) = after_kill(&mut peer, keepalive, t0, phase * 100);
            (stale.max(s), down.max(d))
        })
    }

    /// Seconds after the kill at which the peer is first stale and first down (checked every
    /// 100 ms), asserting it is never up again once it has been stale or down.
    fn after_kill(
        peer: &mut ProbedPeer,
        keepalive: Option<Duration>,
        t0: Instant,
        phase_ms: u64,
    ) -> (f64, f64) {
        let kill = t0 + Duration::from_secs(30) + Duration::from_millis(phase_ms);
        peer.run_until(t0, kill);
        assert_eq!(
            health(&peer.stats(kill), keepalive, kill).state,
            PeerState::Up,
            "alive peer: {:?}",
            peer.prober.path_stats()
        );
        peer.alive = false;
        peer.pending.clear();
        let (mut stale, mut down) = (None, None);
        let mut t = kill;
        while t < kill + Duration::from_secs(200) && down.is_none() {
            let next = t + Duration::from_millis(100);
            peer.run_until(t, next);
            t = next;
            let state = health(&peer.stats(t), keepalive, t).state;
            let since = (t - kill).as_secs_f64();
            match state {
                PeerState::Up => assert!(stale.is_none(), "up again at {since} s"),
                PeerState::Stale => {
                    stale.get_or_insert(since);
                }
                PeerState::Down => down = Some(since),
            }
        }
        let down = down.expect("a killed peer ends down");
        (stale.unwrap_or(down), down)
    }

    #[test]
    fn killed_meshd_core_is_down_within_3_seconds() {
        let (stale, down) = worst_after_kill(&["203.0.113.2:51820"], Some(Duration::from_secs(25)));
        eprintln!("one path, worst case: stale after {stale} s, down after {down} s");
        assert!(
            stale <= 4.0 && down <= 4.0,
            "stale {stale} s, down {down} s"
        );
    }

    #[test]
    fn killed_meshd_core_with_two_isps_is_down_within_3_5_seconds() {
        let (stale, down) = worst_after_kill(&["203.0.113.2:51820", "198.51.100.2:51820"], None);
        eprintln!("two paths, worst case: stale after {stale} s, down after {down} s");
        assert!(stale <= 3.5, "stale {stale} s");
        assert!(down <= 3.5, "down {down} s");
    }

    #[test]
    fn killed_peer_without_probes_is_stale_within_52_seconds_down_by_180() {
        // A wireguard-go peer with keepalive 25 s: heard every 25 s, then killed.
        let t0 = Instant::now();
        let keepalive = Some(Duration::from_secs(25));
        let mut s = stats(t0);
        let handshake_at = t0;
        let last_keepalive = t0 + Duration::from_secs(100);
        s.last_received = Some(last_keepalive);
        let mut stale = None;
        let mut down = None;
        let mut t = last_keepalive;
        while down.is_none() {
            t += Duration::from_secs(1);
            s.last_handshake = Some(t - handshake_at);
            match health(&s, keepalive, t).state {
                PeerState::Up => assert!(stale.is_none()),
                PeerState::Stale => {
                    stale.get_or_insert((t - last_keepalive).as_secs());
                }
                PeerState::Down => down = Some((t - handshake_at).as_secs()),
            }
        }
        assert_eq!(stale, Some(53), "first second past the 52 s limit");
        assert_eq!(down, Some(180), "when the session expires");
    }
}
