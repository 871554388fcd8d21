//! The prober's timers and thresholds; the module documentation of [`super`] says why each
//! default is what it is.

use std::time::Duration;

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
pub(super) const MAX_FAILED_ROAMS: usize = 8;
