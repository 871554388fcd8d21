//! What a received UPDATE does: import policy, the [`ImportGuard`], the RIB, and the
//! session's record of refused routes.

use std::sync::Arc;

use ipnet::IpNet;

use crate::fsm::State;
use crate::guard::{ImportGuard, RouteSource};
use crate::import::{RibOp, import_update};
use crate::packet::{Family, Message, RouteRefresh, Update};
use crate::refusals::{Note, Reason, SessionRefusals};
use crate::rib::{BestChange, PeerId};

use super::SpeakerCore;
use super::refusal_log::log_refusal;

impl SpeakerCore {
    /// Installs (or with `None` removes) the check every received route passes after import
    /// policy. Established peers that support it are asked to send their routes again
    /// (ROUTE-REFRESH), so a route refused before is reconsidered under the new guard and one
    /// accepted before is dropped if the new guard refuses it.
    pub fn set_guard(&mut self, guard: Option<Arc<dyn ImportGuard>>) {
        self.guard = guard;
        let established: Vec<(PeerId, Vec<Family>)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let n = p.fsm.negotiated()?;
                (p.fsm.state() == State::Established && n.route_refresh)
                    .then(|| (*id, n.families.clone()))
            })
            .collect();
        for (id, families) in established {
            for family in families {
                let refresh = RouteRefresh {
                    afi: family.afi(),
                    safi: family.safi(),
                };
                self.send(id, &Message::RouteRefresh(refresh));
            }
        }
    }

    pub(super) fn update(&mut self, peer: PeerId, update: Update) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for problem in &update.problems {
            if p.problems_logged.insert((problem.type_code, problem.what)) {
                tracing::warn!(peer = %p.config.name, ?problem, "malformed attribute (RFC 7606), said once per session");
            }
        }
        let imported = import_update(&self.local, peer, &p.info, &p.config.import, &update);
        let source = RouteSource {
            neighbor: p.config.address,
            internal: p.info.internal,
            originator_id: update.attributes.originator_id,
            external_path: update
                .attributes
                .as_path
                .as_ref()
                .is_some_and(|path| path.segments.iter().any(|s| !s.asns.is_empty())),
        };
        let mut changes = Vec::new();
        let mut notes = Vec::new();
        for op in imported.ops {
            let (change, note) = match op {
                RibOp::Announce(prefix, path) => match self.guard_refusal(&prefix, &source) {
                    None => {
                        let note = self.refusals(peer).and_then(|r| r.accepted(prefix));
                        (self.rib.announce(prefix, path), note.map(|n| (prefix, n)))
                    }
                    Some(reason) => self.refuse(peer, prefix, Reason::Guard(reason)),
                },
                RibOp::Refuse(prefix, refusal) => {
                    self.refuse(peer, prefix, Reason::Import(refusal))
                }
                RibOp::Withdraw(prefix) => {
                    if let Some(r) = self.refusals(peer) {
                        r.withdrawn(prefix);
                    }
                    (self.rib.withdraw(peer, prefix), None)
                }
            };
            changes.extend(change);
            notes.extend(note);
        }
        if let Some(p) = self.peers.get(&peer) {
            for (prefix, note) in notes {
                log_refusal(&p.config.name, &p.config.import, prefix, &note);
            }
        }
        self.propagate(changes);
    }

    fn refusals(&mut self, peer: PeerId) -> Option<&mut SessionRefusals> {
        self.peers.get_mut(&peer).map(|p| &mut p.refusals)
    }

    /// A refused announcement: whatever the peer had for the prefix leaves the RIB.
    fn refuse(
        &mut self,
        peer: PeerId,
        prefix: IpNet,
        reason: Reason,
    ) -> (Option<BestChange>, Option<(IpNet, Note)>) {
        let note = self
            .refusals(peer)
            .and_then(|r| r.refused(prefix, reason))
            .map(|n| (prefix, n));
        (self.rib.withdraw(peer, prefix), note)
    }

    fn guard_refusal(&self, prefix: &IpNet, source: &RouteSource) -> Option<String> {
        self.guard.as_ref()?.check(prefix, source).err()
    }
}
