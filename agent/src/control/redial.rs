//! When to dial a member again after a connection failed: exponential backoff with jitter,
//! per member. Pure (the caller passes `now` and the random jitter).
//!
//! A connection counts as working only once the peer has said something on it. In TLS 1.3
//! the client's side of the handshake ends before the server has checked the client's
//! certificate, so a node whose certificate was revoked or expired sees its connections
//! "come up" and then close at once; without this rule it would redial every tick and log
//! each attempt (170 warnings in 27 s were measured). Each failure doubles the wait, from
//! [`FIRST_DELAY`] to [`MAX_DELAY`], and the caller logs one line per failure: about nine
//! lines in the first five minutes, then one per [`MAX_DELAY`].

use std::time::{Duration, Instant};

/// The wait after the first failure.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Up to this fraction is added at random to each wait, so that nodes restarted together
/// do not dial in step.
const JITTER: f64 = 0.25;

/// The backoff state for one member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redial {
    /// Failures since the last working connection.
    failures: u32,
    /// No attempt before this.
    not_before: Option<Instant>,
}

impl Redial {
    /// Whether an attempt may start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }

    /// An attempt failed (or a connection closed before the peer said anything) at `now`.
    /// `random` in `[0, 1)` spreads the wait. Returns the wait before the next attempt.
    pub fn failed(&mut self, now: Instant, random: f64) -> Duration {
        let base = FIRST_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_DELAY);
        self.failures = self.failures.saturating_add(1);
        let wait = base.mul_f64(1.0 + JITTER * random.clamp(0.0, 1.0));
        self.not_before = Some(now + wait);
        wait
    }

    /// A connection worked (the peer answered on it): the next failure starts over.
    pub fn succeeded(&mut self) {
        *self = Redial::default();
    }

    /// Failures since the last working connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_after_success() {
        let start = Instant::now();
        let mut redial = Redial::default();
        assert!(redial.due(start), "the first attempt is not delayed");
        let waits: Vec<u64> = (0..12)
            .map(|_| redial.failed(start, 0.0).as_secs())
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300],
            "doubling from 1 s, capped at 5 min"
        );
        assert_eq!(redial.failures(), 12);
        assert!(!redial.due(start + Duration::from_secs(299)));
        assert!(redial.due(start + Duration::from_secs(300)));

        redial.succeeded();
        assert!(redial.due(start));
        assert_eq!(redial.failed(start, 0.0), FIRST_DELAY);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let now = Instant::now();
        let mut redial = Redial::default();
        assert_eq!(redial.failed(now, 0.999_999).as_millis(), 1249);
        let mut capped = Redial {
            failures: 40,
            not_before: None,
        };
        assert_eq!(capped.failed(now, 1.0), Duration::from_secs(375));
        // Out-of-range randomness cannot make the wait shorter than the base.
        assert_eq!(capped.failed(now, -3.0), MAX_DELAY);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let now = Instant::now();
        let mut redial = Redial {
            failures: u32::MAX - 1,
            not_before: None,
        };
        assert_eq!(redial.failed(now, 0.0), MAX_DELAY);
        assert_eq!(redial.failed(now, 0.0), MAX_DELAY);
        assert_eq!(redial.failures(), u32::MAX);
    }
}
