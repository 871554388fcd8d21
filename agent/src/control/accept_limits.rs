//! Limits on unauthenticated connections to the control port, and the counts behind their
//! aggregated log line and metric. Pure: the shell passes the source address and `now` and
//! gets a decision back; it closes what is refused and tells the limiter when a connection
//! stops counting (authenticated, join answered, closed).
//!
//! A core's control port faces the Internet, and until the TLS handshake has shown a member
//! certificate anyone can hold a connection open: a task, a socket and TLS buffers each. So
//! a connection counts from accept until it is authenticated (a verified member
//! certificate) or its join request is answered, and at most [`PER_SOURCE`] such connections
//! per source (an IPv4 address, or the /64 of an IPv6 one: one subscriber) and [`TOTAL`] in
//! all are open at once. What is over is closed at accept, before any TLS work.
//!
//! When the total is reached, a new connection still gets in if it can be given room
//! fairly: from a source holding fewer connections than the biggest holder (whose oldest
//! connection is closed), or in place of a connection that has had [`EVICT_AFTER`] for its
//! handshake. A flood from a few addresses then never locks out a member dialing from
//! another one, and a flood from many addresses only shortens everyone's time to shake hands.
//! A connection whose join request was read is never closed that way (the CA may be using
//! up the invitation for it).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Unauthenticated connections one source may hold open. A joiner needs one, a member
/// redialing one at a time, a few routers behind one NAT address a few at once; a scanner
/// or a flood needs more, and does not get them.
pub const PER_SOURCE: usize = 8;
/// Unauthenticated connections open at once from all sources together. Each costs about
/// 18 KiB while it lasts (task, TLS state and buffers: 256 of them took 4.5 MB in the netns
/// flood test), at most about 100 KiB for a peer that sends the largest handshake message
/// and join request allowed, so 256 bound the whole at a few MiB (25 MiB at worst), which a
/// home router can spare; and with meshd's own few dozen file descriptors they stay well
/// below the usual limit of 1024 open files.
pub const TOTAL: usize = 256;
/// How long a connection may shake hands before a newcomer may take its place when the
/// total is reached: a real handshake takes a few round trips (well under a second even
/// across a continent).
pub const EVICT_AFTER: Duration = Duration::from_secs(1);
/// At most one aggregated report per interval: a flood makes one line per 30 s.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(30);
/// Sources whose refusals are counted one by one between two reports; refusals from any
/// further source are counted together (many sources must not grow the table).
const TRACKED_SOURCES: usize = 64;
/// Sources named in one report line (the biggest); the others are summed.
const NAMED_SOURCES: usize = 3;

/// Where a connection comes from, as the limits count it: an IPv4 address (an IPv4-mapped
/// IPv6 address included: the dual-stack listener sees IPv4 peers that way), or the /64 of
/// an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    V4(Ipv4Addr),
    /// The /64's network address.
    V6(Ipv6Addr),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(v4) => write!(f, "{v4}"),
            Source::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The limits in force (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_source: usize,
    pub total: usize,
    pub evict_after: Duration,
    pub report_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source: PER_SOURCE,
            total: TOTAL,
            evict_after: EVICT_AFTER,
            report_interval: REPORT_INTERVAL,
        }
    }
}

/// One admitted connection's place under the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u64);

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on (TLS handshake); `evicted`, if any, is to be closed now to make room.
    Admitted { slot: Slot, evicted: Option<Slot> },
    /// Close it at once, without a TLS handshake.
    Refused(Reason),
}

