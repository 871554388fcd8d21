//! What the speaker shows of itself: sessions, and the RIB's paths with where each came from.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::fsm::{Negotiated, State};
use crate::refusals::Kind as RefusalKind;
use crate::rib::group::Standing;
use crate::rib::{Path, PeerId};

use super::SpeakerCore;

/// What the peers of a speaker see of it, for the routing plane's guard and `meshd routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: IpNet,
    pub path: Path,
    /// The session the path came from (`None`: this node's own route).
    pub from: Option<PeerSummary>,
    pub best: bool,
    /// The cost to the next hop (`None`: not selectable, its next hop is unreachable).
    pub igp_cost: Option<u32>,
    /// Where the path stands in its prefix's selection (the best, in its multipath group, or
    /// why not).
    pub standing: Standing,
}

/// A path the decision process may select (its next hop is reachable), with its IGP cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsablePath {
    pub entry: RouteEntry,
    pub igp_cost: u32,
}

/// A session's neighbour, as a route's "learnt from".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    pub name: String,
    pub address: IpAddr,
    pub internal: bool,
}

/// A session as `meshd peers`/`status` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub name: String,
    pub address: IpAddr,
    pub remote_asn: u32,
    pub rr_client: bool,
    pub state: State,
    pub negotiated: Option<Negotiated>,
    pub advertised: usize,
    /// Prefixes the neighbour announces that are in the RIB (import policy and the guard
    /// accepted them).
    pub accepted: usize,
    /// Prefixes the neighbour announces that were refused, by kind of reason (kinds with none
    /// left out); see [`crate::refusals`].
    pub refused: Vec<(RefusalKind, usize)>,
}

impl SessionStatus {
    /// Every refused prefix, whatever the reason.
    pub fn refused_total(&self) -> usize {
        self.refused.iter().map(|(_, n)| n).sum()
    }
}

impl SpeakerCore {
    /// Every session, by neighbour name.
    pub fn sessions(&self) -> Vec<SessionStatus> {
        let mut list: Vec<SessionStatus> = self
            .peers
            .iter()
            .map(|(id, p)| SessionStatus {
                name: p.config.name.clone(),
                address: p.config.address,
                remote_asn: p.config.remote_asn,
                rr_client: p.config.rr_client,
                state: p.fsm.state(),
                negotiated: p.fsm.negotiated().cloned(),
                advertised: p.out.len(),
                accepted: self.rib.path_count(*id),
                refused: p.refusals.by_kind(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Every prefix with its best path.
    pub fn best_routes(&self) -> Vec<(IpNet, Path)> {
        self.rib
            .best_routes()
            .map(|(p, path)| (p, path.clone()))
            .collect()
    }

    /// Every path of the RIB with the session it came from and where it stands.
    pub fn all_paths(&self) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for (prefix, _) in self.rib.best_routes() {
            self.entries(prefix, &mut out);
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        out
    }

    /// [`Self::all_paths`] for these prefixes only (those without a best path have none).
    pub fn paths_of(&self, prefixes: &[IpNet]) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for prefix in prefixes {
            if self.rib.best(prefix).is_some() {
                self.entries(*prefix, &mut out);
            }
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        out
    }

    /// The paths to `prefix` onto `out`.
    fn entries(&self, prefix: IpNet, out: &mut Vec<RouteEntry>) {
        for (path, igp_cost, standing) in self.rib.standings(&prefix) {
            out.push(self.entry(prefix, path, igp_cost, standing));
        }
    }

    fn entry(
        &self,
        prefix: IpNet,
        path: &Path,
        igp_cost: Option<u32>,
        standing: Standing,
    ) -> RouteEntry {
        RouteEntry {
            prefix,
            path: path.clone(),
            from: self.summary(path.peer),
            best: standing == Standing::Best,
            igp_cost,
            standing,
        }
    }

    /// The prefix's multipath group, best first ([`crate::rib::Rib::multipath`]).
    pub fn multipath(&self, prefix: &IpNet) -> Vec<Path> {
        self.rib.multipath(prefix).into_iter().cloned().collect()
    }

    /// The paths to `prefix` the decision process chooses among, with their IGP costs and
    /// whether each is the best: for choices made by other means than the best path (an
    /// exit preferred by name), which need the runners-up too.
    pub fn usable_paths(&self, prefix: &IpNet) -> Vec<UsablePath> {
        self.rib
            .standings(prefix)
            .into_iter()
            .filter_map(|(path, igp_cost, standing)| {
                Some(UsablePath {
                    igp_cost: igp_cost?,
                    entry: self.entry(*prefix, path, igp_cost, standing),
                })
            })
            .collect()
    }

    fn summary(&self, peer: PeerId) -> Option<PeerSummary> {
        self.peers.get(&peer).map(|p| PeerSummary {
            name: p.config.name.clone(),
            address: p.config.address,
            internal: p.info.internal,
        })
    }
}
