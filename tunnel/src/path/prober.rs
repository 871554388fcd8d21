//! Which path a peer's traffic takes, decided from probes: one [`PathProber`] per peer.
//!
//! Pure and deterministic: every event carries `now`, nothing reads a clock, and the only
//! output is [`PathAction`]s from [`PathProber::poll`]. The shell calls `poll` at
//! [`PathProber::next_deadline`] (and after events), sends the probes it asks for (see
//! [`super::probe`]), and applies `Switched` at once.
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

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A way to reach a peer: from a local address (`None`: the kernel chooses) to a remote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    pub local: Option<IpAddr>,
    pub remote: SocketAddr,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            Some(local) => write!(f, "{local} -> {}", self.remote),
            None => write!(f, "* -> {}", self.remote),
        }
    }
}

/// Where a candidate path came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// From a configured or advertised endpoint; `name` is the endpoint as written
    /// (`vpn.example.net:51820` or an address).
    Configured { name: String },
    /// Where authenticated traffic of the peer came from (roaming, NAT).
    Learned,
}

/// A path the shell offers, with its rank: `preference` 0 is the most preferred (primary),
/// larger numbers are backups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathCandidate {
    pub path: Path,
    pub preference: u8,
    pub source: PathSource,
}

/// What probing says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathState {
    /// Not answered yet (new path, or probing suspended for this peer).
    Unknown,
    Up,
    /// Probes lost in a row, or its local address is gone.
    Down,
}

impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathState::Unknown => "unknown",
            PathState::Up => "up",
            PathState::Down => "down",
        })
    }
}

/// Why traffic moved. `Display` is the text of the shell's log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SwitchReason {
    /// The peer had no active path before.
    FirstPath,
    /// This many probes in a row went unanswered on the active path.
    ProbesLost(u32),
    /// The active path's local address went away.
    LocalAddressGone(IpAddr),
    /// The active path is no longer a candidate (endpoints or DNS answer changed).
    Removed,
    /// A more preferred path was Up for the failback hold.
    Failback,
    /// A path of the same preference was clearly faster for the latency hold.
    LowerLatency,
    /// The active path lost this share (percent) of its recent probes.
    HighLoss(u32),
    /// Authenticated traffic of the peer came from a new address while we used a learned one.
    Roamed,
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchReason::FirstPath => f.write_str("first path"),
            SwitchReason::ProbesLost(n) => write!(f, "active path down: {n} probes lost"),
            SwitchReason::LocalAddressGone(ip) => write!(f, "local address {ip} gone"),
            SwitchReason::Removed => f.write_str("active path no longer a candidate"),
            SwitchReason::Failback => f.write_str("failback to preferred"),
            SwitchReason::LowerLatency => f.write_str("lower latency"),
            SwitchReason::HighLoss(p) => write!(f, "active path lost {p} % of probes"),
            SwitchReason::Roamed => f.write_str("peer roamed to a new address"),
        }
    }
}

/// What the shell/core must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathAction {
    /// Send a probe request on `path` with these `path_id` and `seq`
    /// ([`super::probe::Probe::request`]); its reply goes to [`PathProber::probe_reply`].
    SendProbe { path: Path, path_id: u32, seq: u64 },
    /// The peer's traffic goes on `to` from now on (`None`: no candidate left).
    Switched {
        from: Option<Path>,
        to: Option<Path>,
        reason: SwitchReason,
    },
    /// No path works: re-resolve the peer's endpoint names now.
    Resolve,
}

/// Timers and thresholds; see the module documentation for why each default is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberConfig {
    /// Probe interval of the active path while traffic flows (default 100 ms); also the
    /// first retry after a lost probe.
    pub fast_interval: Duration,
    /// Probe interval of the active path while idle (default 2 s).
    pub idle_interval: Duration,
    /// Probe interval of each standby path (default 10 s).
    pub standby_interval: Duration,
    /// Longest probe interval of a Down path while traffic flows and no path works
    /// (default 1 s).
    pub stranded_interval: Duration,
    /// Probe interval of a path in a failback or latency hold (default 250 ms).
    pub verify_interval: Duration,
    /// Traffic sent within this long counts as "traffic flows" (default 1 s).
    pub traffic_window: Duration,
    /// Lost probes in a row that take a path down (default 3).
    pub miss_limit: u32,
    /// Shortest and longest wait for a reply (defaults 100 ms and 1 s).
    pub min_probe_timeout: Duration,
    pub max_probe_timeout: Duration,
    /// How long a more preferred path must be Up without loss before traffic moves back
    /// (default 10 s).
    pub failback_hold: Duration,
    /// How long a faster path must stay faster before traffic moves (default 5 s).
    pub latency_hold: Duration,
    /// A faster path must be better by more than this percentage of the active srtt ...
    /// (default 20)
    pub latency_gain_percent: u32,
    /// ... and by more than this (default 5 ms).
    pub latency_gain_min: Duration,
    /// A path losing more than this percentage of its last 32 probes is lossy (default 20) ...
    pub lossy_percent: u32,
    /// ... once at least this many of them were sent (default 10).
    pub loss_min_samples: u32,
    /// Shortest time between two `Resolve` actions (default 5 s).
    pub resolve_interval: Duration,
    /// Unanswered probes, while the session is up and no probe was ever answered, after
    /// which the peer counts as not speaking probes (default 10).
    pub unsupported_after: u32,
    /// Probe interval of the active path of a peer that does not speak probes (default 60 s).
    pub unsupported_interval: Duration,
    /// Most paths kept per peer (default 16).
    pub max_paths: usize,
    /// Preference given to learned paths (default 255: behind every configured one).
    pub learned_preference: u8,
}

