//! A prefix's multipath group as the data plane uses it: the next hops to spread flows over,
//! and what changed in them (for a log line per change, not per UPDATE). Pure.

use std::net::IpAddr;

use super::best::Step;
use super::{BestChange, Path};

/// Where one path to a prefix stands in the prefix's selection: used by the data plane (the
/// best, or another member of its multipath group) or not, and then why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    /// The best path.
    Best,
    /// As good as the best and in its multipath group: flows are spread over it too.
    Equal,
    /// As good as the best, but the group already holds `max_paths` paths.
    MaxPaths,
    /// As good as the best, but its next hop is already in the group.
    SameNextHop,
    /// Worse than the best at this step of the decision process.
    Worse(Step),
    /// Not selectable: its next hop is unreachable (or its session is gone).
    Unreachable,
}

impl Standing {
    /// In the group the data plane spreads flows over (the best included).
    pub fn in_group(self) -> bool {
        matches!(self, Standing::Best | Standing::Equal)
    }
}

/// The next hops of a group, the best path's first, then the equal paths' in the decision
/// process's order, each once (the RIB already keeps one path per next hop; this holds for
/// any list of paths).
pub fn next_hops<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<IpAddr> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for path in paths {
        if !hops.contains(&path.next_hop) {
            hops.push(path.next_hop);
        }
    }
    hops
}

impl BestChange {
    /// The next hops of the prefix's group after this change (empty: the prefix is gone).
    pub fn next_hops(&self) -> Vec<IpAddr> {
        next_hops(self.best.iter().chain(&self.equal))
    }
}

/// How a group's members changed: next hops that joined it and next hops that left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
}

impl GroupChange {
    /// The change from the next hops `before` to `after`, when it is one worth a line: the
    /// set of members differs and a group of more than one is involved (before or after). A
    /// single path moving from one next hop to another is an ordinary best-path change, and
    /// the same members in another order (another best among equals) spread flows the same
    /// way (the data plane's choice does not depend on the order); neither is reported.
    pub fn between(before: &[IpAddr], after: &[IpAddr]) -> Option<GroupChange> {
        if before.len() < 2 && after.len() < 2 {
            return None;
        }
        let added: Vec<IpAddr> = after
            .iter()
            .filter(|h| !before.contains(h))
            .copied()
            .collect();
        let removed: Vec<IpAddr> = before
            .iter()
            .filter(|h| !after.contains(h))
            .copied()
            .collect();
        (!added.is_empty() || !removed.is_empty()).then_some(GroupChange { added, removed })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::packet::PathAttributes;

    fn path(peer: u32, next_hop: &str) -> Path {
        Path {
            peer,
            next_hop: next_hop.parse().unwrap(),
            attrs: Arc::new(PathAttributes::default()),
        }
    }

    fn hops(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn next_hops_keep_the_order_and_drop_repeats() {
        let change = BestChange {
            prefix: "203.0.113.53/32".parse().unwrap(),
            best: Some(path(2, "10.2.0.1")),
            equal: vec![
                path(3, "10.3.0.1"),
                path(4, "10.2.0.1"),
                path(5, "10.4.0.1"),
            ],
        };
        assert_eq!(
            change.next_hops(),
            hops(&["10.2.0.1", "10.3.0.1", "10.4.0.1"])
        );
        let gone = BestChange {
            best: None,
            equal: Vec::new(),
            ..change
        };
        assert!(gone.next_hops().is_empty());
    }

    #[test]
    fn only_changes_of_a_group_s_members_are_reported() {
        // (before, after, added, removed); None: nothing to report.
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            Option<(&'a [&'a str], &'a [&'a str])>,
        );
        let cases: [Case<'_>; 7] = [
            // A single path moving: an ordinary best-path change.
            (&["10.2.0.1"], &["10.3.0.1"], None),
            (&[], &["10.2.0.1"], None),
            // A group forms, grows, shrinks, goes.
            (
                &["10.2.0.1"],
                &["10.2.0.1", "10.3.0.1"],
                Some((&["10.3.0.1"], &[])),
            ),
            (
                &["10.2.0.1", "10.3.0.1"],
                &["10.2.0.1", "10.3.0.1", "10.4.0.1"],
                Some((&["10.4.0.1"], &[])),
            ),
            (
                &["10.2.0.1", "10.3.0.1"],
                &["10.3.0.1"],
                Some((&[], &["10.2.0.1"])),
            ),
            (
                &["10.2.0.1", "10.3.0.1"],
                &[],
                Some((&[], &["10.2.0.1", "10.3.0.1"])),
            ),
            // The same members in another order.
            (&["10.2.0.1", "10.3.0.1"], &["10.3.0.1", "10.2.0.1"], None),
        ];
        for (before, after, expected) in cases {
            let got = GroupChange::between(&hops(before), &hops(after));
            let expected = expected.map(|(added, removed)| GroupChange {
                added: hops(added),
                removed: hops(removed),
            });
            assert_eq!(got, expected, "{before:?} -> {after:?}");
        }
    }
}
