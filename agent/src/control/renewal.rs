//! When to renew the node's certificate: a pure scheduler. The shell reports what happened
//! (a certificate in use, a renewal that worked or failed) with `now`; the scheduler answers
//! with what to do (ask the CA holder, warn a person). No clock, no I/O, so it is tested on a
//! virtual clock.
//!
//! Policy, and why:
//! - renew at about two thirds of the certificate's lifetime, jittered by up to a twelfth of
//!   it either way, so that the nodes admitted in one batch do not all ask the CA holder at
//!   the same moment, and a third of the lifetime is left to retry in;
//! - a failed attempt (CA holder down or unreachable) is retried with exponential backoff
//!   from [`RETRY_MIN`] up to [`RETRY_MAX`], but never later than a quarter of the time left
//!   until expiry, so that a node keeps trying harder as its certificate runs out;
//! - once less than a sixth of the lifetime is left and no renewal has succeeded, a warning
//!   goes to the log (again every [`WARN_EVERY`] at most), and one when it expired;
//! - an expired certificate is not the end: the CA holder still renews it within its grace
//!   window ([`crate::identity::RENEWAL_GRACE`]), so the node keeps asking, with the backoff
//!   (up to [`RETRY_MAX`]) and one line that says until when; past the window, one line that
//!   says what the operator must do, and attempts every [`RETRY_MAX`] (a CA holder may allow
//!   a longer window).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

/// First retry delay after a failed renewal.
pub const RETRY_MIN: Duration = Duration::seconds(5);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::minutes(15);
/// Shortest retry delay, however close the expiry is: the CA holder is not hammered.
const RETRY_FLOOR: Duration = Duration::seconds(1);
/// How often the "expires soon" warning repeats at most.
pub const WARN_EVERY: Duration = Duration::hours(1);

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalAction {
    /// Ask the CA holder for a new certificate now (the shell reports back with
    /// [`Renewal::succeeded`] or [`Renewal::failed`], always).
    Request,
    /// Tell a person: the certificate is about to expire (or did) and renewal has not
    /// worked.
    Warn(String),
}

/// The validity of the certificate in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// When the CA issued it. Certificates are back-dated by [`pki::CLOCK_SKEW_ALLOWANCE`];
    /// the lifetime is counted from the issue, not from `notBefore`.
    pub issued: OffsetDateTime,
    /// `notAfter`.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// The validity of a certificate with `not_before` and `not_after`.
    pub fn of_certificate(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        let issued = (not_before + pki::CLOCK_SKEW_ALLOWANCE).min(not_after);
        Self { issued, not_after }
    }

    fn lifetime(&self) -> Duration {
        self.not_after - self.issued
    }
}

/// The renewal schedule of one certificate at a time.
#[derive(Debug)]
pub struct Renewal {
    validity: Validity,
    /// When to ask next (first renewal or retry).
    due: OffsetDateTime,
    /// A request is out; no second one until the shell reports back.
    in_flight: bool,
    /// Failed attempts since the certificate was issued, and the last reason.
    failures: u32,
    last_error: Option<String>,
    /// Warnings before this time are held back.
    next_warning: OffsetDateTime,
    expired_warned: bool,
    beyond_grace_warned: bool,
    /// How long after the expiry the CA holder still renews.
    grace: Duration,
    rng: SmallRng,
}

impl Renewal {
    /// A schedule for the certificate with `validity`. `seed` makes the jitter reproducible.
    pub fn new(validity: Validity, seed: u64) -> Self {
        let mut renewal = Self {
            validity,
            due: validity.not_after,
            in_flight: false,
            failures: 0,
            last_error: None,
            next_warning: validity.issued,
            expired_warned: false,
            beyond_grace_warned: false,
            grace: crate::identity::RENEWAL_GRACE,
            rng: SmallRng::seed_from_u64(seed),
        };
        renewal.restart(validity);
        renewal
    }

    /// The CA holder renews a certificate up to `grace` after its expiry (for the log lines
    /// and the retry delays).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The end of the renewal grace window of the certificate in use.
    pub fn grace_until(&self) -> OffsetDateTime {
        self.validity.not_after + self.grace
    }

    /// When the next request is due.
    pub fn due(&self) -> OffsetDateTime {
        self.due
    }

