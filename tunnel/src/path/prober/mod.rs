//! Which path a peer's traffic takes, decided from probes: one [`PathProber`] per peer.
//!
//! Pure and deterministic: every event carries `now`, nothing reads a clock, and the only
//! output is [`PathAction`]s from [`PathProber::poll`]. The shell calls `poll` at
//! [`PathProber::next_deadline`] (and after events), sends the probes it asks for (see
//! [`super::probe`]), and applies `Switched` at once.
//!
//! This file holds the prober's state and its events (candidates, replies, traffic, local
//! addresses); each other job has its own file:
//!
//! - `path.rs`: the types a path is described and reported by;
//! - `action.rs`: what the prober asks of the shell, and why traffic moved;
//! - `config.rs`: the timers and thresholds (their reasons are below);
//! - `estimate.rs`: one path's RTT and loss figures, its timeout, health and rank;
//! - `schedule.rs`: when each path is probed, and when a probe counts as lost;
//! - `failover.rs`: whether traffic moves, and to which path;
//! - `roaming.rs`: learned paths (roaming, NAT) and when they are dropped.
//!
//! # Timers and why (defaults of [`ProberConfig`])
//!
//! - **Active path with traffic in the last second: a probe every 100 ms, down after 3 lost.**
//!   A probe counts as lost when its reply is not back after `2*srtt + 4*rttvar` (TCP's RTO
//!   shape, so a long path is not declared dead for being long), at least 100 ms and at most
//!   1 s (1 s before the first RTT sample). A dead path is therefore found 300 ms to ~700 ms
//!   after it dies on typical RTTs, and traffic moves at once: under the 1 s goal of issue #12,
//!   and 3 (not 1) so a single lost datagram does not move traffic.
//! - **Active path idle: every 2 s.** Nobody is waiting for packets, so finding a dead path
//!   within about 2.5 s is enough, and the next packet makes probing fast again at once.
//! - **Standby paths: every 10 s each.** They only need to be roughly right when the active
//!   one dies, and then they are all probed at once anyway ("hunting", below).
//! - **After a lost probe, the next one goes out early:** 100 ms, then doubling per further
//!   loss (200, 400 ms ...), never later than the path's normal interval. So an idle path is
//!   confirmed dead in well under a second after its first loss, and a dead path backs off
//!   to the standby rate (about 13 s after it died) instead of costing 10 probes/s forever;
//!   while traffic waits and no path works at all, Down paths are retried at least every
//!   second, so a returning uplink carries traffic again within about a second.
//! - **When the active path goes down:** traffic moves at once to the best other path that is
//!   Up (else Unknown), and every other path is probed immediately, so a stale "Up" is found
//!   out within the same few hundred milliseconds.
//! - **Failback: a more preferred path must be Up for 10 s without a single lost probe**
//!   (probed every 250 ms meanwhile, so a path flapping faster than the hold cannot sneak
//!   in between two slow probes). Long enough to see a flapping link fail again, short
//!   enough that a repaired primary is used again soon.
//! - **Lower latency: only among paths of equal preference, only if better by more than
//!   max(20 %, 5 ms), and only after that held for 5 s.** A path 1 ms better never moves
//!   traffic (jitter is larger than that), a clearly better one does, but not on one sample.
//! - **Loss: a path with more than 20 % of its last 32 probes lost (at least 10 probed) is
//!   "lossy"**; traffic leaves a lossy active path for an Up path that is not lossy, and a
//!   lossy path is never a failback target. A path that drops every other reply never has 3
//!   losses in a row, so without this it would stay active while losing half the traffic.
//! - **Resolve: when no path is Up and the active one is down (or there is none), at most
//!   every 5 s.** The peer may have moved (DNS changed); asking more often does not help.
//! - **A peer that never answered a probe while its WireGuard session is up** is probably not
//!   meshd (wireguard-go, a static `[[peer]]`): while that is so, lost probes do not take
//!   paths down, and after 10 of them [`PathProber::probing_supported`] turns false; the core
//!   then uses the handshake-timeout selector for it. One probe a minute still goes to the
//!   active path, so a peer upgraded to meshd is noticed.
//!
//! # Idle byte budget per peer
//!
//! An idle peer with `n` paths gets one probe every 2 s on the active path and one every
//! 10 s on each of the others: `0.5 + 0.1 (n - 1)` probes per second. A probe is 64 bytes
//! of UDP payload, 92 bytes on the wire over IPv4 (112 over IPv6). Bytes this node sends
//! for its own probing of one idle peer (IPv4): 2 paths 55 B/s, 3 paths 64 B/s, 4 paths
//! 74 B/s. The replies coming back are the same size (no amplification), so the probe
//! traffic this node causes in both directions together is twice that (110/129/147 B/s);
//! the peer probing us adds as much again, in the other direction. The
//! `idle peer probing rate` case in `tunnel/tests/data/paths/` measures it.

