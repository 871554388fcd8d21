//! One path's measurements and what follows from them: smoothed RTT and its variance
//! (RFC 6298), the loss window, and from those the probe timeout, health and rank.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::action::SwitchReason;
use super::config::{LOSS_WINDOW, ProberConfig};
use super::path::Path;
use super::path::{PathCandidate, PathState};

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) candidate: PathCandidate,
    pub(super) id: u32,
    pub(super) state: PathState,
    pub(super) srtt: Option<Duration>,
    pub(super) rttvar: Duration,
    /// Outcomes of the last `sampled` probes, newest in bit 0; a set bit is a loss.
    pub(super) history: u32,
    pub(super) sampled: u32,
    pub(super) misses: u32,
    pub(super) up_since: Option<Instant>,
    /// Up with no probe lost since then: what the failback hold counts.
    pub(super) stable_since: Option<Instant>,
    /// Since when this path beats the active one by the latency margin.
    pub(super) better_since: Option<Instant>,
    pub(super) last_sent: Option<Instant>,
    /// Probes awaiting a reply, oldest first.
    pub(super) outstanding: VecDeque<(u64, Instant)>,
    pub(super) probe_now: bool,
    pub(super) local_gone: bool,
    pub(super) down_reason: Option<SwitchReason>,
}

impl Entry {
    pub(super) fn new(candidate: PathCandidate, id: u32, local_gone: bool) -> Self {
        Entry {
            candidate,
            id,
            state: if local_gone {
                PathState::Down
            } else {
                PathState::Unknown
            },
            srtt: None,
            rttvar: Duration::ZERO,
            history: 0,
            sampled: 0,
            misses: 0,
            up_since: None,
            stable_since: None,
            better_since: None,
            last_sent: None,
            outstanding: VecDeque::new(),
            probe_now: false,
            local_gone,
            down_reason: None,
        }
    }

    pub(super) fn path(&self) -> Path {
        self.candidate.path
    }

    pub(super) fn record(&mut self, lost: bool) {
        self.history = (self.history << 1) | u32::from(lost);
        self.sampled = (self.sampled + 1).min(LOSS_WINDOW);
    }

    pub(super) fn lost(&self) -> u32 {
        let mask = if self.sampled >= 32 {
            u32::MAX
        } else {
            (1u32 << self.sampled) - 1
        };
        (self.history & mask).count_ones()
    }

    pub(super) fn loss_percent(&self) -> u32 {
        (self.lost() * 100).checked_div(self.sampled).unwrap_or(0)
    }

    pub(super) fn lossy(&self, cfg: &ProberConfig) -> bool {
        self.sampled >= cfg.loss_min_samples && self.loss_percent() > cfg.lossy_percent
    }

    /// Up and not lossy: fit to carry traffic without reservation.
    pub(super) fn healthy(&self, cfg: &ProberConfig) -> bool {
        self.state == PathState::Up && !self.lossy(cfg)
    }

    /// Rank for choosing a path (smaller is better): healthy, lossy, unknown, down; then
    /// preference, then srtt.
    pub(super) fn rank(&self, cfg: &ProberConfig) -> (u8, u8, Duration) {
        let class = match self.state {
            PathState::Up if !self.lossy(cfg) => 0,
            PathState::Up => 1,
            PathState::Unknown => 2,
            PathState::Down => 3,
        };
        (
            class,
            self.candidate.preference,
            self.srtt.unwrap_or(Duration::MAX),
        )
    }

    pub(super) fn timeout(&self, cfg: &ProberConfig) -> Duration {
        match self.srtt {
            None => cfg.max_probe_timeout,
            Some(srtt) => {
                (srtt * 2 + self.rttvar * 4).clamp(cfg.min_probe_timeout, cfg.max_probe_timeout)
            }
        }
    }

    /// The reply to a probe sent at `sent` arrived at `now`: an RTT sample (RFC 6298), a
    /// probe not lost, and the path is Up (unless its local address is gone).
    pub(super) fn answered(&mut self, sent: Instant, now: Instant) {
        let sample = now.saturating_duration_since(sent);
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                // RFC 6298: rttvar = 3/4 rttvar + 1/4 |srtt - r|, srtt = 7/8 srtt + 1/8 r.
                let dev = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + dev) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        if self.state == PathState::Down && !self.local_gone {
            // The probes lost while the path was down measured the outage, not the path:
            // kept in the loss window they would mark it lossy for minutes after it came
            // back (never a failback target, probed only at the lossy rate, so the window
            // clears one probe per 10 s). The failback hold still asks for a stable path.
            self.history = 0;
            self.sampled = 0;
        }
        self.record(false);
        self.misses = 0;
        if self.state != PathState::Up && !self.local_gone {
            self.state = PathState::Up;
            self.up_since = Some(now);
            self.down_reason = None;
        }
        if self.state == PathState::Up && self.stable_since.is_none() {
            self.stable_since = Some(now);
        }
    }
}