    /// The validity of the certificate in use.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// Time passes: ask when due, warn when expiry is near.
    pub fn poll(&mut self, now: OffsetDateTime) -> Vec<RenewalAction> {
        let mut actions = Vec::new();
        if !self.in_flight && now >= self.due {
            self.in_flight = true;
            actions.push(RenewalAction::Request);
        }
        let lifetime = self.validity.lifetime();
        let warn_from = self.validity.not_after - lifetime / 6;
        if now > self.grace_until() {
            if !self.beyond_grace_warned {
                self.beyond_grace_warned = true;
                self.expired_warned = true;
                actions.push(RenewalAction::Warn(format!(
                    "the node certificate expired at {} and its renewal grace window ended at \
                     {}{}: the CA holder no longer renews it; the way back is `meshd revoke \
                     NAME`, `meshd ca free-name NAME` and a new invitation, on the CA holder",
                    self.validity.not_after,
                    self.grace_until(),
                    self.failure_note()
                )));
            }
        } else if now >= self.validity.not_after {
            if !self.expired_warned {
                self.expired_warned = true;
                actions.push(RenewalAction::Warn(format!(
                    "the node certificate expired at {}; renewing within the grace window \
                     (until {}){}; other nodes accept this node again once it is renewed",
                    self.validity.not_after,
                    self.grace_until(),
                    self.failure_note()
                )));
            }
        } else if now >= warn_from && now >= self.next_warning {
            self.next_warning = now + WARN_EVERY.min(lifetime / 12).max(RETRY_FLOOR);
            actions.push(RenewalAction::Warn(format!(
                "the node certificate expires at {} (in {}) and has not been renewed{}",
                self.validity.not_after,
                whole_seconds(self.validity.not_after - now),
                self.failure_note()
            )));
        }
        actions
    }

    /// The operator asks for a renewal now (`meshd renew`, after `meshd ca approve` changed
    /// what the certificate should say). False when a request is out already.
    pub fn request_now(&mut self, now: OffsetDateTime) -> bool {
        if self.in_flight {
            return false;
        }
        self.due = self.due.min(now);
        true
    }

    /// The CA holder issued a new certificate: schedule its renewal.
    pub fn succeeded(&mut self, validity: Validity) {
        self.restart(validity);
    }

    /// The request failed (`why`, for the warnings): retry later.
    pub fn failed(&mut self, now: OffsetDateTime, why: &str) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(why.to_owned());
        let exponent = self.failures.saturating_sub(1).min(16);
        let backoff = (RETRY_MIN * 2i32.pow(exponent)).min(RETRY_MAX);
        let left = self.validity.not_after - now;
        let delay = if now > self.grace_until() {
            RETRY_MAX
        } else if left > Duration::ZERO {
            backoff.min(left / 4).max(RETRY_FLOOR)
        } else {
            // Expired, within the grace window: no hurry that would hammer the CA holder.
            backoff
        };
        // Up to a tenth less, so that nodes that failed together spread out.
        let spread = self.rng.random_range(0.0..0.1);
        self.due = now + delay * (1.0 - spread);
    }

    /// Failed attempts since the certificate in use was issued.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn restart(&mut self, validity: Validity) {
        let lifetime = validity.lifetime();
        let fraction = 2.0 / 3.0 + self.rng.random_range(-1.0 / 12.0..=1.0 / 12.0);
        self.validity = validity;
        self.due = validity.issued + lifetime * fraction;
        self.in_flight = false;
        self.failures = 0;
        self.last_error = None;
        self.next_warning = validity.issued;
        self.expired_warned = false;
        self.beyond_grace_warned = false;
    }

    fn failure_note(&self) -> String {
        match &self.last_error {
            Some(error) => format!(
                " ({} failed renewal attempt(s), the last: {error})",
                self.failures
            ),
            None => String::new(),
        }
    }
}

