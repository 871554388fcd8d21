//! The routing information bases: every usable path per prefix (the Adj-RIBs-In after import
//! policy), the best of them (Loc-RIB), and what was sent to each peer ([`out::AdjRibOut`]).
//! Pure: operations return the best-route changes for the routing plane to install.

pub mod best;
pub mod export;
pub mod group;
mod intern;
pub mod out;
mod table;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::packet::PathAttributes;
use best::{Candidate, compare, compare_multipath, deciding_step};
use group::Standing;

/// Identifies a session in the RIB; [`LOCAL`] is this node's own routes.
pub type PeerId = u32;
pub const LOCAL: PeerId = 0;

/// What best-path selection and export rules need to know about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub asn: u32,
    pub bgp_id: Ipv4Addr,
    pub internal: bool,
    /// A route reflector client of ours (RFC 4456): a spoke, when this node is a core.
    pub rr_client: bool,
}

/// One path to a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub peer: PeerId,
    pub next_hop: IpAddr,
    /// Shared: the routes of one UPDATE all point to the same attributes.
    pub attrs: Arc<PathAttributes>,
}

/// The Loc-RIB's answer for one prefix changed: `None` means no route any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    pub best: Option<Path>,
    /// The rest of the prefix's multipath group after `best`, in order ([`Rib::multipath`]);
    /// always empty with one path at most (the default). A change of these alone is a change.
    pub equal: Vec<Path>,
}

/// How many paths one prefix's multipath group may hold, the best included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaxPaths(usize);

impl Default for MaxPaths {
    /// One: the best path alone, no multipath.
    fn default() -> MaxPaths {
        MaxPaths(1)
    }
}

/// What a prefix's selection was before a change: its best path and the rest of its group.
type Selection = (Option<Path>, Vec<Path>);

#[derive(Debug, Default)]
pub struct Rib {
    peers: HashMap<PeerId, PeerInfo>,
    table: table::Table,
    /// Cost to each next hop as the data plane reports it; `None` = unreachable. Next hops not
    /// listed are directly reachable at cost 0 (an eBGP neighbour on a shared link).
    igp_cost: HashMap<IpAddr, Option<u32>>,
    /// The path last announced: the routes of one UPDATE arrive one after the other with equal
    /// paths, and then all share this one allocation without a lookup.
    last_path: Option<Arc<Path>>,
    /// Equal paths from different UPDATEs share one allocation too.
    interner: intern::Interner,
    /// How many prefixes each peer has a path to (its accepted routes).
    path_counts: HashMap<PeerId, usize>,
    max_paths: MaxPaths,
}

impl Rib {
    pub fn new() -> Rib {
        Rib::default()
    }

    /// Sets how many paths a prefix's multipath group may hold, the best included (0 counts
    /// as 1: the best path alone), and reports the prefixes whose group changed.
    pub fn set_max_paths(&mut self, max_paths: usize) -> Vec<BestChange> {
        let max_paths = MaxPaths(max_paths.max(1));
        if max_paths == self.max_paths {
            return Vec::new();
        }
        let prefixes = self.table.prefixes_where(|paths| paths.len() > 1);
        let before: Vec<(IpNet, Selection)> = prefixes
            .into_iter()
            .map(|p| (p, self.selection(&p)))
            .collect();
        self.max_paths = max_paths;
        before
            .into_iter()
            .filter_map(|(p, before)| self.reselect(p, before))
            .collect()
    }

