//! The session table: neighbours added and removed at run time, each one's state machine,
//! and what its actions do (send, disconnect, session up and down).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use crate::fsm::{Action, Event, Fsm, Negotiated, SessionConfig};
use crate::neighbor::NeighborConfig;
use crate::packet::{Message, Update};
use crate::refusals::SessionRefusals;
use crate::rib::out::AdjRibOut;
use crate::rib::{PeerId, PeerInfo};

use super::{Output, PeerState, SpeakerCore};

impl SpeakerCore {
    /// Adds a neighbour's session state (not started) and returns its id.
    pub(super) fn insert_peer(&mut self, n: NeighborConfig) -> PeerId {
        let id = self.next_peer;
        self.next_peer = self.next_peer.saturating_add(1);
        let fsm = Fsm::new(SessionConfig {
            local_asn: self.local.asn,
            remote_asn: n.remote_asn,
            bgp_id: self.local.router_id,
            hold_time: n.hold_time,
            connect_retry: n.connect_retry,
            passive: n.passive,
            families: n.families.clone(),
        });
        let info = PeerInfo {
            address: n.address,
            asn: n.remote_asn,
            bgp_id: Ipv4Addr::UNSPECIFIED,
            internal: n.remote_asn == self.local.asn,
            rr_client: n.rr_client,
        };
        self.peers.insert(
            id,
            PeerState {
                config: n,
                fsm,
                info,
                conn: None,
                connecting: None,
                pending: None,
                pending_open: None,
                out: AdjRibOut::new(),
                refusals: SessionRefusals::new(),
                problems_logged: HashSet::new(),
            },
        );
        id
    }

    fn peer_by_address(&self, address: IpAddr) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, p)| p.config.address == address)
            .map(|(id, _)| *id)
    }

    /// Adds a neighbour and starts its session, or, when a neighbour with its address exists
    /// and its configuration differs, restarts that one session with the new configuration
    /// (the same configuration changes nothing). Other sessions are not disturbed.
    pub fn add_neighbor(&mut self, n: NeighborConfig, now: Instant) {
        if let Some(existing) = self.peer_by_address(n.address) {
            if self.peers.get(&existing).is_some_and(|p| p.config == n) {
                return;
            }
            self.remove_neighbor(n.address, now);
        }
        tracing::info!(peer = %n.name, address = %n.address, asn = n.remote_asn, "BGP neighbour added");
        if n.md5_key.is_some() {
            self.outputs.push_back(Output::ListenerKey {
                neighbor: n.name.clone(),
                address: n.address,
                key: n.md5_key.clone(),
            });
        }
        let id = self.insert_peer(n);
        self.fsm_event(id, Event::Start, now);
    }

    /// Stops the session with the neighbour at `address` (Cease when established), withdraws
    /// what it gave and forgets it. An unknown address changes nothing.
    pub fn remove_neighbor(&mut self, address: IpAddr, now: Instant) {
        let Some(id) = self.peer_by_address(address) else {
            return;
        };
        self.fsm_event(id, Event::Stop, now);
        // Stop from Established already removed its routes; from any other state there were
        // none, but make sure the RIB does not keep the peer.
        let changes = self.rib.remove_peer(id);
        self.propagate(changes);
        if let Some(p) = self.peers.remove(&id) {
            tracing::info!(peer = %p.config.name, %address, "BGP neighbour removed");
            for c in [p.conn, p.pending].into_iter().flatten() {
                self.outputs.push_back(Output::Close { conn: c.id });
            }
            if p.config.md5_key.is_some() {
                self.outputs.push_back(Output::ListenerKey {
                    neighbor: p.config.name,
                    address,
                    key: None,
                });
            }
        }
    }

    pub(super) fn fsm_event(&mut self, peer: PeerId, event: Event, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let actions = p.fsm.handle(event, now);
        for action in actions {
            self.action(peer, action);
        }
    }

    pub(super) fn send(&mut self, peer: PeerId, msg: &Message) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(conn) = p.conn else {
            return;
        };
        match msg.encode(p.fsm.codec()) {
            Ok(bytes) => self.outputs.push_back(Output::Send {
                conn: conn.id,
                bytes,
            }),
            Err(e) => {
                tracing::error!(peer = %p.config.name, error = %e, "cannot encode a BGP message")
            }
        }
    }

    fn action(&mut self, peer: PeerId, action: Action) {
        match action {
            Action::Connect => self.connect(peer),
            Action::Send(msg) => self.send(peer, &msg),
            Action::Disconnect => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    for c in [p.conn.take(), p.pending.take()].into_iter().flatten() {
                        self.outputs.push_back(Output::Close { conn: c.id });
                    }
                    p.connecting = None;
                    p.pending_open = None;
                }
            }
            Action::Up(negotiated) => self.session_up(peer, negotiated),
            Action::Down(reason) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    tracing::info!(peer = %p.config.name, ?reason, "BGP session down");
                    p.out.clear();
                    // A new session's refusals are news again.
                    p.refusals = SessionRefusals::new();
                    p.problems_logged.clear();
                }
                let changes = self.rib.remove_peer(peer);
                self.propagate(changes);
            }
            Action::Failed(reason) => {
                if let Some(p) = self.peers.get(&peer) {
                    tracing::info!(peer = %p.config.name, ?reason, "BGP session failed");
                }
            }
            Action::Update(update) => self.update(peer, update),
            Action::RouteRefresh(family) => {
                if let Some(p) = self.peers.get(&peer) {
                    let changes = p.out.all(family);
                    self.send_changes(peer, changes);
                }
            }
        }
    }

    fn session_up(&mut self, peer: PeerId, negotiated: Negotiated) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        tracing::info!(peer = %p.config.name, ?negotiated, "BGP session established");
        p.info.bgp_id = negotiated.peer_id;
        self.rib.add_peer(peer, p.info.clone());
        // The initial table, then End-of-RIB for each family (RFC 4724 §2).
        let changes = self.initial_table(peer);
        self.send_changes(peer, changes);
        for family in negotiated.families {
            self.send(peer, &Message::Update(Update::end_of_rib(family)));
        }
    }
}
