//! When each path is probed, and when an unanswered probe counts as lost.

use std::time::Instant;

use super::PathProber;
use super::action::{PathAction, SwitchReason};
use super::config::LOSS_WINDOW;
use super::estimate::Entry;
use super::path::PathState;

impl PathProber {
    /// When `poll` has something to do next (`None`: nothing until an event). Events can
    /// make it earlier, so ask again after each.
    pub fn next_deadline(&self) -> Option<Instant> {
        let now = self.last_now?;
        if !self.pending.is_empty() {
            return Some(now);
        }
        let active_pref = self.active_entry().map(|a| a.candidate.preference);
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for i in 0..self.paths.len() {
            let e = &self.paths[i];
            if let Some(t) = self.probe_due(i) {
                consider(t);
            }
            if let Some(&(_, sent)) = e.outstanding.front() {
                consider(sent + e.timeout(&self.cfg));
            }
            if let (Some(since), Some(pref)) = (e.stable_since, active_pref)
                && e.candidate.preference < pref
                && e.healthy(&self.cfg)
            {
                consider(since + self.cfg.failback_hold);
            }
            if let Some(since) = e.better_since {
                consider(since + self.cfg.latency_hold);
            }
        }
        if self.supported && self.none_working() {
            consider(
                self.last_resolve
                    .map_or(now, |t| t + self.cfg.resolve_interval),
            );
        }
        next
    }

    /// Sends the probes that are due: appends them to `out` and awaits their replies.
    pub(super) fn send_due_probes(&mut self, now: Instant, out: &mut Vec<PathAction>) {
        for i in 0..self.paths.len() {
            if self.probe_due(i).is_some_and(|due| due <= now) {
                let e = &mut self.paths[i];
                let seq = self.next_seq;
                self.next_seq = self.next_seq.wrapping_add(1);
                if e.outstanding.len() >= LOSS_WINDOW as usize {
                    e.outstanding.pop_front();
                }
                e.outstanding.push_back((seq, now));
                e.last_sent = Some(now);
                e.probe_now = false;
                out.push(PathAction::SendProbe {
                    path: e.path(),
                    path_id: e.id,
                    seq,
                });
            }
        }
    }

    pub(super) fn busy(&self, now: Instant) -> bool {
        self.last_traffic
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.traffic_window)
    }

    pub(super) fn in_hold(&self, e: &Entry) -> bool {
        if e.better_since.is_some() {
            return true;
        }
        match self.active_entry() {
            Some(a) => {
                a.id != e.id
                    && e.candidate.preference < a.candidate.preference
                    && e.healthy(&self.cfg)
            }
            None => false,
        }
    }

    /// When path `i` should be probed next (`None`: not at all).
    pub(super) fn probe_due(&self, i: usize) -> Option<Instant> {
        let e = &self.paths[i];
        let is_active = Some(e.id) == self.active;
        if e.local_gone || (!self.supported && !is_active) {
            return None;
        }
        let now = self.last_now?;
        let Some(last) = e.last_sent else {
            return Some(now);
        };
        if e.probe_now {
            return Some(now);
        }
        let cfg = &self.cfg;
        if !self.supported {
            return Some(last + cfg.unsupported_interval);
        }
        let base = if is_active && self.busy(now) {
            cfg.fast_interval
        } else if is_active {
            cfg.idle_interval
        } else if self.in_hold(e) {
            cfg.verify_interval
        } else {
            cfg.standby_interval
        };
        let interval = if e.misses == 0 {
            base
        } else {
            let backoff = cfg
                .fast_interval
                .saturating_mul(1u32 << (e.misses - 1).min(20));
            if e.state == PathState::Down {
                // Traffic waits and nothing carries it: look for a way back quickly.
                let stranded = self.busy(now) && self.none_working();
                let cap = if stranded {
                    cfg.stranded_interval
                } else {
                    cfg.standby_interval
                };
                cap.min(backoff)
            } else {
                base.min(backoff)
            }
        };
        Some(last + interval)
    }

    /// Declares lost the probes of path `i` whose reply is overdue.
    pub(super) fn expire(&mut self, i: usize, now: Instant) {
        loop {
            let e = &mut self.paths[i];
            let Some(&(_, sent)) = e.outstanding.front() else {
                return;
            };
            if now < sent + e.timeout(&self.cfg) {
                return;
            }
            e.outstanding.pop_front();
            e.record(true);
            e.misses += 1;
            e.stable_since = None;
            if !self.supported {
                continue;
            }
            if self.session_up && !self.ever_answered {
                // Maybe the peer does not speak probes at all: do not take paths down on
                // its silence, the session shows it is reachable.
                self.silent_misses += 1;
                if self.silent_misses >= self.cfg.unsupported_after {
                    self.stop_probing();
                    return;
                }
                continue;
            }
            if e.misses >= self.cfg.miss_limit && e.state != PathState::Down {
                self.mark_down(i, SwitchReason::ProbesLost(self.cfg.miss_limit));
            }
        }
    }

    pub(super) fn stop_probing(&mut self) {
        self.supported = false;
        for e in &mut self.paths {
            if !e.local_gone {
                e.state = PathState::Unknown;
            }
            e.misses = 0;
            e.outstanding.clear();
            e.stable_since = None;
            e.better_since = None;
        }
    }
}
