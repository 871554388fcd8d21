//! The resolver's bookkeeping, pure: per name the last good addresses, when to ask again
//! (the answer's TTL clamped to `[dns] min_ttl..=max_ttl`), and the last error so that a
//! failing name is warned about once per different error. Time comes in as `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One name's state.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The last good answer (kept through failures), sorted.
    addresses: Vec<IpAddr>,
    /// When to ask again; `None` while a lookup is in flight.
    due: Option<Instant>,
    /// The last failure's text, until a lookup succeeds.
    error: Option<String>,
}

/// What a lookup's outcome means for the subscribers and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The addresses changed: subscribers get the new list.
    Changed(Vec<IpAddr>),
    /// Same answer as before.
    Unchanged,
    /// The lookup failed with an error not logged before: warn once (the last good addresses
    /// stay).
    Warn(String),
    /// The lookup failed as it did last time: already logged.
    Quiet,
}

/// Every watched name.
#[derive(Debug, Clone)]
pub struct NameTable {
    min_ttl: Duration,
    max_ttl: Duration,
    names: BTreeMap<String, Entry>,
}

impl NameTable {
    pub fn new(min_ttl: Duration, max_ttl: Duration) -> Self {
        NameTable {
            min_ttl,
            max_ttl: max_ttl.max(min_ttl),
            names: BTreeMap::new(),
        }
    }

    /// New TTL bounds (a reload); answers already held keep their deadline.
    pub fn set_ttl_bounds(&mut self, min_ttl: Duration, max_ttl: Duration) {
        self.min_ttl = min_ttl;
        self.max_ttl = max_ttl.max(min_ttl);
    }