/// Why an unauthenticated connection was refused or closed before it was authenticated or
/// answered (the `reason` label of `meshd_control_refused_connections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Its source already held [`Limits::per_source`] connections.
    PerSourceLimit,
    /// [`Limits::total`] connections were open and none could make room.
    TotalLimit,
    /// Closed to make room for a connection from another source.
    Evicted,
    /// The TLS handshake did not finish within its deadline.
    HandshakeTimeout,
    /// The TLS handshake failed (not TLS, no common parameters, a certificate refused).
    HandshakeFailed,
    /// No certificate, and no join request within its deadline.
    JoinTimeout,
    /// No certificate, and something other than a well-formed join request (or nothing: the
    /// connection closed).
    BadJoinRequest,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::PerSourceLimit,
        Reason::TotalLimit,
        Reason::Evicted,
        Reason::HandshakeTimeout,
        Reason::HandshakeFailed,
        Reason::JoinTimeout,
        Reason::BadJoinRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PerSourceLimit => "per_source_limit",
            Reason::TotalLimit => "total_limit",
            Reason::Evicted => "evicted",
            Reason::HandshakeTimeout => "handshake_timeout",
            Reason::HandshakeFailed => "handshake_failed",
            Reason::JoinTimeout => "join_timeout",
            Reason::BadJoinRequest => "bad_join_request",
        }
    }

    /// Failed handshakes and bad join requests are logged on lines of their own, which name
    /// the error (the first in a window, with the count of the rest: [`super::log_throttle`]);
    /// the aggregated report counts them but does not say them again.
    pub fn has_own_line(self) -> bool {
        matches!(self, Reason::HandshakeFailed | Reason::BadJoinRequest)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Connections refused or closed since the start, by reason (monotonic, for the metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; Reason::ALL.len()]);

impl RefusalCounts {
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    fn add(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }
}

/// What happened since the last report: one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Refusals over the per-source limit from the sources that had the most, biggest first.
    pub by_source: Vec<(Source, u64)>,
    /// Per-source refusals from the sources not named.
    pub other_sources: u64,
    /// Every event, by reason (those with [`Reason::has_own_line`] are counted here but not
    /// said again).
    pub counts: RefusalCounts,
    /// From the first event of the report to the report.
    pub span: Duration,
    pub limits: Limits,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |r| self.counts.get(r);
        let mut parts = Vec::new();
        let per_source = count(Reason::PerSourceLimit);
        if per_source > 0 {
            let mut named: Vec<String> = self
                .by_source
                .iter()
                .map(|(source, n)| format!("{n} from {source}"))
                .collect();
            if self.other_sources > 0 {
                named.push(format!("{} from other sources", self.other_sources));
            }
            parts.push(format!(
                "refused {} over the per-source limit of {} ({})",
                plural(per_source, "control connection", "control connections"),
                self.limits.per_source,
                named.join(", "),
            ));
        }
        let total = count(Reason::TotalLimit);
        if total > 0 {
            parts.push(format!(
                "refused {} over the limit of {} unauthenticated in all",
                plural(total, "control connection", "control connections"),
                self.limits.total
            ));
        }
        let evicted = count(Reason::Evicted);
        if evicted > 0 {
            parts.push(format!(
                "closed {} to make room for other sources",
                plural(
                    evicted,
                    "unauthenticated connection",
                    "unauthenticated connections"
                )
            ));
        }
        let timeouts = count(Reason::HandshakeTimeout);
        if timeouts > 0 {
            parts.push(format!(
                "{} timed out",
                plural(timeouts, "TLS handshake", "TLS handshakes")
            ));
        }
        let join_timeouts = count(Reason::JoinTimeout);
        if join_timeouts > 0 {
            parts.push(format!(
                "{} without a certificate sent no join request in time",
                plural(join_timeouts, "connection", "connections")
            ));
        }
        write!(f, "{} in {}s", parts.join(", "), self.span.as_secs().max(1))
    }
}

/// Events since the last report.
#[derive(Debug, Default)]
struct Pending {
    first: Option<Instant>,
    by_source: HashMap<Source, u64>,
    other_sources: u64,
    counts: RefusalCounts,
}

/// One open unauthenticated connection.
#[derive(Debug, Clone, Copy)]
struct Entry {
    source: Source,
    opened: Instant,
    /// Never evicted ([`AcceptLimiter::pin`]).
    pinned: bool,
}

/// The open unauthenticated connections and the counts of what was refused.
#[derive(Debug)]
pub struct AcceptLimiter {
    limits: Limits,
    next_slot: u64,
    /// Open connections by slot; slots are handed out in order, so the first is the oldest.
    open: BTreeMap<Slot, Entry>,
    per_source: HashMap<Source, usize>,
    totals: RefusalCounts,
    pending: Pending,
    last_report: Option<Instant>,
}

