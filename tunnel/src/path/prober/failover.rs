//! Whether traffic moves, and where to: failover when the active path dies, failback to a
//! more preferred path, leaving a lossy path, and moving to a clearly faster one.

use std::time::Instant;

use super::PathProber;
use super::action::{PathAction, SwitchReason};
use super::path::{Path, PathState};

impl PathProber {
    /// No path is Up, and the active one is Down or there is none: time to ask DNS.
    pub(super) fn none_working(&self) -> bool {
        !self.paths.iter().any(|e| e.state == PathState::Up)
            && self
                .active_entry()
                .is_none_or(|a| a.state == PathState::Down)
    }

    pub(super) fn mark_down(&mut self, i: usize, reason: SwitchReason) {
        let e = &mut self.paths[i];
        e.state = PathState::Down;
        e.up_since = None;
        e.stable_since = None;
        e.better_since = None;
        e.down_reason = Some(reason);
        if Some(e.id) == self.active {
            // Hunting: find out now which of the others really works.
            for (j, other) in self.paths.iter_mut().enumerate() {
                if j != i {
                    other.probe_now = true;
                }
            }
        }
    }

    /// The best path to move to, other than `exclude`; Down ones only if `allow_down`.
    pub(super) fn best(&self, exclude: Option<usize>, allow_down: bool) -> Option<usize> {
        (0..self.paths.len())
            .filter(|&i| Some(i) != exclude)
            .filter(|&i| !self.paths[i].local_gone)
            .filter(|&i| allow_down || self.paths[i].state != PathState::Down)
            .min_by_key(|&i| self.paths[i].rank(&self.cfg))
    }

    /// The best Up path that shares neither end's address with path `failed`.
    pub(super) fn best_disjoint(&self, failed: usize) -> Option<usize> {
        let dead = self.paths[failed].path();
        (0..self.paths.len())
            .filter(|&i| {
                let e = &self.paths[i];
                let p = e.path();
                i != failed
                    && !e.local_gone
                    && e.state == PathState::Up
                    && p.remote.ip() != dead.remote.ip()
                    && (p.local.is_none() || p.local != dead.local)
            })
            .min_by_key(|&i| self.paths[i].rank(&self.cfg))
    }

    pub(super) fn switch(
        &mut self,
        from: Option<Path>,
        to: Option<usize>,
        reason: SwitchReason,
        now: Instant,
    ) {
        let to_path = to.map(|i| self.paths[i].path());
        self.active = to.map(|i| self.paths[i].id);
        for e in &mut self.paths {
            e.better_since = None;
        }
        if from == to_path {
            return;
        }
        self.last_switch = Some((now, reason.clone()));
        self.pending.push(PathAction::Switched {
            from,
            to: to_path,
            reason,
        });
    }

    /// Decides whether traffic moves, after any change.
    pub(super) fn evaluate(&mut self, now: Instant) {
        if !self.supported {
            if self.active_entry().is_none()
                && let Some(b) = self.best(None, true)
            {
                self.switch(None, Some(b), SwitchReason::FirstPath, now);
            }
            return;
        }
        let Some(ai) = self.active.and_then(|a| self.index(a)) else {
            if let Some(b) = self.best(None, true) {
                self.switch(None, Some(b), SwitchReason::FirstPath, now);
            }
            return;
        };
        let cfg = &self.cfg;
        let a = &self.paths[ai];
        let from = Some(a.path());
        if a.state == PathState::Down {
            let reason = a.down_reason.clone().unwrap_or(SwitchReason::ProbesLost(0));
            // Probes lost say the path died, not which end: a path that shares neither its
            // local address nor the remote address is the one that survives either ISP's
            // failure. Paths that share one are probed at once and win back later.
            let disjoint = match reason {
                SwitchReason::ProbesLost(_) => self.best_disjoint(ai),
                _ => None,
            };
            if let Some(b) = disjoint.or_else(|| self.best(Some(ai), false)) {
                self.switch(from, Some(b), reason, now);
            }
            return;
        }
        // Failback: a more preferred path, healthy and stable for the hold.
        let failback = (0..self.paths.len())
            .filter(|&i| {
                let e = &self.paths[i];
                e.candidate.preference < a.candidate.preference
                    && e.healthy(cfg)
                    && e.stable_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= cfg.failback_hold)
            })
            .min_by_key(|&i| self.paths[i].rank(cfg));
        if let Some(b) = failback {
            self.switch(from, Some(b), SwitchReason::Failback, now);
            return;
        }
        // Loss: leave a lossy active path for any healthy one.
        if a.lossy(cfg) {
            let percent = a.loss_percent();
            let healthy = (0..self.paths.len())
                .filter(|&i| i != ai && self.paths[i].healthy(cfg))
                .min_by_key(|&i| self.paths[i].rank(cfg));
            if let Some(b) = healthy {
                self.switch(from, Some(b), SwitchReason::HighLoss(percent), now);
                return;
            }
        }
        // Latency: among equal preference, clearly faster for the hold.
        let (pref, active_srtt) = (a.candidate.preference, a.srtt);
        let margin =
            active_srtt.map(|s| (s * cfg.latency_gain_percent / 100).max(cfg.latency_gain_min));
        let better: Vec<bool> = (0..self.paths.len())
            .map(|i| {
                let e = &self.paths[i];
                i != ai
                    && e.candidate.preference == pref
                    && e.healthy(cfg)
                    && match (e.srtt, active_srtt, margin) {
                        (Some(c), Some(s), Some(m)) => c + m < s,
                        _ => false,
                    }
            })
            .collect();
        let hold = cfg.latency_hold;
        let mut faster: Option<usize> = None;
        for (i, better) in better.into_iter().enumerate() {
            let e = &mut self.paths[i];
            if !better {
                e.better_since = None;
                continue;
            }
            let since = *e.better_since.get_or_insert(now);
            let srtt = e.srtt;
            if now.saturating_duration_since(since) >= hold
                && faster.is_none_or(|f| srtt < self.paths[f].srtt)
            {
                faster = Some(i);
            }
        }
        if let Some(b) = faster {
            self.switch(from, Some(b), SwitchReason::LowerLatency, now);
        }
    }
}