    pub fn add_peer(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    /// Forgets a peer and every path it gave (its session went down).
    pub fn remove_peer(&mut self, id: PeerId) -> Vec<BestChange> {
        let prefixes = self
            .table
            .prefixes_where(|paths| paths.iter().any(|p| p.peer == id));
        let changes = prefixes
            .into_iter()
            .filter_map(|p| self.withdraw(id, p))
            .collect();
        self.peers.remove(&id);
        self.path_counts.remove(&id);
        changes
    }

    /// How many prefixes `peer` has a path to.
    pub fn path_count(&self, peer: PeerId) -> usize {
        self.path_counts.get(&peer).copied().unwrap_or(0)
    }

    /// Adds or replaces `path.peer`'s path to `prefix`.
    pub fn announce(&mut self, prefix: IpNet, path: Path) -> Option<BestChange> {
        let path = match &self.last_path {
            Some(last) if **last == path => last.clone(),
            _ => {
                let shared = self.interner.intern(path);
                self.last_path = Some(shared.clone());
                shared
            }
        };
        let before = self.selection(&prefix);
        let peer = path.peer;
        match self.table.upsert(prefix, path) {
            table::Upsert::Unchanged => return None,
            table::Upsert::Replaced => {}
            table::Upsert::Added => *self.path_counts.entry(peer).or_default() += 1,
        }
        self.reselect(prefix, before)
    }

    pub fn withdraw(&mut self, peer: PeerId, prefix: IpNet) -> Option<BestChange> {
        let before = self.selection(&prefix);
        if !self.table.remove(prefix, peer) {
            return None;
        }
        if let Some(count) = self.path_counts.get_mut(&peer) {
            *count = count.saturating_sub(1);
        }
        self.reselect(prefix, before)
    }

    /// Records the data plane's cost to `next_hop` (`None`: unreachable) and reselects the
    /// prefixes that have a path through it.
    pub fn set_igp_cost(&mut self, next_hop: IpAddr, cost: Option<u32>) -> Vec<BestChange> {
        if self.igp_cost.get(&next_hop) == Some(&cost) {
            return Vec::new();
        }
        let prefixes = self
            .table
            .prefixes_where(|paths| paths.iter().any(|p| p.next_hop == next_hop));
        // Before the cost changes: a multipath group is worked out from the costs.
        let before: Vec<(IpNet, Selection)> = prefixes
            .into_iter()
            .map(|p| (p, self.selection(&p)))
            .collect();
        self.igp_cost.insert(next_hop, cost);
        before
            .into_iter()
            .filter_map(|(p, before)| self.reselect(p, before))
            .collect()
    }

    pub fn best(&self, prefix: &IpNet) -> Option<&Path> {
        self.table.get(prefix)?.best().map(|p| &**p)
    }

    /// The prefix's multipath group: its best path first, then the usable paths that are as
    /// good as the best through every step of the decision process before router id
    /// ([`best::compare_multipath`] is `Equal`), in the decision process's order, one per
    /// next hop (a second path through a next hop already in the group adds nothing to
    /// spread traffic over), at most `max_paths` in all ([`Rib::set_max_paths`]). Empty when
    /// the prefix has no best path.
    pub fn multipath<'a>(&'a self, prefix: &IpNet) -> Vec<&'a Path> {
        let Some(best) = self.best(prefix) else {
            return Vec::new();
        };
        if self.max_paths.0 == 1 {
            return vec![best];
        }
        let Some(best_cost) = self.usable_cost(best) else {
            return vec![best];
        };
        let peers = &self.peers;
        let candidate = move |path: &'a Path, igp_cost| Candidate {
            path,
            peer: peers.get(&path.peer),
            igp_cost,
        };
        let best_candidate = candidate(best, best_cost);
        let mut equal: Vec<Candidate<'_>> = self
            .candidates(prefix)
            .into_iter()
            .map(|(path, cost)| candidate(path, cost))
            .filter(|c| *c.path != *best && compare_multipath(c, &best_candidate).is_eq())
            .collect();
        equal.sort_by(compare);
        let mut group = vec![best];
        for c in equal {
            if group.len() >= self.max_paths.0 {
                break;
            }
            if group.iter().all(|p| p.next_hop != c.path.next_hop) {
                group.push(c.path);
            }
        }
        group
    }

    /// Every path to `prefix` (in [`Rib::paths`]'s order) with its IGP cost (`None`: not
    /// selectable) and where it stands against the best path and its multipath group: what
    /// `meshd routes` shows of a prefix announced by several nodes.
    pub fn standings(&self, prefix: &IpNet) -> Vec<(&Path, Option<u32>, Standing)> {
        let group = self.multipath(prefix);
        let best = group.first().copied();
        let best_candidate = best.and_then(|b| {
            Some(Candidate {
                path: b,
                peer: self.peers.get(&b.peer),
                igp_cost: self.usable_cost(b)?,
            })
        });
        self.paths(prefix)
            .iter()
            .map(|path| {
                let path = &**path;
                let cost = self.usable_cost(path);
                let standing = if best == Some(path) {
                    Standing::Best
                } else if group.contains(&path) {
                    Standing::Equal
                } else {
                    match (cost, &best_candidate) {
                        (None, _) | (_, None) => Standing::Unreachable,
                        (Some(igp_cost), Some(b)) => {
                            let c = Candidate {
                                path,
                                peer: self.peers.get(&path.peer),
                                igp_cost,
                            };
                            match deciding_step(&c, b) {
                                Some((step, _)) => Standing::Worse(step),
                                None if group.iter().any(|g| g.next_hop == path.next_hop) => {
                                    Standing::SameNextHop
                                }
                                None => Standing::MaxPaths,
                            }
                        }
                    }
                };
                (path, cost, standing)
            })
            .collect()
    }

    /// The best path and the rest of the multipath group, as a change reports them.
    fn selection(&self, prefix: &IpNet) -> Selection {
        if self.max_paths.0 == 1 {
            return (self.best(prefix).cloned(), Vec::new());
        }
        let mut group = self.multipath(prefix).into_iter().cloned();
        (group.next(), group.collect())
    }

    /// Every path to `prefix`, in no particular order.
    pub fn paths(&self, prefix: &IpNet) -> &[Arc<Path>] {
        self.table.get(prefix).map_or(&[], |slot| slot.paths())
    }

    /// The paths to `prefix` that the decision process chooses among (next hop reachable,
    /// session known), each with its IGP cost; the best is one of them. Callers that pick a
    /// path by something other than the decision process (an exit preferred by name) need
    /// the runners-up, not just the best.
    pub fn candidates(&self, prefix: &IpNet) -> Vec<(&Path, u32)> {
        self.paths(prefix)
            .iter()
            .filter_map(|path| Some((&**path, self.usable_cost(path)?)))
            .collect()
    }

    /// The IGP cost of a path that may be selected, `None` for one that may not: its next
    /// hop is unreachable (RFC 4271 §9.1.2), or its session is unknown.
    fn usable_cost(&self, path: &Path) -> Option<u32> {
        let cost = match self.igp_cost.get(&path.next_hop) {
            Some(None) => return None,
            Some(Some(c)) => *c,
            None => 0,
        };
        (path.peer == LOCAL || self.peers.contains_key(&path.peer)).then_some(cost)
    }

    /// Every prefix with its best path.
    pub fn best_routes(&self) -> impl Iterator<Item = (IpNet, &Path)> {
        self.table
            .iter()
            .filter_map(|(p, slot)| Some((p, &**slot.best()?)))
    }

    /// Every prefix with its best path, sharing the path (cheap to hold many of).
    pub fn best_routes_shared(&self) -> impl Iterator<Item = (IpNet, Arc<Path>)> {
        self.table
            .iter()
            .filter_map(|(p, slot)| Some((p, slot.best()?.clone())))
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Runs the decision process over the prefix's paths and reports whether the best path
    /// or the rest of its multipath group differs from `before`.
    fn reselect(&mut self, prefix: IpNet, before: Selection) -> Option<BestChange> {
        let Some(slot) = self.table.get(&prefix) else {
            // The last path went: the prefix is gone.
            return before.0.map(|_| BestChange {
                prefix,
                best: None,
                equal: Vec::new(),
            });
        };
        let mut best: Option<(usize, Candidate<'_>)> = None;
        for (i, path) in slot.paths().iter().enumerate() {
            let Some(cost) = self.usable_cost(path) else {
                continue;
            };
            let peer = self.peers.get(&path.peer);
            let cand = Candidate {
                path,
                peer,
                igp_cost: cost,
            };
            if best.as_ref().is_none_or(|(_, b)| compare(&cand, b).is_lt()) {
                best = Some((i, cand));
            }
        }
        let best = best.map(|(i, _)| i);
        self.table.set_best(&prefix, best);
        let after = self.selection(&prefix);
        (before != after).then_some(BestChange {
            prefix,
            best: after.0,
            equal: after.1,
        })
    }
}
