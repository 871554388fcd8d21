//! Relay through a third core: for one target core, whether its traffic goes on our own
//! direct paths or through another core, and which one. Pure: events and `now` in, actions
//! out.
//!
//! How it works. We ask the other cores (the relay candidates) "do you reach the target,
//! and how fast?" with a reach query ([`super::reach`]); each answers with the smoothed RTT
//! of its own active path to the target, or "no". A relay's cost is our RTT to it plus its
//! answer. The packet is then sent through the relay's own tunnel: the relay decrypts it
//! and forwards it to the target as transit (it sees the plaintext, as any core carrying a
//! spoke's traffic does; see docs/architecture.md for why not end-to-end encryption).
//!
//! When we use a relay:
//! - the target's direct paths are all down (the prober says so in under a second): the
//!   cheapest relay that answered "yes" within [`RelayConfig::answer_max_age`] at once;
//! - or a relay is much faster than the direct path (the seed's "through Asia" case): its
//!   cost is below `faster_percent` of the direct RTT and at least `faster_margin` less,
//!   without a break for `faster_hold`.
//!
//! When we stop: the direct path has been up for `return_hold` (and no relay is much
//! faster), or the relay's answers stop or say "no" (then the next relay, or direct).
//! A relay chosen for being faster is kept until it is no longer better than
//! `keep_percent` of the direct RTT, so a few milliseconds of jitter do not flap it.
//!
//! Query budget: while the direct path is down or a relay is in use, every candidate is
//! asked every `active_query_interval` (250 ms: a choice within a second). Otherwise one
//! candidate per `idle_query_interval` (10 s), in turn: 64 bytes each way, about 13 B/s per
//! target core in all, to notice a much faster relay.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Timers and thresholds of the relay choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// How often every candidate is asked while the direct path is down or a relay is used.
    pub active_query_interval: Duration,
    /// How often one candidate (in turn) is asked otherwise.
    pub idle_query_interval: Duration,
    /// An answer older than this no longer counts for the choice while queries are active.
    pub answer_max_age: Duration,
    /// A relay is "much faster" when its cost is below this percentage of the direct RTT...
    pub faster_percent: u32,
    /// ... and at least this much less ...
    pub faster_margin: Duration,
    /// ... for this long without a break.
    pub faster_hold: Duration,
    /// A relay chosen for being faster is left when its cost rises above this percentage
    /// of the direct RTT.
    pub keep_percent: u32,
    /// The direct path must be up this long before traffic returns to it.
    pub return_hold: Duration,
    /// A relay that said "I reach the target" within this window may carry the target's
    /// source addresses to us (the receiving side's check, see [`RelayChooser::vouches`]).
    pub vouch_window: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            active_query_interval: Duration::from_millis(250),
            idle_query_interval: Duration::from_secs(10),
            answer_max_age: Duration::from_secs(1),
            faster_percent: 70,
            faster_margin: Duration::from_millis(20),
            faster_hold: Duration::from_secs(20),
            keep_percent: 85,
            return_hold: Duration::from_secs(2),
            vouch_window: Duration::from_secs(120),
        }
    }
}

/// A core that could relay to the target: its relay id (the core's peer slot) and our
/// smoothed RTT to it on its active path (only cores whose active path is up are offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCandidate {
    pub relay: u32,
    pub rtt: Duration,
}

/// Why the relay choice changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayReason {
    /// Every direct path to the target is down.
    DirectDown,
    /// A relay is much faster than the direct path.
    Faster,
    /// The direct path is up again (for the return hold) or better again.
    DirectBack,
    /// The relay stopped answering, said it no longer reaches the target, or our path to
    /// it went down.
    RelayLost,
}

impl fmt::Display for RelayReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayReason::DirectDown => "no direct path works",
            RelayReason::Faster => "the relay is much faster than the direct path",
            RelayReason::DirectBack => "the direct path works again",
            RelayReason::RelayLost => "the relay no longer reaches the peer",
        })
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Send a reach query about the target to `relay` with this sequence number.
    Query { relay: u32, seq: u64 },
    /// The target's traffic now goes through `to` (`None`: direct) instead of `from`.
    Switched {
        from: Option<u32>,
        to: Option<u32>,
        reason: RelayReason,
    },
}

/// What we know from one relay candidate.
#[derive(Debug, Clone, Default)]
struct Asked {
    /// The highest sequence number sent to it, and the highest answered: an answer is taken
    /// only once and only for a query we sent (no replays).
    last_sent: Option<u64>,
    last_answered: Option<u64>,
    /// Its latest answer: its RTT to the target (`None`: does not reach it), and when.
    answer: Option<(Option<Duration>, Instant)>,
}

