//! The start-up check: a starting node publishes no tunnels before a core it dials has
//! confirmed that its revocation list is current (or none could be asked in time), so that
//! a node that missed a revocation while down never brings up the revoked peer's tunnel.

use std::time::Duration;

use pki::NodeRole;

use super::hub::Hub;

/// How long a starting node waits for a peer to confirm its revocation list before it brings
/// up tunnels from the stored membership anyway (the peers may all be down).
pub(super) const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(2);

impl Hub {
    /// The members a starting node checks its revocation list with: the cores it dials
    /// whose endpoints it knows.
    pub(super) fn peers_to_ask(&self) -> Vec<String> {
        let own = &self.own.identity;
        self.membership
            .members()
            .filter(|m| {
                m.identity.name != own.name
                    && m.identity.role == NodeRole::Core
                    && !m.endpoints.is_empty()
                    && (own.role == NodeRole::Core
                        || own.core.is_none()
                        || own.core.as_deref() == Some(m.identity.name.as_str()))
            })
            .map(|m| m.identity.name.clone())
            .collect()
    }

    pub(super) fn has_peer_to_ask(&self) -> bool {
        !self.peers_to_ask().is_empty()
    }

    /// Ends the start-up check: tunnels and members follow the membership from now on.
    pub(super) fn publish_tunnels(&mut self, why: &str) {
        if self.tunnels_published {
            return;
        }
        self.tunnels_published = true;
        let waited = self.started.elapsed();
        tracing::info!(
            waited_ms = waited.as_millis() as u64,
            "revocation list checked ({why}); bringing up tunnels"
        );
        self.members_changed();
    }

    /// The start-up check is over once every core to ask has either answered with a digest
    /// whose revocation list is no newer than ours, or could not be reached. Every one, not
    /// the first: a revoked core that is still running would confirm the stale list it
    /// shares with us. A core the new list revokes drops out of the set by itself.
    pub(super) fn check_preflight(&mut self) {
        if self.tunnels_published {
            return;
        }
        let ours = self.membership.crl().map(pki::Crl::crl_number);
        let settled = |name: &String| {
            let confirmed = self
                .connections
                .get(name)
                .and_then(|c| c.advertised_crl)
                .is_some_and(|theirs| theirs <= ours);
            let unreachable = self.redial.get(name).is_some_and(|r| r.failures() > 0);
            confirmed || unreachable
        };
        let peers = self.peers_to_ask();
        if peers.iter().all(settled) {
            self.publish_tunnels(&format!("with {}", peers.join(", ")));
        }
    }
}
