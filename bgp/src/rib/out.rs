//! Adj-RIB-Out: what each peer was last sent, so that only changes are announced and a route
//! refresh can resend everything; and packing of changes into UPDATE messages that fit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::table::{Key4, Key6, key4, key6, net4, net6};
use crate::packet::{
    Family, HEADER_LEN, MAX_MESSAGE_LEN, MpReach, MpUnreach, NextHop, PathAttributes, Update,
    encoded_prefix_len,
};

/// The attributes and next hop a prefix was announced with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advertised {
    pub next_hop: NextHop,
    pub attrs: Arc<PathAttributes>,
}

/// What one peer was sent, per prefix. Compact keys per family like the RIB's table, and one
/// shared `Advertised` for consecutive prefixes announced alike (a full table to an iBGP peer
/// costs a bucket per prefix, not an attribute set).
#[derive(Debug, Default)]
pub struct AdjRibOut {
    v4: HashMap<Key4, Arc<Advertised>>,
    v6: HashMap<Key6, Arc<Advertised>>,
    last: Option<Arc<Advertised>>,
}

/// One change to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutChange {
    Announce(IpNet, Advertised),
    Withdraw(IpNet),
}

impl AdjRibOut {
    pub fn new() -> AdjRibOut {
        AdjRibOut::default()
    }

    /// Records what should now be advertised for `prefix` and returns the change to send, if
    /// it differs from what the peer has.
    pub fn set(&mut self, prefix: IpNet, adv: Option<Advertised>) -> Option<OutChange> {
        let Some(adv) = adv else {
            let removed = match prefix {
                IpNet::V4(n) => self.v4.remove(&key4(&n)),
                IpNet::V6(n) => self.v6.remove(&key6(&n)),
            };
            return removed.map(|_| OutChange::Withdraw(prefix));
        };
        let sent = match prefix {
            IpNet::V4(n) => self.v4.get(&key4(&n)),
            IpNet::V6(n) => self.v6.get(&key6(&n)),
        };
        if sent.is_some_and(|s| **s == adv) {
            return None;
        }
        let shared = match &self.last {
            Some(last) if **last == adv => last.clone(),
            _ => {
                let shared = Arc::new(adv.clone());
                self.last = Some(shared.clone());
                shared
            }
        };
        match prefix {
            IpNet::V4(n) => self.v4.insert(key4(&n), shared),
            IpNet::V6(n) => self.v6.insert(key6(&n), shared),
        };
        Some(OutChange::Announce(prefix, adv))
    }