mod action;
mod config;
mod estimate;
mod failover;
mod path;
mod roaming;
mod schedule;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use action::{PathAction, SwitchReason};
pub use config::{LOSS_WINDOW, ProberConfig, ROAM_HOLD};
use estimate::Entry;
pub use path::{Path, PathCandidate, PathSource, PathState, PathStats};

/// The path logic of one peer. See the module documentation.
#[derive(Debug, Clone)]
pub struct PathProber {
    cfg: ProberConfig,
    paths: Vec<Entry>,
    /// Id of the active path.
    active: Option<u32>,
    next_id: u32,
    next_seq: u64,
    last_traffic: Option<Instant>,
    gone_locals: Vec<IpAddr>,
    /// Learnt addresses we roamed to that then stopped answering, and when: for a while a
    /// packet from one of them no longer takes a working path away (see `authenticated`).
    failed_roams: Vec<(SocketAddr, Instant)>,
    session_up: bool,
    ever_answered: bool,
    silent_misses: u32,
    supported: bool,
    last_resolve: Option<Instant>,
    last_now: Option<Instant>,
    last_switch: Option<(Instant, SwitchReason)>,
    pending: Vec<PathAction>,
}

impl PathProber {
    /// A prober with no candidates yet. `first_seq` should be random (the shell draws it),
    /// so replies recorded before a restart do not match the new probes.
    pub fn new(cfg: ProberConfig, first_seq: u64) -> Self {
        PathProber {
            cfg,
            paths: Vec::new(),
            active: None,
            next_id: 1,
            next_seq: first_seq,
            last_traffic: None,
            gone_locals: Vec::new(),
            failed_roams: Vec::new(),
            session_up: false,
            ever_answered: false,
            silent_misses: 0,
            supported: true,
            last_resolve: None,
            last_now: None,
            last_switch: None,
            pending: Vec::new(),
        }
    }

    pub fn config(&self) -> &ProberConfig {
        &self.cfg
    }

    /// Replaces the candidate paths (the shell's full list: endpoints resolved x local
    /// uplinks, at most `max_paths`; duplicates are ignored). Known paths keep their state
    /// and statistics; learned paths the prober found itself stay while they are not Down.
    /// If the active path is gone, traffic moves at once.
    pub fn set_candidates(&mut self, candidates: Vec<PathCandidate>, now: Instant) {
        self.last_now = Some(now);
        let before = self.active_path();
        let mut old = std::mem::take(&mut self.paths);
        for candidate in candidates {
            if self.paths.len() >= self.cfg.max_paths
                || self.paths.iter().any(|e| e.path() == candidate.path)
            {
                continue;
            }
            let entry = match old.iter().position(|e| e.path() == candidate.path) {
                Some(i) => {
                    let mut e = old.swap_remove(i);
                    e.candidate = candidate;
                    e
                }
                None => self.new_entry(candidate),
            };
            self.paths.push(entry);
        }
        for e in old {
            let keep = e.candidate.source == PathSource::Learned && e.state != PathState::Down;
            if keep && self.paths.len() < self.cfg.max_paths {
                self.paths.push(e);
            }
        }
        if let Some(active) = self.active
            && self.index(active).is_none()
        {
            let to = self.best(None, true);
            self.switch(before, to, SwitchReason::Removed, now);
        }
        self.evaluate(now);
    }

    /// A probe reply for `path_id` / `seq` arrived (MAC verified). Returns false when no
    /// probe with that sequence number is awaited on that path (late, replayed, unknown).
    pub fn probe_reply(&mut self, path_id: u32, seq: u64, now: Instant) -> bool {
        self.last_now = Some(now);
        let Some(i) = self.index(path_id) else {
            return false;
        };
        let e = &mut self.paths[i];
        let Some(pos) = e.outstanding.iter().position(|&(s, _)| s == seq) else {
            return false;
        };
        let (_, sent) = e.outstanding.remove(pos).expect("position is in range");
        e.answered(sent, now);
        self.ever_answered = true;
        self.supported = true;
        self.evaluate(now);
        true
    }

    /// Data was sent to this peer: the active path is watched at the fast rate for the next
    /// `traffic_window`.
    pub fn traffic_sent(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.last_traffic = Some(now);
    }