/// `d` rounded down to whole seconds, for messages.
fn whole_seconds(d: Duration) -> Duration {
    Duration::seconds(d.whole_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn ninety_days() -> Validity {
        Validity {
            issued: T0,
            not_after: T0 + Duration::days(90),
        }
    }

    /// Runs the schedule on a virtual clock in `step`s until `until`; every request is
    /// answered by `answer` (Ok: renewed for the same lifetime from then; Err: failed).
    fn run(
        renewal: &mut Renewal,
        until: OffsetDateTime,
        step: Duration,
        mut answer: impl FnMut(OffsetDateTime) -> Result<(), String>,
    ) -> (Vec<OffsetDateTime>, Vec<(OffsetDateTime, String)>) {
        let lifetime = renewal.validity().lifetime();
        let (mut requests, mut warnings) = (Vec::new(), Vec::new());
        let mut now = T0;
        while now <= until {
            for action in renewal.poll(now) {
                match action {
                    RenewalAction::Request => {
                        requests.push(now);
                        match answer(now) {
                            Ok(()) => renewal.succeeded(Validity {
                                issued: now,
                                not_after: now + lifetime,
                            }),
                            Err(why) => renewal.failed(now, &why),
                        }
                    }
                    RenewalAction::Warn(text) => warnings.push((now, text)),
                }
            }
            now += step;
        }
        (requests, warnings)
    }

    #[test]
    fn renews_at_about_two_thirds_of_the_lifetime() {
        for seed in 0..50 {
            let renewal = Renewal::new(ninety_days(), seed);
            let at = renewal.due() - T0;
            assert!(
                at >= Duration::days(52) && at <= Duration::days(68),
                "seed {seed}: due after {at}"
            );
        }
        // The jitter spreads nodes admitted together.
        let dues: std::collections::BTreeSet<_> = (0..20)
            .map(|s| Renewal::new(ninety_days(), s).due())
            .collect();
        assert!(dues.len() > 15, "{dues:?}");
    }

    #[test]
    fn a_working_ca_renews_every_period_without_warnings() {
        let mut renewal = Renewal::new(ninety_days(), 7);
        let (requests, warnings) = run(
            &mut renewal,
            T0 + Duration::days(365),
            Duration::hours(1),
            |_| Ok(()),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // A year of 90-day certificates renewed at 7/12..3/4: 5 or 6 renewals.
        assert!((5..=7).contains(&requests.len()), "{requests:?}");
        for pair in requests.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::days(52) && gap <= Duration::days(68),
                "{gap}"
            );
        }
    }

    #[test]
    fn a_renewal_asked_for_now_is_made_at_the_next_poll_once() {
        let mut renewal = Renewal::new(ninety_days(), 5);
        let now = T0 + Duration::days(1);
        assert_eq!(renewal.poll(now), vec![]);
        assert!(renewal.request_now(now));
        assert_eq!(renewal.poll(now), vec![RenewalAction::Request]);
        // While it is out, a second ask changes nothing.
        assert!(!renewal.request_now(now));
        assert_eq!(renewal.poll(now + Duration::seconds(1)), vec![]);
    }

    #[test]
    fn one_request_at_a_time() {
        let mut renewal = Renewal::new(ninety_days(), 1);
        let due = renewal.due();
        assert_eq!(renewal.poll(due - Duration::seconds(1)), vec![]);
        assert_eq!(renewal.poll(due), vec![RenewalAction::Request]);
        // No answer yet: nothing more, however long it takes.
        assert_eq!(renewal.poll(due + Duration::hours(2)), vec![]);
        renewal.failed(due + Duration::hours(2), "timed out");
        assert!(renewal.due() > due + Duration::hours(2));
    }

    #[test]
    fn an_unreachable_ca_is_retried_with_growing_delays_that_shrink_near_expiry() {
        let mut renewal = Renewal::new(ninety_days(), 3);
        let (requests, warnings) = run(
            &mut renewal,
            T0 + Duration::days(91),
            Duration::seconds(1),
            |_| Err("connection refused".into()),
        );
        let gaps: Vec<Duration> = requests.windows(2).map(|p| p[1] - p[0]).collect();
        // Backoff: 5 s, 10 s, 20 s ... (minus up to a tenth), capped at 15 minutes.
        assert!(
            gaps[0] >= Duration::seconds(4) && gaps[0] <= Duration::seconds(6),
            "{gaps:?}"
        );
        assert!(
            gaps[1] >= Duration::seconds(9) && gaps[1] <= Duration::seconds(11),
            "{gaps:?}"
        );
        assert!(gaps.iter().all(|g| *g <= RETRY_MAX + Duration::seconds(1)));
        assert!(
            gaps.iter()
                .any(|g| *g >= RETRY_MAX - RETRY_MAX / 10 - Duration::seconds(1))
        );
        // Near the end, a quarter of the time left: the last retries come fast.
        let expiry = T0 + Duration::days(90);
        let late: Vec<&OffsetDateTime> = requests
            .iter()
            .filter(|at| **at > expiry - Duration::minutes(10) && **at < expiry)
            .collect();
        assert!(late.len() >= 3, "{late:?}");

        // Warnings: from the last sixth of the lifetime on, at most hourly, naming the
        // cause; then one that says it expired.
        let warn_from = expiry - Duration::days(15);
        assert!(warnings.iter().all(|(at, _)| *at >= warn_from));
        let (first_at, first) = &warnings[0];
        assert_eq!(*first_at, warn_from, "{first}");
        assert!(
            first.contains("expires at") && first.contains("connection refused"),
            "{first}"
        );
        let soon: Vec<_> = warnings
            .iter()
            .filter(|(_, t)| t.contains("expires at"))
            .collect();
        assert!(soon.windows(2).all(|w| w[1].0 - w[0].0 >= WARN_EVERY));
        assert_eq!(soon.len(), 15 * 24, "hourly for the last 15 days");
        let expired: Vec<_> = warnings
            .iter()
            .filter(|(_, t)| t.contains("expired at"))
            .collect();
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert_eq!(expired[0].0, expiry);
    }

    #[test]
    fn a_renewal_after_failures_resets_the_backoff_and_the_warnings() {
        let mut renewal = Renewal::new(ninety_days(), 5);
        let mut failures_left = 20;
        let (requests, warnings) = run(
            &mut renewal,
            T0 + Duration::days(200),
            Duration::seconds(10),
            |_| {
                if failures_left > 0 {
                    failures_left -= 1;
                    Err("CA holder down".into())
                } else {
                    Ok(())
                }
            },
        );
        assert!(
            warnings.is_empty(),
            "renewed long before the last sixth: {warnings:?}"
        );
        assert_eq!(renewal.failures(), 0);
        // 20 failures, one success, then the next one a normal period later.
        let success = requests[20];
        assert!(requests[21] - success >= Duration::days(52), "{requests:?}");
    }

    #[test]
    fn short_lifetimes_scale_the_schedule() {
        // Seconds-long certificates (the integration test uses them): renewal after 7-9 s of
        // 12, retries within the lifetime.
        let validity = Validity {
            issued: T0,
            not_after: T0 + Duration::seconds(12),
        };
        let mut renewal = Renewal::new(validity, 9);
        let due = renewal.due() - T0;
        assert!(
            due >= Duration::seconds(7) && due <= Duration::seconds(9),
            "{due}"
        );
        let (requests, _) = run(
            &mut renewal,
            T0 + Duration::seconds(12),
            Duration::milliseconds(100),
            |_| Err("refused".into()),
        );
        assert!(requests.len() >= 2, "{requests:?}");
    }

    #[test]
    fn an_expired_certificate_is_still_renewed_within_the_grace_window() {
        // A router unplugged for three months: its certificate expired two months ago.
        let mut renewal = Renewal::new(ninety_days(), 11).with_grace(Duration::days(180));
        let start = T0 + Duration::days(150);
        let actions = renewal.poll(start);
        assert_eq!(actions[0], RenewalAction::Request, "{actions:?}");
        let RenewalAction::Warn(text) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert!(
            text.contains("expired at 2026-04-01 0:00:00.0 +00:00:00; renewing within the grace window (until 2026-09-28"),
            "{text}"
        );
        // Failures back off as usual, up to RETRY_MAX, never to the one-second floor.
        let mut now = start;
        let mut gaps = Vec::new();
        for _ in 0..12 {
            renewal.failed(now, "CA holder down");
            let next = renewal.due();
            gaps.push(next - now);
            now = next;
            assert_eq!(renewal.poll(now), vec![RenewalAction::Request]);
        }
        assert!(gaps[0] >= Duration::seconds(4), "{gaps:?}");
        assert!(
            gaps.windows(2)
                .all(|w| w[1] >= w[0] || w[1] >= RETRY_MAX - RETRY_MAX / 10)
        );
        assert!(gaps.iter().all(|g| *g <= RETRY_MAX), "{gaps:?}");
        // Renewed: a normal schedule again.
        renewal.succeeded(Validity {
            issued: now,
            not_after: now + Duration::days(90),
        });
        assert!(renewal.due() > now + Duration::days(50));
        assert_eq!(renewal.poll(now), vec![]);
    }

    #[test]
    fn past_the_grace_window_the_operator_is_told_once_what_to_do() {
        let mut renewal = Renewal::new(ninety_days(), 12).with_grace(Duration::days(30));
        let now = T0 + Duration::days(200);
        let actions = renewal.poll(now);
        let warnings: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                RenewalAction::Warn(text) => Some(text),
                RenewalAction::Request => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{actions:?}");
        assert!(
            warnings[0].contains("grace window ended")
                && warnings[0].contains("meshd ca free-name"),
            "{}",
            warnings[0]
        );
        renewal.failed(now, "refused");
        assert!(renewal.due() - now >= RETRY_MAX - RETRY_MAX / 10);
        let later = renewal.due();
        assert_eq!(renewal.poll(later), vec![RenewalAction::Request]);
    }

    #[test]
    fn lifetime_counts_from_the_issue_not_from_the_backdated_start() {
        let not_before = T0 - pki::CLOCK_SKEW_ALLOWANCE;
        let v = Validity::of_certificate(not_before, T0 + Duration::days(90));
        assert_eq!(v.issued, T0);
        let odd = Validity::of_certificate(T0, T0 + Duration::seconds(1));
        assert_eq!(odd.issued, odd.not_after, "never after the expiry");
    }
}