impl Default for ProberConfig {
    fn default() -> Self {
        ProberConfig {
            fast_interval: Duration::from_millis(100),
            idle_interval: Duration::from_secs(2),
            standby_interval: Duration::from_secs(10),
            stranded_interval: Duration::from_secs(1),
            verify_interval: Duration::from_millis(250),
            traffic_window: Duration::from_secs(1),
            miss_limit: 3,
            min_probe_timeout: Duration::from_millis(100),
            max_probe_timeout: Duration::from_secs(1),
            failback_hold: Duration::from_secs(10),
            latency_hold: Duration::from_secs(5),
            latency_gain_percent: 20,
            latency_gain_min: Duration::from_millis(5),
            lossy_percent: 20,
            loss_min_samples: 10,
            resolve_interval: Duration::from_secs(5),
            unsupported_after: 10,
            unsupported_interval: Duration::from_secs(60),
            max_paths: 16,
            learned_preference: u8::MAX,
        }
    }
}

/// How many probes the loss figure covers.
pub const LOSS_WINDOW: u32 = 32;
/// How long an address we roamed to and that then failed is not roamed to again while the
/// active path works: long enough to stop a stray packet every few seconds from flapping the
/// traffic, short enough that a peer that really moved there (and whose old path then fails)
/// is not held back beyond the usual failover.
pub const ROAM_HOLD: Duration = Duration::from_secs(60);
/// At most this many such addresses are remembered (a peer's misbehaviour costs bounded
/// memory).
const MAX_FAILED_ROAMS: usize = 8;

/// One path as `meshd peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStats {
    pub path: Path,
    pub path_id: u32,
    pub source: PathSource,
    pub preference: u8,
    pub state: PathState,
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    /// Probes lost among the last `sampled` (at most [`LOSS_WINDOW`]).
    pub lost: u32,
    pub sampled: u32,
    pub consecutive_misses: u32,
    pub up_since: Option<Instant>,
    pub active: bool,
}

