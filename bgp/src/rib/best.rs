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

/// The steps of [`compare`] before the tie-breaks that only pick one of equals (router id,
/// CLUSTER_LIST length, peer address). A path for which this is `Equal` against the best
/// path is as good as the best, and joins its multipath group ([`super::Rib::multipath`]):
///
/// 1. both locally originated, or both learned;
/// 2. the same LOCAL_PREF (absent: [`DEFAULT_LOCAL_PREF`]);
/// 3. the same AS_PATH length (an AS_SET counts 1, confederation segments 0);
/// 4. the same ORIGIN;
/// 5. the same MED (absent: 0) when both come from the same neighbouring AS; from different
///    neighbouring ASes MED is not compared, as in the decision itself;
/// 6. both from eBGP, or both from iBGP;
/// 7. the same IGP cost to the next hop (the data plane's cost; unknown counts as 0).
pub fn compare_multipath(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let (aa, ba) = (&a.path.attrs, &b.path.attrs);
    let local_pref = |c: &Candidate<'_>| c.path.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF);
    let path_len = |c: &Candidate<'_>| c.path.attrs.as_path.as_ref().map_or(0, |p| p.length());
    let origin = |c: &Candidate<'_>| c.path.attrs.origin.unwrap_or(Origin::Incomplete);
    let neighbor_as =
        |c: &Candidate<'_>| c.path.attrs.as_path.as_ref().and_then(|p| p.neighbor_as());
    let external = |c: &Candidate<'_>| c.peer.is_some_and(|p| !p.internal);
    b.peer
        .is_none()
        .cmp(&a.peer.is_none())
        .then_with(|| local_pref(b).cmp(&local_pref(a)))
        .then_with(|| path_len(a).cmp(&path_len(b)))
        .then_with(|| origin(a).cmp(&origin(b)))
        .then_with(|| {
            // MED only compares routes from the same neighbouring AS; absent MED is 0.
            if neighbor_as(a) == neighbor_as(b) {
                aa.med.unwrap_or(0).cmp(&ba.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| external(b).cmp(&external(a)))
        .then_with(|| a.igp_cost.cmp(&b.igp_cost))
}