    /// How long an answer with `ttl` is kept.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl)
    }

    /// Watches exactly `names` from now on: new ones are due at once, others are forgotten.
    pub fn set_names(&mut self, names: &BTreeSet<String>, now: Instant) {
        self.names.retain(|name, _| names.contains(name));
        for name in names {
            self.names.entry(name.clone()).or_insert_with(|| Entry {
                due: Some(now),
                ..Entry::default()
            });
        }
    }

    /// Asks again for every name at once (all paths of a peer down, or new name servers).
    pub fn refresh_all(&mut self, now: Instant) {
        for entry in self.names.values_mut() {
            if entry.due.is_some() {
                entry.due = Some(now);
            }
        }
    }

    /// Asks again for `name` at once, if it is watched and not already being asked.
    pub fn refresh(&mut self, name: &str, now: Instant) {
        if let Some(entry) = self.names.get_mut(name)
            && entry.due.is_some()
        {
            entry.due = Some(now);
        }
    }

    /// The names to look up now; each is marked in flight until [`Self::answered`].
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (name, entry) in &mut self.names {
            if entry.due.is_some_and(|at| at <= now) {
                entry.due = None;
                due.push(name.clone());
            }
        }
        due
    }

    /// The earliest time a name is due (`None`: nothing watched or all in flight).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.names.values().filter_map(|e| e.due).min()
    }

    /// The last good addresses of `name` (empty if it never resolved).
    pub fn addresses(&self, name: &str) -> &[IpAddr] {
        self.names.get(name).map_or(&[], |e| &e.addresses)
    }

    /// Records a lookup's result: `Ok((addresses, ttl))` or the error text. A failure is asked
    /// again after `min_ttl`. An answer for a name no longer watched is dropped.
    pub fn answered(
        &mut self,
        name: &str,
        result: Result<(Vec<IpAddr>, Duration), String>,
        now: Instant,
    ) -> Outcome {
        let min_ttl = self.min_ttl;
        let keep = match &result {
            Ok((_, ttl)) => self.clamp(*ttl),
            Err(_) => min_ttl,
        };
        let Some(entry) = self.names.get_mut(name) else {
            return Outcome::Unchanged;
        };
        entry.due = Some(now + keep);
        match result {
            Ok((mut addresses, _)) if !addresses.is_empty() => {
                entry.error = None;
                addresses.sort();
                addresses.dedup();
                if addresses == entry.addresses {
                    Outcome::Unchanged
                } else {
                    entry.addresses = addresses.clone();
                    Outcome::Changed(addresses)
                }
            }
            Ok(_) => Self::failed(entry, "no A or AAAA record".to_owned()),
            Err(error) => Self::failed(entry, error),
        }
    }

    fn failed(entry: &mut Entry, error: String) -> Outcome {
        if entry.error.as_ref() == Some(&error) {
            return Outcome::Quiet;
        }
        entry.error = Some(error.clone());
        Outcome::Warn(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(now: Instant) -> NameTable {
        let mut table = NameTable::new(Duration::from_secs(30), Duration::from_secs(3600));
        table.set_names(&["vpn.example.net".to_owned()].into(), now);
        table
    }

    #[test]
    fn ttl_is_clamped() {
        let table = NameTable::new(Duration::from_secs(30), Duration::from_secs(3600));
        assert_eq!(table.clamp(Duration::ZERO), Duration::from_secs(30));
        assert_eq!(
            table.clamp(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        assert_eq!(
            table.clamp(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_name_is_asked_again_when_its_clamped_ttl_runs_out() {
        let t0 = Instant::now();
        let mut table = table(t0);
        assert_eq!(table.take_due(t0), ["vpn.example.net"]);
        assert_eq!(table.next_deadline(), None, "in flight");
        let answer = Ok((vec![ip("198.51.100.2")], Duration::from_secs(5)));
        table.answered("vpn.example.net", answer, t0);
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(table.take_due(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(table.take_due(t0 + Duration::from_secs(30)).len(), 1);
    }

    #[test]
    fn only_a_different_answer_is_a_change() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let name = "vpn.example.net";
        let ttl = Duration::from_secs(60);
        let both = vec![ip("2001:db8::2"), ip("198.51.100.2")];
        assert_eq!(
            table.answered(name, Ok((both.clone(), ttl)), t0),
            Outcome::Changed(vec![ip("198.51.100.2"), ip("2001:db8::2")])
        );
        let reordered = vec![ip("198.51.100.2"), ip("2001:db8::2"), ip("198.51.100.2")];
        assert_eq!(
            table.answered(name, Ok((reordered, ttl)), t0),
            Outcome::Unchanged
        );
        assert_eq!(
            table.answered(name, Ok((vec![ip("203.0.113.2")], ttl)), t0),
            Outcome::Changed(vec![ip("203.0.113.2")])
        );
    }

    #[test]
    fn failures_warn_once_per_error_and_keep_the_last_good_answer() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let name = "vpn.example.net";
        table.answered(name, Ok((vec![ip("198.51.100.2")], Duration::ZERO)), t0);
        let timeout = || Err("request timed out".to_owned());
        assert_eq!(
            table.answered(name, timeout(), t0),
            Outcome::Warn("request timed out".into())
        );
        assert_eq!(table.answered(name, timeout(), t0), Outcome::Quiet);
        assert_eq!(
            table.answered(name, Ok((Vec::new(), Duration::ZERO)), t0),
            Outcome::Warn("no A or AAAA record".into())
        );
        assert_eq!(table.addresses(name), [ip("198.51.100.2")]);
        assert_eq!(table.next_deadline(), Some(t0 + Duration::from_secs(30)));
        // Recovery clears the error: the next failure is news again.
        table.answered(name, Ok((vec![ip("198.51.100.2")], Duration::ZERO)), t0);
        assert!(matches!(
            table.answered(name, timeout(), t0),
            Outcome::Warn(_)
        ));
    }

    #[test]
    fn on_demand_refresh_and_forgotten_names() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let mut table = table(t0);
        table.take_due(t0);
        table.refresh("vpn.example.net", later);
        assert_eq!(table.next_deadline(), None, "already in flight");
        table.answered(
            "vpn.example.net",
            Ok((vec![ip("198.51.100.2")], Duration::ZERO)),
            t0,
        );
        table.refresh("vpn.example.net", later);
        assert_eq!(table.take_due(later), ["vpn.example.net"]);
        table.set_names(&BTreeSet::new(), later);
        assert_eq!(
            table.answered("vpn.example.net", Err("x".into()), later),
            Outcome::Unchanged
        );
        assert!(table.addresses("vpn.example.net").is_empty());
    }
}
