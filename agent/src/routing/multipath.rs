//! The routing plane's equal-cost groups (a shared prefix announced by several members at the
//! same cost, `[routing] max_paths`): the next hops kept per prefix, the ones the data plane
//! spreads over, and one log line when a group's members change, never one per UPDATE. Pure; the rule for who is in a group is the RIB's
//! (`meshd_bgp::rib::Rib::multipath`), what counts as a change is
//! [`meshd_bgp::rib::group::GroupChange`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::exits::exit_name;
use super::member::MeshMember;
use crate::bgp::rib::group::GroupChange;
use crate::bgp::rib::{BestChange, LOCAL, Path};

/// The next hops of each prefix's multipath group, the best path's first (one for an ordinary
/// route), by prefix.
#[derive(Debug, Default)]
pub struct Groups(BTreeMap<IpNet, Vec<IpAddr>>);

impl Groups {
    /// Keeps the next hops of the prefix's group; returns the line to log when its members
    /// changed (once per change: a re-announcement with the same group says nothing).
    pub fn note(&mut self, members: &[MeshMember], change: &BestChange) -> Option<String> {
        let after = change.next_hops();
        let before = self.0.get(&change.prefix).map_or(&[][..], Vec::as_slice);
        // Default routes use the one exit chosen for them (see `data_plane_hops`).
        let line = if change.prefix.prefix_len() != 0
            && change.best.as_ref().is_none_or(|b| b.peer != LOCAL)
        {
            group_log_line(members, change.prefix, before, &after)
        } else {
            None
        };
        if after.is_empty() {
            self.0.remove(&change.prefix);
        } else {
            self.0.insert(change.prefix, after);
        }
        line
    }

    /// The next hops the data plane spreads a learnt prefix over: its multipath group, except
    /// for the default routes, which go through the one exit BGP chose (or a rule names): two
    /// exits masquerade with two addresses, and a host's flows to one server should not leave
    /// by both.
    pub fn data_plane_hops(&self, prefix: IpNet, best: &Path) -> Vec<IpAddr> {
        match self.0.get(&prefix) {
            Some(group) if prefix.prefix_len() != 0 && group.first() == Some(&best.next_hop) => {
                group.clone()
            }
            _ => vec![best.next_hop],
        }
    }
}

/// A next hop with the member it belongs to, when one does: `10.2.0.1 (beta)`.
pub fn named(members: &[MeshMember], next_hop: IpAddr) -> String {
    match exit_name(members, None, next_hop, None) {
        Some(name) => format!("{next_hop} ({name})"),
        None => next_hop.to_string(),
    }
}

fn list(members: &[MeshMember], hops: &[IpAddr]) -> String {
    let names: Vec<String> = hops.iter().map(|h| named(members, *h)).collect();
    names.join(", ")
}

/// The log line for `prefix`'s group going from the next hops `before` to `after`, when its
/// members changed ([`GroupChange::between`]); `None` otherwise.
pub fn group_log_line(
    members: &[MeshMember],
    prefix: IpNet,
    before: &[IpAddr],
    after: &[IpAddr],
) -> Option<String> {
    let change = GroupChange::between(before, after)?;
    let mut what = Vec::new();
    if !change.added.is_empty() {
        what.push(format!("added {}", list(members, &change.added)));
    }
    if !change.removed.is_empty() {
        what.push(format!("removed {}", list(members, &change.removed)));
    }
    let now = match after.len() {
        0 => "no path left".to_owned(),
        1 => format!("{} alone", list(members, after)),
        n => format!("{n} equal-cost next hops {}", list(members, after)),
    };
    Some(format!(
        "ECMP group for {prefix}: {now} ({})",
        what.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::member::tests::core;

    fn hops(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn a_group_change_is_one_line_naming_the_members() {
        let members: Vec<MeshMember> = [core(2), core(3)]
            .iter()
            .map(|i| MeshMember::from_identity(i).unwrap())
            .collect();
        let prefix: IpNet = "203.0.113.53/32".parse().unwrap();
        let line = |before: &[&str], after: &[&str]| {
            group_log_line(&members, prefix, &hops(before), &hops(after))
        };
        assert_eq!(
            line(&["10.2.0.1"], &["10.2.0.1", "10.3.0.1"]).as_deref(),
            Some(
                "ECMP group for 203.0.113.53/32: 2 equal-cost next hops 10.2.0.1 (core2), \
                 10.3.0.1 (core3) (added 10.3.0.1 (core3))"
            )
        );
        assert_eq!(
            line(&["10.2.0.1", "10.3.0.1"], &["10.3.0.1"]).as_deref(),
            Some(
                "ECMP group for 203.0.113.53/32: 10.3.0.1 (core3) alone (removed 10.2.0.1 (core2))"
            )
        );
        assert_eq!(
            line(&["10.2.0.1", "10.9.0.1"], &[]).as_deref(),
            Some(
                "ECMP group for 203.0.113.53/32: no path left (removed 10.2.0.1 (core2), \
                 10.9.0.1)"
            )
        );
        // A re-announcement, another order, a single path moving: nothing to say.
        assert_eq!(
            line(&["10.2.0.1", "10.3.0.1"], &["10.2.0.1", "10.3.0.1"]),
            None
        );
        assert_eq!(
            line(&["10.2.0.1", "10.3.0.1"], &["10.3.0.1", "10.2.0.1"]),
            None
        );
        assert_eq!(line(&["10.2.0.1"], &["10.3.0.1"]), None);
    }

    #[test]
    fn groups_are_kept_per_prefix_and_defaults_use_their_one_exit() {
        let path = |next_hop: &str| Path {
            peer: 7,
            next_hop: next_hop.parse().unwrap(),
            attrs: std::sync::Arc::new(crate::bgp::packet::PathAttributes::default()),
        };
        let shared: IpNet = "203.0.113.53/32".parse().unwrap();
        let default: IpNet = "0.0.0.0/0".parse().unwrap();
        let mut groups = Groups::default();
        for prefix in [shared, default] {
            groups.note(
                &[],
                &BestChange {
                    prefix,
                    best: Some(path("10.2.0.1")),
                    equal: vec![path("10.3.0.1")],
                },
            );
        }
        let best = path("10.2.0.1");
        assert_eq!(
            groups.data_plane_hops(shared, &best),
            hops(&["10.2.0.1", "10.3.0.1"])
        );
        assert_eq!(groups.data_plane_hops(default, &best), hops(&["10.2.0.1"]));
        // A group that does not lead with the best path is stale: the best alone.
        let moved = path("10.9.0.1");
        assert_eq!(groups.data_plane_hops(shared, &moved), hops(&["10.9.0.1"]));
        groups.note(
            &[],
            &BestChange {
                prefix: shared,
                best: None,
                equal: Vec::new(),
            },
        );
        assert!(!groups.0.contains_key(&shared));
    }
}
