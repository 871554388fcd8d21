//! What each peer is sent: the initial table when a session comes up, and the changes when a
//! best route changes. `export_to` is the per-peer decision (a default-only neighbour gets
//! nothing of the RIB after session start); `advertise` turns a path into what goes out
//! (export rules, next hop, export policy) and records it in the Adj-RIB-Out.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::fsm::State;
use crate::neighbor::NextHopSelf;
use crate::packet::{Family, Message};
use crate::rib::export::export_path;
use crate::rib::out::{Advertised, OutChange, pack_updates, resolve_next_hop};
use crate::rib::{BestChange, Path, PeerId};

use super::{Output, SpeakerCore, local_path};

impl SpeakerCore {
    /// What a session that just came up is sent first (End-of-RIB follows): the best route
    /// of every prefix, or for a default-only neighbour the default routes as this node's own.
    pub(super) fn initial_table(&mut self, peer: PeerId) -> Vec<OutChange> {
        let default_only = self.peers.get(&peer).is_some_and(|p| p.config.default_only);
        if default_only {
            let defaults = [
                IpNet::V4(ipnet::Ipv4Net::default()),
                IpNet::V6(ipnet::Ipv6Net::default()),
            ];
            defaults
                .into_iter()
                .filter_map(|prefix| {
                    let own = local_path(prefix);
                    self.advertise(peer, prefix, Some(&own))
                })
                .collect()
        } else {
            // Shared paths: a full table is a million of them.
            let best: Vec<(IpNet, Arc<Path>)> = self.rib.best_routes_shared().collect();
            best.into_iter()
                .filter_map(|(prefix, path)| self.export_to(peer, prefix, Some(&*path)))
                .collect()
        }
    }

    /// Reports best-route changes to the shell and advertises them to the peers.
    pub(super) fn propagate(&mut self, changes: Vec<BestChange>) {
        if changes.is_empty() {
            return;
        }
        let established: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.fsm.state() == State::Established)
            .map(|(id, _)| *id)
            .collect();
        for id in established {
            let out: Vec<OutChange> = changes
                .iter()
                .filter_map(|c| self.export_to(id, c.prefix, c.best.as_ref()))
                .collect();
            self.send_changes(id, out);
        }
        self.outputs.extend(changes.into_iter().map(Output::Best));
    }

    /// Decides what `peer` should now have for `prefix` after a best-route change and
    /// records it in its Adj-RIB-Out. A default-only neighbour keeps what it was sent at
    /// session start.
    fn export_to(&mut self, peer: PeerId, prefix: IpNet, best: Option<&Path>) -> Option<OutChange> {
        if self.peers.get(&peer)?.config.default_only {
            return None;
        }
        self.advertise(peer, prefix, best)
    }

    /// Records `best` (or nothing) for `prefix` in `peer`'s Adj-RIB-Out, as it goes out.
    fn advertise(&mut self, peer: PeerId, prefix: IpNet, best: Option<&Path>) -> Option<OutChange> {
        let local = self.local;
        let from = best.and_then(|b| self.rib.peer(b.peer).cloned());
        let p = self.peers.get_mut(&peer)?;
        let negotiated = p.fsm.negotiated()?.clone();
        let adv = best.and_then(|path| {
            if !negotiated.families.contains(&Family::of(&prefix)) {
                return None;
            }
            let (kept, attrs) = export_path(&local, peer, &p.info, path, from.as_ref())?;
            let learnt_outside = from.as_ref().is_none_or(|f| !f.internal);
            let own_next_hop = match p.config.next_hop_self {
                NextHopSelf::Never => false,
                NextHopSelf::External => learnt_outside,
                NextHopSelf::All => true,
            };
            let kept = kept.filter(|_| !own_next_hop);
            let attrs = if p.info.internal {
                attrs
            } else {
                let changed = match p.config.export.apply(&prefix, &attrs, local.asn)? {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(mut changed) => {
                        // Never to another AS (RFC 4271 §5.1.5), whatever a policy set.
                        changed.local_pref = None;
                        Some(changed)
                    }
                };
                changed.unwrap_or(attrs)
            };
            let session_local = p.conn.map(|c| c.local.ip());
            let self_v4 = p.config.next_hop_v4.or(match session_local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            });
            let self_v6 = p.config.next_hop_v6.or(match session_local {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            });
            let next_hop =
                resolve_next_hop(&prefix, kept, self_v4, self_v6, negotiated.ipv4_over_ipv6)?;
            Some(Advertised {
                next_hop,
                attrs: Arc::new(attrs),
            })
        });
        p.out.set(prefix, adv)
    }

    pub(super) fn send_changes(&mut self, peer: PeerId, changes: Vec<OutChange>) {
        if changes.is_empty() {
            return;
        }
        for update in pack_updates(changes) {
            self.send(peer, &Message::Update(update));
        }
    }
}
