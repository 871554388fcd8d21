//! Per-source limits on handshake messages, the way kernel WireGuard limits them: a token
//! bucket per source address (an IPv4 address, or the /64 of an IPv6 one), refilled at a
//! steady rate with a small burst. A flood from one address then costs one hash lookup per
//! datagram once its bucket is empty: no MAC check, no cookie reply, no Diffie-Hellman.
//!
//! A real peer needs one handshake every two minutes (more while it retries), so the
//! defaults never touch it; several peers behind one NAT address share a bucket and still
//! have room. Buckets idle for a second are full again and are forgotten, and the table is
//! bounded, so memory stays bounded whatever the number of sources.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Handshake messages per second one source may send, and how many at once.
pub(crate) const PER_SOURCE_PER_SECOND: u32 = 20;
pub(crate) const PER_SOURCE_BURST: u32 = 5;
/// Sources tracked at once; beyond that new sources are refused until old ones expire
/// (a spoofing flood then shuts out new sources for a second, never known peers' data).
pub(crate) const MAX_SOURCES: usize = 16 * 1024;

/// The address a bucket belongs to: IPv6 sources are grouped by /64 (one subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    V6(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in nanoseconds of refill time (one message costs `cost`).
    tokens: u64,
    last: Instant,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<SourceKey, Bucket>,
    last_sweep: Option<Instant>,
}

/// Token buckets by source address; `now` comes from the caller.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    /// Nanoseconds of refill one message costs, and the most a bucket holds.
    cost: u64,
    max_tokens: u64,
    max_sources: usize,
    table: Mutex<Table>,
}

impl Default for SourceLimiter {
    fn default() -> Self {
        Self::new(PER_SOURCE_PER_SECOND, PER_SOURCE_BURST, MAX_SOURCES)
    }
}

impl SourceLimiter {
    pub(crate) fn new(per_second: u32, burst: u32, max_sources: usize) -> Self {
        let cost = 1_000_000_000 / u64::from(per_second.max(1));
        SourceLimiter {
            cost,
            max_tokens: cost * u64::from(burst.max(1)),
            max_sources,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Whether one more handshake message from `source` may be looked at now.
    pub(crate) fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let key = SourceKey::of(source);
        let mut table = self.table.lock();
        let sweep_due = table
            .last_sweep
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if sweep_due {
            table.last_sweep = Some(now);
            // A bucket idle this long is full again: forgetting it changes nothing.
            let full_after = self.max_tokens;
            table.buckets.retain(|_, b| {
                (now.saturating_duration_since(b.last).as_nanos() as u64) < full_after
            });
        }
        let at_capacity = table.buckets.len() >= self.max_sources;
        match table.buckets.get_mut(&key) {
            Some(bucket) => {
                let refill = now.saturating_duration_since(bucket.last).as_nanos();
                let refill = u64::try_from(refill).unwrap_or(u64::MAX);
                bucket.tokens = bucket.tokens.saturating_add(refill).min(self.max_tokens);
                bucket.last = now;
                if bucket.tokens >= self.cost {
                    bucket.tokens -= self.cost;
                    true
                } else {
                    false
                }
            }
            None if at_capacity => false,
            None => {
                table.buckets.insert(
                    key,
                    Bucket {
                        tokens: self.max_tokens - self.cost,
                        last: now,
                    },
                );
                true
            }
        }
    }

    /// Sources tracked now (tests, and the bound on memory).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.table.lock().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = SourceLimiter::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limiter.allow(v4(1), start)).count();
        assert_eq!(allowed, PER_SOURCE_BURST as usize);
        // One second later: 20 more at most (the burst caps what builds up).
        let later = start + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limiter.allow(v4(1), later)).count();
        assert_eq!(allowed, PER_SOURCE_BURST as usize);
        // Spread over a second at the steady rate, every one passes.
        let mut t = later;
        for _ in 0..PER_SOURCE_PER_SECOND {
            t += Duration::from_millis(50);
            assert!(limiter.allow(v4(1), t));
        }
    }

    #[test]
    fn one_source_does_not_shut_out_another() {
        let limiter = SourceLimiter::default();
        let now = Instant::now();
        for _ in 0..10_000 {
            limiter.allow(v4(66), now);
        }
        assert!(limiter.allow(v4(2), now));
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        let limiter = SourceLimiter::new(20, 2, 100);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.allow(a, now));
        assert!(limiter.allow(b, now));
        assert!(!limiter.allow(a, now));
        assert!(limiter.allow(other, now));
        // A v4-mapped address is its IPv4 source.
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped());
        assert!(limiter.allow(v4(1), now));
        assert!(limiter.allow(mapped, now));
        assert!(!limiter.allow(v4(1), now));
    }

    #[test]
    fn memory_is_bounded_and_returned_after_a_flood() {
        let limiter = SourceLimiter::new(20, 5, 1000);
        let now = Instant::now();
        for i in 0..5000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0xc633_0000 | i));
            limiter.allow(ip, now);
        }
        assert_eq!(limiter.tracked(), 1000);
        // A new source while the table is full is refused, a known one still counts.
        assert!(!limiter.allow(v4(250), now));
        // Once the flood's buckets are full again they are forgotten.
        let later = now + Duration::from_secs(2);
        assert!(limiter.allow(v4(250), later));
        assert_eq!(limiter.tracked(), 1);
    }
}