    /// A local address went away: its paths are down at once (and not probed).
    pub fn local_address_down(&mut self, ip: IpAddr, now: Instant) {
        self.last_now = Some(now);
        if !self.gone_locals.contains(&ip) {
            self.gone_locals.push(ip);
        }
        for i in 0..self.paths.len() {
            if self.paths[i].path().local == Some(ip) {
                let e = &mut self.paths[i];
                e.local_gone = true;
                e.outstanding.clear();
                self.mark_down(i, SwitchReason::LocalAddressGone(ip));
            }
        }
        self.evaluate(now);
    }

    /// A local address is usable (again): its paths are candidates again, probed at once.
    pub fn local_address_up(&mut self, ip: IpAddr, now: Instant) {
        self.last_now = Some(now);
        self.gone_locals.retain(|&g| g != ip);
        for e in &mut self.paths {
            if e.path().local == Some(ip) && e.local_gone {
                e.local_gone = false;
                e.state = PathState::Unknown;
                e.misses = 0;
                e.probe_now = true;
            }
        }
        self.evaluate(now);
    }

    /// Whether the WireGuard session with the peer is established: a peer whose session is
    /// up but who never answers probes does not speak them.
    pub fn set_session_up(&mut self, up: bool, now: Instant) {
        self.last_now = Some(now);
        self.session_up = up;
    }

    /// Runs the timers: lost probes, switches, resolves, probes due. Returns the actions in
    /// the order they arose.
    pub fn poll(&mut self, now: Instant) -> Vec<PathAction> {
        let mut out = Vec::new();
        self.poll_into(now, &mut out);
        out
    }

    /// [`Self::poll`] appending to `out` (no allocation when `out` has room).
    pub fn poll_into(&mut self, now: Instant, out: &mut Vec<PathAction>) {
        self.last_now = Some(now);
        for i in 0..self.paths.len() {
            self.expire(i, now);
        }
        self.forget_stale_learned(now);
        self.evaluate(now);
        if self.supported
            && self.none_working()
            && self
                .last_resolve
                .is_none_or(|t| now >= t + self.cfg.resolve_interval)
        {
            self.last_resolve = Some(now);
            self.pending.push(PathAction::Resolve);
        }
        out.append(&mut self.pending);
        self.send_due_probes(now, out);
    }

    /// The path the peer's traffic goes on now.
    pub fn active_path(&self) -> Option<Path> {
        self.active_entry().map(Entry::path)
    }

    /// The state of the path the peer's traffic goes on now.
    pub fn active_state(&self) -> Option<PathState> {
        self.active_entry().map(|e| e.state)
    }

    /// The smoothed RTT of the active path, while it is up.
    pub fn active_up_srtt(&self) -> Option<Duration> {
        self.active_entry()
            .filter(|e| e.state == PathState::Up)
            .and_then(|e| e.srtt)
    }

    /// Whether every path has been tried and none works (the peer is unreachable directly);
    /// false while any path is up or still unanswered.
    pub fn all_down(&self) -> bool {
        !self.paths.is_empty() && self.paths.iter().all(|e| e.state == PathState::Down)
    }

    /// False once the peer is known not to answer probes (see the module documentation):
    /// the core then chooses its path the old way.
    pub fn probing_supported(&self) -> bool {
        self.supported
    }

    /// The last switch: when and why.
    pub fn last_switch(&self) -> Option<&(Instant, SwitchReason)> {
        self.last_switch.as_ref()
    }

    /// Every path with its state and measurements, in candidate order.
    pub fn path_stats(&self) -> Vec<PathStats> {
        self.paths
            .iter()
            .map(|e| PathStats {
                path: e.path(),
                path_id: e.id,
                source: e.candidate.source.clone(),
                preference: e.candidate.preference,
                state: e.state,
                srtt: e.srtt,
                rttvar: e.rttvar,
                lost: e.lost(),
                sampled: e.sampled,
                consecutive_misses: e.misses,
                up_since: e.up_since,
                active: Some(e.id) == self.active,
            })
            .collect()
    }

    fn new_entry(&mut self, candidate: PathCandidate) -> Entry {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let gone = candidate
            .path
            .local
            .is_some_and(|ip| self.gone_locals.contains(&ip));
        Entry::new(candidate, id, gone)
    }

    fn index(&self, id: u32) -> Option<usize> {
        self.paths.iter().position(|e| e.id == id)
    }

    fn active_entry(&self) -> Option<&Entry> {
        self.active
            .and_then(|a| self.index(a))
            .map(|i| &self.paths[i])
    }
}