impl PathStats {
    /// Lost share of the recent probes, 0.0 ..= 1.0 (0 before any probe).
    pub fn loss(&self) -> f64 {
        if self.sampled == 0 {
            0.0
        } else {
            f64::from(self.lost) / f64::from(self.sampled)
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    candidate: PathCandidate,
    id: u32,
    state: PathState,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Outcomes of the last `sampled` probes, newest in bit 0; a set bit is a loss.
    history: u32,
    sampled: u32,
    misses: u32,
    up_since: Option<Instant>,
    /// Up with no probe lost since then: what the failback hold counts.
    stable_since: Option<Instant>,
    /// Since when this path beats the active one by the latency margin.
    better_since: Option<Instant>,
    last_sent: Option<Instant>,
    /// Probes awaiting a reply, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    probe_now: bool,
    local_gone: bool,
    down_reason: Option<SwitchReason>,
}

impl Entry {
    fn new(candidate: PathCandidate, id: u32, local_gone: bool) -> Self {
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

    fn path(&self) -> Path {
        self.candidate.path
    }

    fn record(&mut self, lost: bool) {
        self.history = (self.history << 1) | u32::from(lost);
        self.sampled = (self.sampled + 1).min(LOSS_WINDOW);
    }

    fn lost(&self) -> u32 {
        let mask = if self.sampled >= 32 {
            u32::MAX
        } else {
            (1u32 << self.sampled) - 1
        };
        (self.history & mask).count_ones()
    }

    fn loss_percent(&self) -> u32 {
        (self.lost() * 100).checked_div(self.sampled).unwrap_or(0)
    }

    fn lossy(&self, cfg: &ProberConfig) -> bool {
        self.sampled >= cfg.loss_min_samples && self.loss_percent() > cfg.lossy_percent
    }

    /// Up and not lossy: fit to carry traffic without reservation.
    fn healthy(&self, cfg: &ProberConfig) -> bool {
        self.state == PathState::Up && !self.lossy(cfg)
    }

    /// Rank for choosing a path (smaller is better): healthy, lossy, unknown, down; then
    /// preference, then srtt.
    fn rank(&self, cfg: &ProberConfig) -> (u8, u8, Duration) {
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

    fn timeout(&self, cfg: &ProberConfig) -> Duration {
        match self.srtt {
            None => cfg.max_probe_timeout,
            Some(srtt) => {
                (srtt * 2 + self.rttvar * 4).clamp(cfg.min_probe_timeout, cfg.max_probe_timeout)
            }
        }
    }
}

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
        let sample = now.saturating_duration_since(sent);
        match e.srtt {
            None => {
                e.srtt = Some(sample);
                e.rttvar = sample / 2;
            }
            Some(srtt) => {
                // RFC 6298: rttvar = 3/4 rttvar + 1/4 |srtt - r|, srtt = 7/8 srtt + 1/8 r.
                let dev = srtt.abs_diff(sample);
                e.rttvar = (e.rttvar * 3 + dev) / 4;
                e.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        if e.state == PathState::Down && !e.local_gone {
            // The probes lost while the path was down measured the outage, not the path:
            // kept in the loss window they would mark it lossy for minutes after it came
            // back (never a failback target, probed only at the lossy rate, so the window
            // clears one probe per 10 s). The failback hold still asks for a stable path.
            e.history = 0;
            e.sampled = 0;
        }
        e.record(false);
        e.misses = 0;
        if e.state != PathState::Up && !e.local_gone {
            e.state = PathState::Up;
            e.up_since = Some(now);
            e.down_reason = None;
        }
        if e.state == PathState::Up && e.stable_since.is_none() {
            e.stable_since = Some(now);
        }
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

    /// An authenticated packet of the peer (WireGuard message or valid probe request) came
    /// from `remote` to our `local` address. A path not seen yet becomes a learned candidate
    /// (Up). An Unknown path becomes Up; a Down one does not (only a probe reply proves our
    /// direction works: receiving alone says nothing about one-way failures).
    pub fn authenticated_from(&mut self, remote: SocketAddr, local: Option<IpAddr>, now: Instant) {
        self.last_now = Some(now);
        if local.is_some_and(|ip| self.gone_locals.contains(&ip)) {
            return;
        }
        let exact = self
            .paths
            .iter()
            .position(|e| e.path().remote == remote && e.path().local == local);
        let loose = || {
            self.paths.iter().position(|e| {
                e.path().remote == remote && (e.path().local.is_none() || local.is_none())
            })
        };
        match exact.or_else(loose) {
            Some(i) => {
                let e = &mut self.paths[i];
                if e.state == PathState::Unknown && !e.local_gone {
                    e.state = PathState::Up;
                    e.up_since = Some(now);
                }
            }
            None => {
                if self.paths.len() >= self.cfg.max_paths {
                    return;
                }
                // A remote address no path of ours goes to: the peer sends from somewhere
                // it does not advertise (it moved, or a NAT rebinds), so that is where it
                // can be answered, as WireGuard's roaming does. A known remote reached on
                // another local address is only the peer's choice of path, not a move.
                let moved = !self.paths.iter().any(|e| e.path().remote == remote);
                let mut e = self.new_entry(PathCandidate {
                    path: Path { local, remote },
                    preference: self.cfg.learned_preference,
                    source: PathSource::Learned,
                });
                e.state = PathState::Up;
                e.up_since = Some(now);
                let id = e.id;
                self.paths.push(e);
                let active_is_learned = self
                    .active
                    .and_then(|a| self.index(a))
                    .is_some_and(|a| self.paths[a].candidate.source == PathSource::Learned);
                // Roaming follows the peer at once, as WireGuard does (it restarted on
                // another address). But an address we roamed to lately and that then did not
                // answer (a multihomed peer's packet that left by the wrong uplink, with no
                // source rule) does not take a working path away again: it is a candidate,
                // probed like the others, and takes over only if the active path fails.
                // Otherwise every stray packet from it is a switch to a dead end.
                let failed_lately = self
                    .failed_roams
                    .iter()
                    .any(|(r, at)| *r == remote && now.saturating_duration_since(*at) < ROAM_HOLD);
                let active_works = self
                    .active
                    .and_then(|a| self.index(a))
                    .is_some_and(|a| self.paths[a].state == PathState::Up);
                // (An active learnt path is left for the new one regardless, below.)
                let keep_active = self.supported && failed_lately && active_works;
                if active_is_learned || (moved && self.active.is_some() && !keep_active) {
                    let from = self.active_path();
                    let to = self.index(id);
                    self.switch(from, to, SwitchReason::Roamed, now);
                }
            }
        }
        self.evaluate(now);
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
        // A learned address that stopped answering is a stale NAT mapping or an old roam.
        let active = self.active;
        let failed_roams = &mut self.failed_roams;
        failed_roams.retain(|(_, at)| now.saturating_duration_since(*at) < ROAM_HOLD);
        self.paths.retain(|e| {
            let stale = e.candidate.source == PathSource::Learned
                && e.state == PathState::Down
                && Some(e.id) != active;
            if stale && failed_roams.len() < MAX_FAILED_ROAMS {
                failed_roams.push((e.path().remote, now));
            }
            !stale
        });
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

    fn busy(&self, now: Instant) -> bool {
        self.last_traffic
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.traffic_window)
    }

    /// No path is Up, and the active one is Down or there is none: time to ask DNS.
    fn none_working(&self) -> bool {
        !self.paths.iter().any(|e| e.state == PathState::Up)
            && self
                .active_entry()
                .is_none_or(|a| a.state == PathState::Down)
    }

    fn in_hold(&self, e: &Entry) -> bool {
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
    fn probe_due(&self, i: usize) -> Option<Instant> {
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
    fn expire(&mut self, i: usize, now: Instant) {
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

    fn stop_probing(&mut self) {
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

    fn mark_down(&mut self, i: usize, reason: SwitchReason) {
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
    fn best(&self, exclude: Option<usize>, allow_down: bool) -> Option<usize> {
        (0..self.paths.len())
            .filter(|&i| Some(i) != exclude)
            .filter(|&i| !self.paths[i].local_gone)
            .filter(|&i| allow_down || self.paths[i].state != PathState::Down)
            .min_by_key(|&i| self.paths[i].rank(&self.cfg))
    }

    /// The best Up path that shares neither end's address with path `failed`.
    fn best_disjoint(&self, failed: usize) -> Option<usize> {
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

    fn switch(
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
    fn evaluate(&mut self, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(local: &str, remote: &str, preference: u8) -> PathCandidate {
        PathCandidate {
            path: Path {
                local: Some(local.parse().unwrap()),
                remote: remote.parse().unwrap(),
            },
            preference,
            source: PathSource::Configured {
                name: remote.into(),
            },
        }
    }

    #[test]
    fn first_path_then_probes_then_switch_when_active_dies() {
        let t0 = Instant::now();
        let mut p = PathProber::new(ProberConfig::default(), 1000);
        let a = cand("198.51.100.1", "203.0.113.2:51820", 0);
        let b = cand("198.51.100.9", "203.0.113.2:51820", 1);
        p.set_candidates(vec![a.clone(), b.clone()], t0);
        let acts = p.poll(t0);
        assert!(matches!(
            &acts[0],
            PathAction::Switched { from: None, to: Some(to), reason: SwitchReason::FirstPath } if *to == a.path
        ));
        let probes: Vec<_> = acts
            .iter()
            .filter_map(|x| match x {
                PathAction::SendProbe { path_id, seq, .. } => Some((*path_id, *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 2);
        for (id, seq) in &probes {
            assert!(p.probe_reply(*id, *seq, t0 + Duration::from_millis(10)));
            assert!(!p.probe_reply(*id, *seq, t0 + Duration::from_millis(11)));
        }
        assert!(p.path_stats().iter().all(|s| s.state == PathState::Up));
        // Traffic flows, a's probes go unanswered, b's are answered.
        let mut now = t0 + Duration::from_millis(10);
        let mut switched = None;
        while now < t0 + Duration::from_secs(2) && switched.is_none() {
            p.traffic_sent(now);
            now = p.next_deadline().unwrap().max(now);
            for act in p.poll(now) {
                match act {
                    PathAction::SendProbe { path, path_id, seq } if path == b.path => {
                        p.probe_reply(path_id, seq, now);
                    }
                    PathAction::Switched { to, reason, .. } => switched = Some((now, to, reason)),
                    _ => {}
                }
            }
        }
        let (at, to, reason) = switched.expect("switched");
        assert_eq!(to, Some(b.path));
        assert_eq!(reason, SwitchReason::ProbesLost(3));
        assert!(at - t0 < Duration::from_secs(1), "{:?}", at - t0);
        assert_eq!(p.active_path(), Some(b.path));
    }
}
