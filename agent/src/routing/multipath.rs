//! What the routing plane says about equal-cost groups (a shared prefix announced by several
//! members at the same cost, `[routing] max_paths`): one log line when a group's members
//! change, never one per UPDATE. Pure; the rule for who is in a group is the RIB's
//! (`meshd_bgp::rib::Rib::multipath`), what counts as a change is
//! [`meshd_bgp::rib::group::GroupChange`].

use std::net::IpAddr;

use ipnet::IpNet;

use super::exits::exit_name;
use super::member::MeshMember;
use crate::bgp::rib::group::GroupChange;

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
}