impl Default for AcceptLimiter {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl AcceptLimiter {
    pub fn new(limits: Limits) -> Self {
        AcceptLimiter {
            limits,
            next_slot: 0,
            open: BTreeMap::new(),
            per_source: HashMap::new(),
            totals: RefusalCounts::default(),
            pending: Pending::default(),
            last_report: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A connection from `ip` was accepted at `now`: may it go on?
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let source = Source::of(ip);
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        if held >= self.limits.per_source {
            self.count(Reason::PerSourceLimit, Some(source), now);
            return Admission::Refused(Reason::PerSourceLimit);
        }
        let evicted = if self.open.len() >= self.limits.total {
            let Some(victim) = self.victim(held, now) else {
                self.count(Reason::TotalLimit, Some(source), now);
                return Admission::Refused(Reason::TotalLimit);
            };
            self.release(victim);
            self.count(Reason::Evicted, None, now);
            Some(victim)
        } else {
            None
        };
        let slot = Slot(self.next_slot);
        self.next_slot += 1;
        self.open.insert(
            slot,
            Entry {
                source,
                opened: now,
                pinned: false,
            },
        );
        *self.per_source.entry(source).or_default() += 1;
        Admission::Admitted { slot, evicted }
    }

    /// The connection to close for a newcomer whose source holds `held`: the oldest of the
    /// biggest holder if that holds more than the newcomer would, else the oldest of all if
    /// it has had its time to shake hands. Pinned connections are never chosen.
    fn victim(&self, held: usize, now: Instant) -> Option<Slot> {
        let mut evictable = self.open.iter().filter(|(_, entry)| !entry.pinned);
        let biggest = self.per_source.values().copied().max()?;
        if held + 1 < biggest
            && let Some((slot, _)) = evictable
                .clone()
                .find(|(_, entry)| self.per_source.get(&entry.source) == Some(&biggest))
        {
            return Some(*slot);
        }
        let (slot, entry) = evictable.next()?;
        (now.saturating_duration_since(entry.opened) >= self.limits.evict_after).then_some(*slot)
    }

    /// The connection is past the point where closing it would lose work that cannot be
    /// redone (a join request was read: the CA may be redeeming the invitation): it still
    /// counts, but is never closed to make room.
    pub fn pin(&mut self, slot: Slot) {
        if let Some(entry) = self.open.get_mut(&slot) {
            entry.pinned = true;
        }
    }

    /// The connection no longer counts (authenticated, answered, closed, evicted). Releasing
    /// a slot twice is harmless.
    pub fn release(&mut self, slot: Slot) {
        let Some(Entry { source, .. }) = self.open.remove(&slot) else {
            return;
        };
        if let Some(held) = self.per_source.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Whether `slot` still counts (not released or evicted).
    pub fn holds(&self, slot: Slot) -> bool {
        self.open.contains_key(&slot)
    }

    /// Unauthenticated connections open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// A connection from `ip` ended before it was authenticated or answered, for `reason`
    /// (a timeout, a failed handshake, a bad join request).
    pub fn closed(&mut self, reason: Reason, ip: IpAddr, now: Instant) {
        self.count(reason, Some(Source::of(ip)), now);
    }

    fn count(&mut self, reason: Reason, source: Option<Source>, now: Instant) {
        self.totals.add(reason);
        let pending = &mut self.pending;
        pending.counts.add(reason);
        pending.first.get_or_insert(now);
        if reason == Reason::PerSourceLimit
            && let Some(source) = source
        {
            let tracked = pending.by_source.len();
            match pending.by_source.get_mut(&source) {
                Some(n) => *n += 1,
                None if tracked < TRACKED_SOURCES => {
                    pending.by_source.insert(source, 1);
                }
                None => pending.other_sources += 1,
            }
        }
    }

    /// Everything refused or closed since the start, by reason.
    pub fn totals(&self) -> RefusalCounts {
        self.totals
    }

    /// The aggregated report, if there is something to say and the last one is at least
    /// [`Limits::report_interval`] old: the first event after a quiet spell is reported at
    /// the next poll, a lasting flood once per interval. Events with a line of their own
    /// ([`Reason::has_own_line`]) alone make no report.
    pub fn poll_report(&mut self, now: Instant) -> Option<Report> {
        let counts = self.pending.counts;
        if Reason::ALL
            .iter()
            .all(|&r| r.has_own_line() || counts.get(r) == 0)
        {
            return None;
        }
        if let Some(last) = self.last_report
            && now.saturating_duration_since(last) < self.limits.report_interval
        {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut by_source: Vec<(Source, u64)> = pending.by_source.into_iter().collect();
        // Biggest first; the address orders equal counts, so the line is deterministic.
        by_source.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let other_sources = pending.other_sources
            + by_source
                .iter()
                .skip(NAMED_SOURCES)
                .map(|(_, n)| n)
                .sum::<u64>();
        by_source.truncate(NAMED_SOURCES);
        let report = Report {
            by_source,
            other_sources,
            counts: pending.counts,
            span: pending
                .first
                .map_or(Duration::ZERO, |first| now.saturating_duration_since(first)),
            limits: self.limits,
        };
        self.last_report = Some(now);
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn small() -> Limits {
        Limits {
            per_source: 2,
            total: 4,
            evict_after: Duration::from_secs(1),
            report_interval: Duration::from_secs(30),
        }
    }

    fn admitted(admission: Admission) -> (Slot, Option<Slot>) {
        match admission {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            refused => panic!("refused: {refused:?}"),
        }
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        // The dual-stack listener sees IPv4 peers as mapped addresses: each is its own
        // source, not all of them one /64.
        assert_eq!(
            Source::of(ip("::ffff:198.51.100.7")),
            Source::of(ip("198.51.100.7"))
        );
        assert_ne!(
            Source::of(ip("::ffff:198.51.100.7")),
            Source::of(ip("::ffff:198.51.100.8"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            Source::of(ip("::ffff:198.51.100.7")).to_string(),
            "198.51.100.7"
        );
    }

    #[test]
    fn a_source_gets_its_share_and_gets_it_back_on_release() {
        let now = Instant::now();
        let mut limiter = AcceptLimiter::new(small());
        let (a, _) = admitted(limiter.admit(ip("198.51.100.7"), now));
        let (_b, _) = admitted(limiter.admit(ip("198.51.100.7"), now));
        assert_eq!(
            limiter.admit(ip("198.51.100.7"), now),
            Admission::Refused(Reason::PerSourceLimit)
        );
        // Another address of the same /64 is the same subscriber.
        admitted(limiter.admit(ip("2001:db8::1"), now));
        admitted(limiter.admit(ip("2001:db8::2"), now));
        assert_eq!(
            limiter.admit(ip("2001:db8::3"), now),
            Admission::Refused(Reason::PerSourceLimit)
        );
        limiter.release(a);
        limiter.release(a);
        assert!(!limiter.holds(a));
        assert_eq!(limiter.open(), 3);
        admitted(limiter.admit(ip("198.51.100.7"), now));
        assert_eq!(limiter.totals().get(Reason::PerSourceLimit), 2);
    }

    #[test]
    fn a_full_house_makes_room_for_a_smaller_source_at_the_biggest_holders_expense() {
        let now = Instant::now();
        let mut limiter = AcceptLimiter::new(small());
        let (first, _) = admitted(limiter.admit(ip("198.51.100.7"), now));
        admitted(limiter.admit(ip("198.51.100.8"), now));
        let (second, _) = admitted(limiter.admit(ip("198.51.100.7"), now));
        admitted(limiter.admit(ip("198.51.100.8"), now));
        // Full: a newcomer evicts the oldest connection of a biggest holder (.7's first).
        let (member, evicted) = admitted(limiter.admit(ip("203.0.113.5"), now));
        assert_eq!(evicted, Some(first));
        assert!(!limiter.holds(first) && limiter.holds(second) && limiter.holds(member));
        // .7 and .8 now hold 1 and 2: a second newcomer from .7 would hold as many as .8,
        // a third connection from 203.0.113.5 too; with nothing old enough, both are refused.
        assert_eq!(
            limiter.admit(ip("198.51.100.7"), now),
            Admission::Refused(Reason::TotalLimit)
        );
        assert_eq!(
            limiter.admit(ip("203.0.113.5"), now),
            Admission::Refused(Reason::TotalLimit)
        );
        assert_eq!(limiter.open(), 4);
        assert_eq!(limiter.totals().get(Reason::Evicted), 1);
        assert_eq!(limiter.totals().get(Reason::TotalLimit), 2);
    }

    #[test]
    fn when_every_source_holds_one_the_oldest_gives_way_once_it_had_its_time() {
        let start = Instant::now();
        let mut limiter = AcceptLimiter::new(small());
        let slots: Vec<Slot> = (1..=4)
            .map(|host| {
                let at = start + Duration::from_millis(100 * host);
                admitted(limiter.admit(ip(&format!("2001:db8:0:{host}::1")), at)).0
            })
            .collect();
        let soon = start + Duration::from_millis(900);
        assert_eq!(
            limiter.admit(ip("2001:db8:0:9::1"), soon),
            Admission::Refused(Reason::TotalLimit)
        );
        let later = start + Duration::from_millis(1100);
        let (_, evicted) = admitted(limiter.admit(ip("2001:db8:0:9::1"), later));
        assert_eq!(evicted, Some(slots[0]));
        assert_eq!(
            limiter.admit(ip("2001:db8:0:a::1"), later),
            Admission::Refused(Reason::TotalLimit)
        );
    }

    #[test]
    fn a_pinned_connection_is_never_evicted() {
        let start = Instant::now();
        let mut limiter = AcceptLimiter::new(small());
        let (joiner, _) = admitted(limiter.admit(ip("203.0.113.5"), start));
        limiter.pin(joiner);
        let (first, _) = admitted(limiter.admit(ip("198.51.100.7"), start));
        admitted(limiter.admit(ip("198.51.100.8"), start));
        let (ninth, _) = admitted(limiter.admit(ip("198.51.100.9"), start));
        let later = start + Duration::from_secs(2);
        // The oldest is the pinned joiner: the next oldest gives way.
        let (_, evicted) = admitted(limiter.admit(ip("198.51.100.10"), later));
        assert_eq!(evicted, Some(first));
        assert!(limiter.holds(joiner));
        // A second join from the joiner's address (it takes .8's place, by age): the
        // biggest holder's connections are then all pinned, and the rule falls back to age.
        let (second, _) = admitted(limiter.admit(ip("203.0.113.5"), later));
        limiter.pin(second);
        let (_, evicted) = admitted(limiter.admit(ip("2001:db8:0:1::1"), later));
        assert_eq!(evicted, Some(ninth));
        // Everything else pinned too: nothing can make room.
        let pinned: Vec<Slot> = limiter.open.keys().copied().collect();
        for slot in pinned {
            limiter.pin(slot);
        }
        assert_eq!(
            limiter.admit(ip("2001:db8::1"), later),
            Admission::Refused(Reason::TotalLimit)
        );
        limiter.release(joiner);
        admitted(limiter.admit(ip("2001:db8::1"), later));
    }

    #[test]
    fn one_report_per_interval_naming_the_biggest_sources() {
        let start = Instant::now();
        let mut limiter = AcceptLimiter::new(Limits {
            total: 10,
            ..small()
        });
        assert_eq!(limiter.poll_report(start), None);
        for host in 1..=5u64 {
            let address = ip(&format!("198.51.100.{host}"));
            admitted(limiter.admit(address, start));
            admitted(limiter.admit(address, start));
            // Five refused from .1, ten from .2 ...
            for _ in 0..5 * host {
                limiter.admit(address, start);
            }
        }
        // Full: .6 gets in at .1's expense, then holds one as the others hold two, and
        // nothing is old enough to give way.
        let (_, evicted) = admitted(limiter.admit(ip("198.51.100.6"), start));
        assert!(evicted.is_some());
        for _ in 0..2 {
            assert_eq!(
                limiter.admit(ip("198.51.100.6"), start),
                Admission::Refused(Reason::TotalLimit)
            );
        }
        limiter.closed(Reason::HandshakeTimeout, ip("198.51.100.9"), start);
        limiter.closed(Reason::HandshakeFailed, ip("198.51.100.9"), start);
        let report = limiter.poll_report(start + Duration::from_secs(2)).unwrap();
        assert_eq!(
            report.by_source,
            vec![
                (Source::of(ip("198.51.100.5")), 25),
                (Source::of(ip("198.51.100.4")), 20),
                (Source::of(ip("198.51.100.3")), 15),
            ]
        );
        assert_eq!(report.other_sources, 15);
        assert_eq!(
            report.to_string(),
            "refused 75 control connections over the per-source limit of 2 (25 from \
             198.51.100.5, 20 from 198.51.100.4, 15 from 198.51.100.3, 15 from other sources), \
             refused 2 control connections over the limit of 10 unauthenticated in all, \
             closed 1 unauthenticated connection to make room for other sources, \
             1 TLS handshake timed out in 2s"
        );
        // The flood goes on: nothing more within the interval, then one line with the rest.
        limiter.admit(ip("198.51.100.5"), start + Duration::from_secs(3));
        assert_eq!(limiter.poll_report(start + Duration::from_secs(31)), None);
        let next = limiter
            .poll_report(start + Duration::from_secs(32))
            .unwrap();
        assert_eq!(next.counts.get(Reason::PerSourceLimit), 1);
        assert_eq!(
            next.to_string(),
            "refused 1 control connection over the per-source limit of 2 (1 from 198.51.100.5) \
             in 29s"
        );
        assert_eq!(limiter.poll_report(start + Duration::from_secs(100)), None);
        // The totals for the metric keep everything.
        assert_eq!(limiter.totals().get(Reason::PerSourceLimit), 76);
        assert_eq!(limiter.totals().get(Reason::HandshakeFailed), 1);
        assert_eq!(limiter.open(), 10);
    }

    #[test]
    fn failures_with_a_line_of_their_own_make_no_report_and_timeouts_are_said() {
        let start = Instant::now();
        let mut limiter = AcceptLimiter::new(small());
        limiter.closed(Reason::HandshakeFailed, ip("198.51.100.9"), start);
        limiter.closed(Reason::BadJoinRequest, ip("198.51.100.9"), start);
        assert_eq!(limiter.poll_report(start), None);
        limiter.closed(Reason::JoinTimeout, ip("198.51.100.9"), start);
        limiter.closed(Reason::JoinTimeout, ip("198.51.100.9"), start);
        let report = limiter.poll_report(start).unwrap();
        assert_eq!(
            report.to_string(),
            "2 connections without a certificate sent no join request in time in 1s"
        );
        // It rode along, unsaid.
        assert_eq!(report.counts.get(Reason::BadJoinRequest), 1);
        assert_eq!(limiter.totals().get(Reason::BadJoinRequest), 1);
    }

    #[test]
    fn many_sources_do_not_grow_the_tables() {
        let now = Instant::now();
        let mut limiter = AcceptLimiter::new(Limits {
            per_source: 0,
            ..small()
        });
        for host in 0..10_000u32 {
            let address = IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(host) << 64),
            ));
            assert_eq!(
                limiter.admit(address, now),
                Admission::Refused(Reason::PerSourceLimit)
            );
        }
        assert_eq!(limiter.pending.by_source.len(), TRACKED_SOURCES);
        let report = limiter.poll_report(now).unwrap();
        assert_eq!(report.by_source.len(), NAMED_SOURCES);
        assert_eq!(report.other_sources, 10_000 - NAMED_SOURCES as u64);
        assert!(limiter.per_source.is_empty() && limiter.open.is_empty());
    }
}