/// The relay choice for one target core.
#[derive(Debug, Clone)]
pub struct RelayChooser {
    cfg: RelayConfig,
    asked: BTreeMap<u32, Asked>,
    next_seq: u64,
    active: Option<(u32, RelayReason)>,
    direct_up_since: Option<Instant>,
    /// The relay that has been much faster than the direct path, and since when.
    faster: Option<(u32, Instant)>,
    last_active_query: Option<Instant>,
    last_idle_query: Option<Instant>,
    idle_turn: usize,
    /// Whether the last poll was in the active query regime (for `next_deadline`).
    querying_actively: bool,
    /// An answer came since the last poll: poll again at once, it may change the choice.
    answered: bool,
    last_now: Option<Instant>,
}

impl RelayChooser {
    /// A chooser with these timers; sequence numbers start at `first_seq` (random in the
    /// core, so answers to an earlier run are not taken for answers to this one).
    pub fn new(cfg: RelayConfig, first_seq: u64) -> Self {
        RelayChooser {
            cfg,
            asked: BTreeMap::new(),
            next_seq: first_seq,
            active: None,
            direct_up_since: None,
            faster: None,
            last_active_query: None,
            last_idle_query: None,
            idle_turn: 0,
            querying_actively: false,
            answered: false,
            last_now: None,
        }
    }

    /// The relay the target's traffic goes through now (`None`: direct).
    pub fn active(&self) -> Option<u32> {
        self.active.map(|(relay, _)| relay)
    }

    /// Why the current relay is used.
    pub fn active_reason(&self) -> Option<RelayReason> {
        self.active.map(|(_, reason)| reason)
    }

    /// An answer from `relay` to our query `seq`: its RTT to the target, `None` if it does
    /// not reach it. False (and ignored) if we did not ask that or it was answered already.
    pub fn answer(&mut self, relay: u32, seq: u64, rtt: Option<Duration>, now: Instant) -> bool {
        let Some(asked) = self.asked.get_mut(&relay) else {
            return false;
        };
        let sent = asked.last_sent.is_some_and(|last| seq <= last);
        let fresh = asked.last_answered.is_none_or(|last| seq > last);
        // Sequence numbers may wrap after 2^64 queries; not in this universe.
        if !(sent && fresh) {
            return false;
        }
        asked.last_answered = Some(seq);
        asked.answer = Some((rtt, now));
        self.answered = true;
        true
    }

    /// Whether traffic from the target may reach us through `relay` (the receiving side's
    /// check): it is our relay for the target, or it told us within the vouch window that it
    /// reaches the target, and that way is not clearly slower than `direct` (our smoothed
    /// RTT to the target, `None` if no direct path works). `relay_rtt` is our RTT to the
    /// relay. The bar is lower than for choosing a relay (`keep_percent`, not
    /// `faster_percent`), so the far side, measuring the same paths from its end, never
    /// relays where we refuse; and a core cannot send with another core's addresses while
    /// the direct path between them is the better one.
    pub fn vouches(
        &self,
        relay: u32,
        relay_rtt: Option<Duration>,
        direct: Option<Duration>,
        now: Instant,
    ) -> bool {
        if self.active() == Some(relay) {
            return true;
        }
        let Some((Some(their_rtt), at)) = self.asked.get(&relay).and_then(|a| a.answer) else {
            return false;
        };
        if now.saturating_duration_since(at) > self.cfg.vouch_window {
            return false;
        }
        match (direct, relay_rtt) {
            (None, _) => true,
            (Some(direct), Some(relay_rtt)) => {
                (relay_rtt + their_rtt) * 100 < direct * self.cfg.keep_percent
            }
            (Some(_), None) => false,
        }
    }

    /// Runs the choice: `direct` is the smoothed RTT of the target's active direct path if
    /// it is up (`None`: no direct path works), `candidates` the cores that could relay.
    pub fn poll(
        &mut self,
        now: Instant,
        direct: Option<Duration>,
        candidates: &[RelayCandidate],
        out: &mut Vec<RelayAction>,
    ) {
        self.last_now = Some(now);
        self.answered = false;
        self.asked
            .retain(|relay, _| candidates.iter().any(|c| c.relay == *relay));
        match direct {
            Some(_) => {
                self.direct_up_since.get_or_insert(now);
            }
            None => self.direct_up_since = None,
        }
        self.choose(now, direct, candidates, out);
        self.query(now, direct, candidates, out);
    }

