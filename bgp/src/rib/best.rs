//! The decision process of RFC 4271 §9.1.2.2 as one comparison, with the route reflection
//! tie-breakers of RFC 4456 §9 and the IGP-cost step fed by the data plane's path costs.

use std::cmp::Ordering;

use super::{Path, PeerInfo};
use crate::packet::Origin;

/// LOCAL_PREF of a route that has none (eBGP-learned before policy, or locally originated).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// What the comparison needs to know about a path besides its attributes.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    /// `None` for a locally originated route.
    pub peer: Option<&'a PeerInfo>,
    /// Cost to reach the next hop (tunnel latency); `None` when unknown, which counts as 0.
    pub igp_cost: u32,
}

/// `Less` means `a` is the better path. Locally originated routes win over learned ones.
pub fn compare(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (aa, ba) = (&a.path.attrs, &b.path.attrs);
    // RFC 4456 §9: the ORIGINATOR_ID stands in for the BGP identifier of reflected routes.
    let router_id = |c: &Candidate<'_>| {
        c.path
            .attrs
            .originator_id
            .or(c.peer.map(|p| p.bgp_id))
            .map_or(0, u32::from)
    };
    compare_multipath(a, b)
        .then_with(|| router_id(a).cmp(&router_id(b)))
        .then_with(|| aa.cluster_list.len().cmp(&ba.cluster_list.len()))
        .then_with(|| {
            let addr = |c: &Candidate<'_>| c.peer.map(|p| p.address);
            addr(a).cmp(&addr(b))
        })
}

/// One step of the decision process before the tie-breaks that only pick one of equals,
/// in the order [`compare_multipath`] takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A locally originated route wins over a learned one.
    Local,
    /// The higher LOCAL_PREF (absent: [`DEFAULT_LOCAL_PREF`]).
    LocalPref,
    /// The shorter AS_PATH (an AS_SET counts 1, confederation segments 0).
    AsPathLength,
    /// The lower ORIGIN (IGP, then EGP, then INCOMPLETE).
    Origin,
    /// The lower MED (absent: 0), only between routes from the same neighbouring AS.
    Med,
    /// An eBGP route wins over an iBGP one.
    External,
    /// The lower IGP cost to the next hop (the data plane's cost; unknown counts as 0).
    IgpCost,
}

impl Step {
    /// Every step, in the decision process's order.
    pub const ALL: [Step; 7] = [
        Step::Local,
        Step::LocalPref,
        Step::AsPathLength,
        Step::Origin,
        Step::Med,
        Step::External,
        Step::IgpCost,
    ];

    /// `Less` means `a` is the better path at this step.
    pub fn compare(self, a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
        let local_pref = |c: &Candidate<'_>| c.path.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
        let path_len = |c: &Candidate<'_>| c.path.attrs.as_path.as_ref().map_or(0, |p| p.length());
        let origin = |c: &Candidate<'_>| c.path.attrs.origin.unwrap_or(Origin::Incomplete);
        let neighbor_as =
            |c: &Candidate<'_>| c.path.attrs.as_path.as_ref().and_then(|p| p.neighbor_as());
        let external = |c: &Candidate<'_>| c.peer.is_some_and(|p| !p.internal);
        match self {
            Step::Local => b.peer.is_none().cmp(&a.peer.is_none()),
            Step::LocalPref => local_pref(b).cmp(&local_pref(a)),
            Step::AsPathLength => path_len(a).cmp(&path_len(b)),
            Step::Origin => origin(a).cmp(&origin(b)),
            // MED only compares routes from the same neighbouring AS; absent MED is 0.
            Step::Med if neighbor_as(a) == neighbor_as(b) => a
                .path
                .attrs
                .med
                .unwrap_or(0)
                .cmp(&b.path.attrs.med.unwrap_or(0)),
            Step::Med => Ordering::Equal,
            Step::External => external(b).cmp(&external(a)),
            Step::IgpCost => a.igp_cost.cmp(&b.igp_cost),
        }
    }
}

/// The steps of [`compare`] before the tie-breaks that only pick one of equals (router id,
/// CLUSTER_LIST length, peer address), [`Step::ALL`] in order. A path for which this is
/// `Equal` against the best path is as good as the best, and joins its multipath group
/// ([`super::Rib::multipath`]).
pub fn compare_multipath(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    deciding_step(a, b).map_or(Ordering::Equal, |(_, order)| order)
}

/// The first step at which `a` and `b` differ, and how (`Less`: `a` is better); `None` when
/// they are as good as each other ([`compare_multipath`] is `Equal`). What `meshd routes`
/// gives as the reason a path is not in its prefix's multipath group.
pub fn deciding_step(a: &Candidate<'_>, b: &Candidate<'_>) -> Option<(Step, Ordering)> {
    Step::ALL
        .into_iter()
        .map(|step| (step, step.compare(a, b)))
        .find(|(_, order)| order.is_ne())
}
