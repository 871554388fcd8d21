//! Which best paths go to which peer and with what attributes: split horizon, the iBGP and
//! route reflection rules (RFC 4271 §9.2, RFC 4456 §8), and the eBGP rewrite (prepend our AS,
//! next hop self, no LOCAL_PREF, no MED or reflection attributes from elsewhere).

use std::net::{IpAddr, Ipv4Addr};

use super::best::DEFAULT_LOCAL_PREF;
use super::{LOCAL, Path, PeerId, PeerInfo};
use crate::packet::{AsPath, PathAttributes};

pub const NO_EXPORT: u32 = 0xFFFF_FF01;
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// This speaker's identity, as export and import checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInfo {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// RFC 4456 cluster identifier; meshd uses the router id (one reflector per cluster).
    pub cluster_id: Ipv4Addr,
}

/// The attributes to send `path` to peer `to` with, or `None` if it must not be sent there.
/// Policy is applied afterwards by the caller.
pub fn export_path(
    local: &LocalInfo,
    to_id: PeerId,
    to: &PeerInfo,
    path: &Path,
    from: Option<&PeerInfo>,
) -> Option<(Option<IpAddr>, PathAttributes)> {
    if path.peer == to_id {
        return None; // split horizon
    }
    // RFC 1997's well-known communities: NO_ADVERTISE stays here, NO_EXPORT(_SUBCONFED) in this AS.
    let communities = &path.attrs.communities;
    if communities.contains(&NO_ADVERTISE)
        || (!to.internal
            && (communities.contains(&NO_EXPORT) || communities.contains(&NO_EXPORT_SUBCONFED)))
    {
        return None;
    }
    let mut attrs = (*path.attrs).clone();
    match (to.internal, from) {
        (true, Some(from)) if from.internal => {
            // RFC 4456 §6: a reflector passes client routes to everyone and non-client routes
            // only to clients; without a client on either side iBGP routes stay put.
            if !from.rr_client && !to.rr_client {
                return None;
            }
            if attrs.originator_id.is_none() {
                attrs.originator_id = Some(from.bgp_id);
            }
            attrs.cluster_list.insert(0, local.cluster_id);
            Some((Some(path.next_hop), attrs))
        }
        (true, _) => {
            // eBGP-learned or local route into iBGP: keep its next hop (the mesh reaches it over
            // the tunnels), make sure LOCAL_PREF is there.
            attrs.local_pref.get_or_insert(DEFAULT_LOCAL_PREF);
            Some((Some(path.next_hop).filter(|_| path.peer != LOCAL), attrs))
        }
        (false, _) => {
            // RFC 4271 §5.1.2/§5.1.4/§5.1.5: prepend our AS, drop LOCAL_PREF and any MED learned
            // from another AS; RFC 4456 attributes never leave the AS.
            attrs
                .as_path
                .get_or_insert_with(AsPath::default)
                .prepend(local.asn, 1);
            attrs.local_pref = None;
            if path.peer != LOCAL {
                attrs.med = None;
            }
            attrs.originator_id = None;
            attrs.cluster_list.clear();
            Some((None, attrs))
        }
    }
}

/// RFC 4456 §8 loop prevention on receipt: a route that carries our router id as originator or
/// our cluster id in its cluster list came back to us.
pub fn is_reflection_loop(local: &LocalInfo, attrs: &PathAttributes) -> bool {
    attrs.originator_id == Some(local.router_id) || attrs.cluster_list.contains(&local.cluster_id)
}