    /// When `poll` has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let now = self.last_now?;
        if self.answered {
            return Some(now);
        }
        let mut next = if self.querying_actively {
            self.last_active_query
                .map_or(now, |t| t + self.cfg.active_query_interval)
        } else {
            self.last_idle_query
                .map_or(now, |t| t + self.cfg.idle_query_interval)
        };
        if let (Some(since), Some(_)) = (self.direct_up_since, self.active) {
            next = next.min(since + self.cfg.return_hold);
        }
        if let Some((_, since)) = self.faster {
            next = next.min(since + self.cfg.faster_hold);
        }
        Some(next)
    }

    /// The cost through each candidate that answered "yes" recently enough.
    fn costs<'a>(
        &'a self,
        now: Instant,
        max_age: Duration,
        candidates: &'a [RelayCandidate],
    ) -> impl Iterator<Item = (u32, Duration)> + 'a {
        candidates.iter().filter_map(move |c| {
            let (rtt, at) = self.asked.get(&c.relay)?.answer?;
            (now.saturating_duration_since(at) <= max_age).then_some((c.relay, c.rtt + rtt?))
        })
    }

    fn cheapest(
        &self,
        now: Instant,
        max_age: Duration,
        candidates: &[RelayCandidate],
    ) -> Option<(u32, Duration)> {
        self.costs(now, max_age, candidates)
            .min_by_key(|&(relay, cost)| (cost, relay))
    }

    fn much_faster(&self, cost: Duration, direct: Duration) -> bool {
        cost * 100 < direct * self.cfg.faster_percent && cost + self.cfg.faster_margin <= direct
    }

    fn choose(
        &mut self,
        now: Instant,
        direct: Option<Duration>,
        candidates: &[RelayCandidate],
        out: &mut Vec<RelayAction>,
    ) {
        let fresh = self.cfg.answer_max_age;
        let current = self.active();
        let current_cost = current.and_then(|relay| {
            self.costs(now, fresh, candidates)
                .find(|&(r, _)| r == relay)
                .map(|(_, cost)| cost)
        });
        let Some(direct) = direct else {
            self.faster = None;
            // Keep a working relay (no hopping between relays of similar cost).
            if current_cost.is_some() {
                if self.active_reason() != Some(RelayReason::DirectDown) {
                    self.active = current.map(|r| (r, RelayReason::DirectDown));
                }
                return;
            }
            let to = self
                .cheapest(now, fresh, candidates)
                .map(|(relay, _)| relay);
            let reason = if current.is_some() {
                RelayReason::RelayLost
            } else {
                RelayReason::DirectDown
            };
            return self.switch(to, RelayReason::DirectDown, reason, out);
        };

        // The direct path works. Idle answers are up to a full rotation old; that is fine
        // for "much faster", which must also hold for `faster_hold`.
        let rotation = self.cfg.idle_query_interval * (candidates.len().max(1) as u32 + 1);
        let max_age = if current.is_some() { fresh } else { rotation };
        match (current, current_cost) {
            (Some(_), None) => {
                self.faster = None;
                self.switch(None, RelayReason::DirectBack, RelayReason::RelayLost, out)
            }
            (Some(relay), Some(cost)) => {
                let since = self.direct_up_since.unwrap_or(now);
                if cost * 100 < direct * self.cfg.keep_percent {
                    // Still clearly better than direct: stay, now for that reason.
                    self.active = Some((relay, RelayReason::Faster));
                } else if self.active_reason() == Some(RelayReason::Faster)
                    || now.saturating_duration_since(since) >= self.cfg.return_hold
                {
                    self.switch(None, RelayReason::DirectBack, RelayReason::DirectBack, out)
                }
            }
            (None, _) => {
                let best = self
                    .cheapest(now, max_age, candidates)
                    .filter(|&(_, cost)| self.much_faster(cost, direct));
                match (best, self.faster) {
                    (None, _) => self.faster = None,
                    (Some((relay, _)), Some((was, since))) if relay == was => {
                        if now.saturating_duration_since(since) >= self.cfg.faster_hold {
                            self.faster = None;
                            self.switch(Some(relay), RelayReason::Faster, RelayReason::Faster, out);
                        }
                    }
                    (Some((relay, _)), _) => self.faster = Some((relay, now)),
                }
            }
        }
    }

    /// Makes `to` the relay (`None`: direct), logging `reason`; `keep` is the reason the new
    /// relay is held for.
    fn switch(
        &mut self,
        to: Option<u32>,
        keep: RelayReason,
        reason: RelayReason,
        out: &mut Vec<RelayAction>,
    ) {
        let from = self.active();
        self.active = to.map(|relay| (relay, keep));
        if from != to {
            out.push(RelayAction::Switched { from, to, reason });
        }
    }

    fn query(
        &mut self,
        now: Instant,
        direct: Option<Duration>,
        candidates: &[RelayCandidate],
        out: &mut Vec<RelayAction>,
    ) {
        if candidates.is_empty() {
            self.querying_actively = false;
            return;
        }
        self.querying_actively = direct.is_none() || self.active.is_some();
        if self.querying_actively {
            if self
                .last_active_query
                .is_some_and(|t| now < t + self.cfg.active_query_interval)
            {
                return;
            }
            self.last_active_query = Some(now);
            for c in candidates {
                let seq = self.sent(c.relay);
                out.push(RelayAction::Query {
                    relay: c.relay,
                    seq,
                });
            }
        } else {
            self.last_active_query = None;
            if self
                .last_idle_query
                .is_some_and(|t| now < t + self.cfg.idle_query_interval)
            {
                return;
            }
            self.last_idle_query = Some(now);
            let c = candidates[self.idle_turn % candidates.len()];
            self.idle_turn = self.idle_turn.wrapping_add(1);
            let seq = self.sent(c.relay);
            out.push(RelayAction::Query {
                relay: c.relay,
                seq,
            });
        }
    }

    fn sent(&mut self, relay: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.asked.entry(relay).or_default().last_sent = Some(seq);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    struct Run {
        chooser: RelayChooser,
        t0: Instant,
        switches: Vec<(u64, Option<u32>, RelayReason)>,
    }

    impl Run {
        fn new() -> Self {
            Run {
                chooser: RelayChooser::new(RelayConfig::default(), 100),
                t0: Instant::now(),
                switches: Vec::new(),
            }
        }

        /// Polls every 50 ms from `from_ms` to `to_ms`; each query is answered by `reach`
        /// (relay -> its RTT to the target) after 5 ms.
        fn run(
            &mut self,
            from_ms: u64,
            to_ms: u64,
            direct: Option<Duration>,
            candidates: &[RelayCandidate],
            reach: &dyn Fn(u32) -> Option<Option<Duration>>,
        ) {
            let mut t = from_ms;
            while t < to_ms {
                let now = self.t0 + Duration::from_millis(t);
                let mut out = Vec::new();
                self.chooser.poll(now, direct, candidates, &mut out);
                for action in out {
                    match action {
                        RelayAction::Query { relay, seq } => {
                            if let Some(answer) = reach(relay) {
                                assert!(self.chooser.answer(relay, seq, answer, now + 5 * MS));
                                assert!(!self.chooser.answer(relay, seq, answer, now + 6 * MS));
                            }
                        }
                        RelayAction::Switched { to, reason, .. } => {
                            self.switches.push((t, to, reason))
                        }
                    }
                }
                t += 50;
            }
        }
    }

    fn relays(rtts: &[(u32, u64)]) -> Vec<RelayCandidate> {
        rtts.iter()
            .map(|&(relay, rtt)| RelayCandidate {
                relay,
                rtt: Duration::from_millis(rtt),
            })
            .collect()
    }

    #[test]
    fn a_dead_direct_path_goes_through_the_cheapest_relay_and_comes_back() {
        let mut run = Run::new();
        let cands = relays(&[(2, 10), (3, 5)]);
        let reach = |r: u32| Some(Some(if r == 2 { 10 * MS } else { 30 * MS }));
        run.run(0, 30_000, Some(20 * MS), &cands, &reach);
        assert!(run.switches.is_empty(), "{:?}", run.switches);
        run.run(30_000, 31_000, None, &cands, &reach);
        // Relay 2 costs 20 ms, relay 3 35 ms; chosen within 100 ms of the direct path dying.
        assert_eq!(run.switches.len(), 1);
        let (at, to, reason) = run.switches[0];
        assert!(at <= 30_100, "switched at {at}");
        assert_eq!((to, reason), (Some(2), RelayReason::DirectDown));
        // Back 2 s after the direct path works again, not before.
        run.run(31_000, 34_000, Some(20 * MS), &cands, &reach);
        assert_eq!(run.switches.len(), 2);
        let (at, to, reason) = run.switches[1];
        assert!((33_000..33_100).contains(&at), "returned at {at}");
        assert_eq!((to, reason), (None, RelayReason::DirectBack));
    }

    #[test]
    fn a_relay_that_stops_reaching_the_target_is_replaced() {
        let mut run = Run::new();
        let cands = relays(&[(2, 10), (3, 10)]);
        run.run(0, 500, None, &cands, &|_| Some(Some(10 * MS)));
        assert_eq!(run.switches[0].1, Some(2));
        run.run(500, 2_000, None, &cands, &|r| {
            Some((r == 3).then_some(10 * MS))
        });
        assert_eq!(
            run.switches[1],
            (run.switches[1].0, Some(3), RelayReason::RelayLost)
        );
        // Nobody answers any more: no relay (the answers age out within a second).
        run.run(2_000, 4_000, None, &cands, &|_| None);
        assert_eq!(run.switches.last().unwrap().1, None);
        assert_eq!(run.switches.len(), 3);
    }

    #[test]
    fn a_much_faster_relay_is_used_after_the_hold_and_a_slightly_faster_one_never() {
        let cfg = RelayConfig::default();
        // 150 ms direct, 40 + 60 = 100 ms through relay 2 (67 %): used after faster_hold.
        let mut run = Run::new();
        let cands = relays(&[(2, 40)]);
        run.run(0, 60_000, Some(150 * MS), &cands, &|_| Some(Some(60 * MS)));
        assert_eq!(run.switches.len(), 1, "{:?}", run.switches);
        let (at, to, reason) = run.switches[0];
        assert_eq!((to, reason), (Some(2), RelayReason::Faster));
        assert!(at >= cfg.faster_hold.as_millis() as u64);
        // The direct path improves to 110 ms: 100 ms is no longer 85 % of it: back.
        run.run(60_000, 61_000, Some(110 * MS), &cands, &|_| {
            Some(Some(60 * MS))
        });
        assert_eq!(run.switches.len(), 2);
        assert_eq!(run.switches[1].1, None);

        // 120 ms direct, 100 ms relayed (83 %): never.
        let mut run = Run::new();
        run.run(0, 120_000, Some(120 * MS), &cands, &|_| Some(Some(60 * MS)));
        assert!(run.switches.is_empty(), "{:?}", run.switches);
    }

    #[test]
    fn idle_queries_stay_within_the_budget_and_answers_are_not_replayable() {
        let mut chooser = RelayChooser::new(RelayConfig::default(), u64::MAX - 1);
        let t0 = Instant::now();
        let cands = relays(&[(2, 10), (3, 10), (4, 10)]);
        let mut queries = Vec::new();
        for s in 0..600u64 {
            let mut out = Vec::new();
            chooser.poll(t0 + Duration::from_secs(s), Some(20 * MS), &cands, &mut out);
            queries.extend(out.into_iter().filter_map(|a| match a {
                RelayAction::Query { relay, seq } => Some((relay, seq)),
                RelayAction::Switched { .. } => None,
            }));
        }
        // One query per 10 s: 60 in 10 minutes, 128 bytes per exchange = 12.8 B/s.
        assert_eq!(queries.len(), 60);
        let (relay, seq) = queries[5];
        assert!(
            !chooser.answer(relay, seq.wrapping_add(1_000), None, t0),
            "never asked"
        );
        assert!(!chooser.answer(9, seq, None, t0), "not a candidate");
    }

    #[test]
    fn vouching_needs_a_recent_yes_and_a_relay_that_is_not_slower() {
        let mut run = Run::new();
        let cands = relays(&[(2, 10), (3, 10)]);
        run.run(0, 25_000, Some(20 * MS), &cands, &|r| {
            Some((r == 2).then_some(5 * MS))
        });
        let now = run.t0 + Duration::from_secs(25);
        let c = &run.chooser;
        // Direct down: a relay that reaches the target is believed.
        assert!(c.vouches(2, Some(10 * MS), None, now));
        // Direct at 20 ms: 15 ms through relay 2 is below 85 %, 18 ms is not.
        assert!(c.vouches(2, Some(10 * MS), Some(20 * MS), now));
        assert!(!c.vouches(2, Some(13 * MS), Some(20 * MS), now));
        assert!(!c.vouches(3, Some(MS), None, now), "said no");
        assert!(!c.vouches(4, Some(MS), None, now), "never asked");
        let later = now + Duration::from_secs(200);
        assert!(!c.vouches(2, Some(MS), None, later), "too old");
    }
}
