//! What the hub publishes when membership changes: the tunnels (to the peer set), the
//! members (to the routing plane), the members' endpoint names (to the resolver) and the
//! membership file in the state directory.

use pki::{NodeIdentity, NodeRole};

use super::hub::Hub;
use crate::control::peers::{member_addresses, member_names, tunnel_peers};
use crate::control::store;
use crate::peerset::{KnownPeer, PeerKind};

impl Hub {
    /// Re-derives the tunnels, stores the membership, resolves new endpoint names. Tunnels
    /// and members are published only once the start-up check is over.
    pub(super) fn members_changed(&mut self) {
        self.follow_member_names();
        if !self.tunnels_published {
            return;
        }
        let answers = &self.answers;
        let resolve = |endpoint: &str| member_addresses(endpoint, answers);
        let members = self.membership.members();
        let peers = tunnel_peers(&self.own.identity, members.clone(), &resolve)
            .into_iter()
            .map(|config| {
                let member = members.clone().find(|m| m.identity.name == config.name);
                let kind = match member.map(|m| (m.identity.role, m.identity.foreign)) {
                    Some((_, true)) => PeerKind::Router,
                    Some((NodeRole::Core, false)) => PeerKind::Node(Some(mesh_config::Role::Core)),
                    Some((NodeRole::Spoke, false)) => {
                        PeerKind::Node(Some(mesh_config::Role::Spoke))
                    }
                    None => PeerKind::Node(None),
                };
                KnownPeer { config, kind }
            })
            .collect();
        self.peers_tx.send_replace(peers);
        let identities: Vec<NodeIdentity> = members.clone().map(|m| m.identity.clone()).collect();
        self.members_tx.send_if_modified(|current| {
            let changed = *current != identities;
            *current = identities;
            changed
        });
        self.store_members();
    }

    /// Tells the resolver which names the members' endpoints use now (only when that set
    /// changed): new names are looked up, names no member uses any more are dropped.
    fn follow_member_names(&self) {
        let names = member_names(
            self.membership
                .members()
                .map(|m| (m.identity.name.as_str(), m.endpoints.as_slice())),
        );
        let changed = self.member_names_tx.send_if_modified(|current| {
            let changed = *current != names;
            *current = names;
            changed
        });
        if let (true, Some(resolver)) = (changed, &self.settings.resolver) {
            let all = self
                .member_names_tx
                .borrow()
                .values()
                .flatten()
                .cloned()
                .collect();
            resolver.watch_names("members", all);
        }
    }

    pub(super) fn store_members(&self) {
        let mut records = self.membership.records();
        records.extend(
            self.own
                .last_known
                .records(|name| self.membership.member(name).is_some()),
        );
        if let Err(error) = store::write_members(&self.settings.state, &records) {
            tracing::warn!(%error, "cannot store the membership");
        }
    }
}