    /// Everything advertised in `family`, for a route refresh.
    pub fn all(&self, family: Family) -> Vec<OutChange> {
        let announce = |(p, a): (IpNet, &Arc<Advertised>)| OutChange::Announce(p, (**a).clone());
        match family {
            Family::Ipv4Unicast => self
                .v4
                .iter()
                .map(|(k, a)| (net4(k), a))
                .map(announce)
                .collect(),
            Family::Ipv6Unicast => self
                .v6
                .iter()
                .map(|(k, a)| (net6(k), a))
                .map(announce)
                .collect(),
        }
    }

    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
        self.last = None;
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Room for NLRI in an UPDATE after its fixed fields and attributes (with slack for the
/// MP_REACH header and next hops).
fn nlri_budget(attrs_len: usize) -> usize {
    MAX_MESSAGE_LEN.saturating_sub(HEADER_LEN + 4 + attrs_len + 48)
}

/// Packs changes into UPDATEs no larger than the BGP maximum: withdrawals together, and
/// announcements grouped by identical attributes and next hop. IPv4 routes with an IPv4 next
/// hop use the classic fields, everything else MP_REACH/MP_UNREACH.
pub fn pack_updates(changes: Vec<OutChange>) -> Vec<Update> {
    let mut updates = Vec::new();
    let mut withdraw_v4 = Vec::new();
    let mut withdraw_v6 = Vec::new();
    let mut groups: HashMap<Advertised, Vec<IpNet>> = HashMap::new();
    for c in changes {
        match c {
            OutChange::Withdraw(IpNet::V4(p)) => withdraw_v4.push(IpNet::V4(p)),
            OutChange::Withdraw(p) => withdraw_v6.push(p),
            OutChange::Announce(p, adv) => groups.entry(adv).or_default().push(p),
        }
    }
    for chunk in chunks(withdraw_v4, nlri_budget(0)) {
        updates.push(Update {
            withdrawn: ipv4_only(chunk),
            ..Update::default()
        });
    }
    for chunk in chunks(withdraw_v6, nlri_budget(0)) {
        updates.push(Update {
            mp_unreach: Some(MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: chunk,
            }),
            ..Update::default()
        });
    }
    for (adv, prefixes) in groups {
        // Attribute size estimate: encode once with a generous bound.
        let attrs_len = estimate_attrs_len(&adv.attrs);
        let mut v4 = Vec::new();
        let mut mp: HashMap<Family, Vec<IpNet>> = HashMap::new();
        for p in prefixes {
            match (p, adv.next_hop) {
                (IpNet::V4(p4), NextHop::V4(_)) => v4.push(IpNet::V4(p4)),
                (p, _) => mp.entry(Family::of(&p)).or_default().push(p),
            }
        }
        for chunk in chunks(v4, nlri_budget(attrs_len)) {
            let mut attrs = (*adv.attrs).clone();
            if let NextHop::V4(nh) = adv.next_hop {
                attrs.next_hop = Some(nh);
            }
            updates.push(Update {
                attributes: attrs,
                nlri: ipv4_only(chunk),
                ..Update::default()
            });
        }
        for (family, prefixes) in mp {
            for chunk in chunks(prefixes, nlri_budget(attrs_len)) {
                let mut attrs = (*adv.attrs).clone();
                attrs.next_hop = None;
                updates.push(Update {
                    attributes: attrs,
                    mp_reach: Some(MpReach {
                        family,
                        next_hop: adv.next_hop,
                        nlri: chunk,
                    }),
                    ..Update::default()
                });
            }
        }
    }
    updates
}

fn estimate_attrs_len(attrs: &PathAttributes) -> usize {
    let path = attrs.as_path.as_ref().map_or(0, |p| {
        p.segments
            .iter()
            .map(|s| 2 + 4 * s.asns.len())
            .sum::<usize>()
    });
    let unknown: usize = attrs.unknown.iter().map(|u| 4 + u.value.len()).sum();
    64 + path
        + 4 * attrs.communities.len()
        + 4 * attrs.cluster_list.len()
        + 12 * attrs.large_communities.len()
        + unknown
}

/// `prefixes` as the classic NLRI and withdrawn fields carry them; the callers pass IPv4
/// prefixes only, so nothing is dropped.
fn ipv4_only(prefixes: Vec<IpNet>) -> Vec<ipnet::Ipv4Net> {
    prefixes
        .into_iter()
        .filter_map(|p| match p {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// Splits prefixes into runs whose encoding fits `budget` octets.
fn chunks(prefixes: Vec<IpNet>, budget: usize) -> Vec<Vec<IpNet>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for p in prefixes {
        let len = encoded_prefix_len(&p);
        if used + len > budget && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += len;
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The next hop to announce: the path's own next hop when it is kept, else the session's
/// address of the right family (IPv4 routes may go over an IPv6 next hop, RFC 8950).
pub fn resolve_next_hop(
    prefix: &IpNet,
    kept: Option<IpAddr>,
    self_v4: Option<Ipv4Addr>,
    self_v6: Option<Ipv6Addr>,
    ipv4_over_ipv6: bool,
) -> Option<NextHop> {
    let v6 = |global| NextHop::V6 {
        global,
        link_local: None,
    };
    match (prefix, kept) {
        (IpNet::V4(_), Some(IpAddr::V4(a))) => Some(NextHop::V4(a)),
        (IpNet::V6(_), Some(IpAddr::V6(a))) => Some(v6(a)),
        (IpNet::V4(_), Some(IpAddr::V6(a))) if ipv4_over_ipv6 => Some(v6(a)),
        (IpNet::V4(_), _) => self_v4
            .map(NextHop::V4)
            .or(self_v6.filter(|_| ipv4_over_ipv6).map(v6)),
        (IpNet::V6(_), _) => self_v6.map(v6),
    }
}
