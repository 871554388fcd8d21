//! The connections of a session: connecting, accepting, attaching a stream, what a
//! connection reports, and RFC 4271 §6.8 collision resolution when a peer and this speaker
//! open one each.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use crate::fsm::{Event, State};
use crate::packet::{CodecOptions, Message, Notification, cease_subcodes};
use crate::rib::PeerId;

use super::{ConnEvent, ConnId, ConnInfo, Output, SpeakerCore};

impl SpeakerCore {
    /// Our connection attempt `conn` succeeded; `local` is its local address. The stream is
    /// used only if an [`Output::Attach`] follows.
    pub fn connected(&mut self, peer: PeerId, conn: ConnId, local: SocketAddr, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.connecting != Some(conn) {
            return; // an attempt that was abandoned
        }
        p.connecting = None;
        if p.fsm.accepts_connection() {
            self.attach(peer, conn, local, true, None, now);
        }
    }

    /// Our connection attempt `conn` failed.
    pub fn connect_failed(
        &mut self,
        peer: PeerId,
        conn: ConnId,
        error: &dyn fmt::Display,
        now: Instant,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.connecting != Some(conn) {
            return;
        }
        p.connecting = None;
        tracing::debug!(peer = %p.config.name, error = %error, "BGP connect failed");
        self.fsm_event(peer, Event::TcpFailed, now);
    }

    /// A connection from `from` was accepted on local address `local`. The stream is used
    /// only if an [`Output::Attach`] follows.
    pub fn incoming(&mut self, from: SocketAddr, local: SocketAddr, now: Instant) {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        let from_ip = from.ip().to_canonical();
        let found = self
            .peers
            .iter()
            .find(|(_, p)| p.config.address == from_ip)
            .map(|(id, p)| (*id, p.fsm.accepts_connection()));
        match found {
            Some((id, true)) => {
                let conn = self.new_conn();
                let mut ttl = None;
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connecting = None; // the peer's connection wins over ours
                    ttl = p.config.ttl;
                }
                self.attach(id, conn, local, false, ttl, now);
            }
            Some((id, false)) => self.second_connection(id, local, now),
            None => tracing::info!(%from, "BGP connection from an unknown address refused"),
        }
    }

    fn new_conn(&mut self) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        conn
    }

    /// A connection from a peer whose session already has one.
    fn second_connection(&mut self, peer: PeerId, local: SocketAddr, now: Instant) {
        let conn = self.new_conn();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let exchanging = matches!(p.fsm.state(), State::OpenSent | State::OpenConfirm);
        if !exchanging || p.pending.is_some() {
            // Established (or not started): the existing session stands; the stream drops.
            tracing::debug!(peer = %p.config.name, "refusing a second BGP connection");
            return;
        }
        self.outputs.push_back(Output::Attach {
            peer,
            conn,
            ttl: None,
        });
        // The peer opened it, so it sends its OPEN first; ours follows if this one is kept.
        p.pending = Some(ConnInfo {
            id: conn,
            local,
            outgoing: false,
        });
        if let Some(remote_id) = p.fsm.negotiated().map(|n| n.peer_id) {
            self.resolve_collision(peer, remote_id, now);
        }
    }

    fn attach(
        &mut self,
        peer: PeerId,
        conn: ConnId,
        local: SocketAddr,
        outgoing: bool,
        ttl: Option<u8>,
        now: Instant,
    ) {
        self.outputs.push_back(Output::Attach { peer, conn, ttl });
        if let Some(p) = self.peers.get_mut(&peer) {
            let info = ConnInfo {
                id: conn,
                local,
                outgoing,
            };
            if let Some(old) = p.conn.replace(info) {
                self.outputs.push_back(Output::Close { conn: old.id });
            }
        }
        self.fsm_event(peer, Event::TcpConnected, now);
    }

    /// What connection `conn` of `peer` reported.
    pub fn received(&mut self, peer: PeerId, conn: ConnId, event: ConnEvent, now: Instant) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.pending.map(|c| c.id) == Some(conn) {
            self.pending_report(peer, event, now);
            return;
        }
        if p.conn.map(|c| c.id) != Some(conn) {
            return; // a connection we already dropped
        }
        let event = match event {
            ConnEvent::Message(m) => Event::Message(m),
            ConnEvent::BadMessage(e) => {
                tracing::warn!(peer = %p.config.name, error = %e, "bad BGP message");
                Event::BadMessage(e)
            }
            ConnEvent::Closed => Event::TcpFailed,
        };
        self.fsm_event(peer, event, now);
        // The session's own OPEN may be what settles a collision.
        if let Some(p) = self.peers.get(&peer)
            && p.pending.is_some()
            && let Some(remote_id) = p.fsm.negotiated().map(|n| n.peer_id)
        {
            self.resolve_collision(peer, remote_id, now);
        }
    }

    /// A message on the second connection of a collision: only its OPEN matters.
    fn pending_report(&mut self, peer: PeerId, event: ConnEvent, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match event {
            ConnEvent::Message(Message::Open(open)) => {
                let remote_id = open.bgp_id;
                p.pending_open = Some(open);
                self.resolve_collision(peer, remote_id, now);
            }
            _ => {
                if let Some(c) = p.pending.take() {
                    self.outputs.push_back(Output::Close { conn: c.id });
                }
                p.pending_open = None;
            }
        }
    }

    /// RFC 4271 §6.8: of two connections with one peer, keep the one opened by the speaker
    /// with the higher BGP identifier, and close the other with Cease/7.
    fn resolve_collision(&mut self, peer: PeerId, remote_id: Ipv4Addr, now: Instant) {
        let local_wins = u32::from(self.local.router_id) > u32::from(remote_id);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let (Some(main), Some(pending)) = (p.conn, p.pending) else {
            return;
        };
        // The pending connection is always one the peer opened. If the current one is too,
        // the peer has given up on it: the newer one wins.
        let keep_pending = !main.outgoing || !local_wins;
        let cease =
            Message::Notification(Notification::cease(cease_subcodes::CONNECTION_COLLISION))
                .encode(CodecOptions::default())
                .unwrap_or_default();
        tracing::info!(peer = %p.config.name, keep_pending, "BGP connection collision");
        let loser = if keep_pending { main } else { pending };
        self.outputs.push_back(Output::Send {
            conn: loser.id,
            bytes: cease,
        });
        self.outputs.push_back(Output::Close { conn: loser.id });
        p.pending = None;
        if !keep_pending {
            p.pending_open = None;
            return;
        }
        p.conn = Some(pending);
        let open = p.pending_open.take();
        self.fsm_event(peer, Event::ConnectionReplaced, now);
        self.fsm_event(peer, Event::TcpConnected, now);
        if let Some(open) = open {
            self.fsm_event(peer, Event::Message(Message::Open(open)), now);
        }
    }

    pub(super) fn connect(&mut self, peer: PeerId) {
        let conn = self.new_conn();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.connecting = Some(conn);
        self.outputs.push_back(Output::Connect {
            peer,
            conn,
            remote: SocketAddr::new(p.config.address, p.config.port),
            bind: p.config.local_address,
            timeout: p.config.connect_retry,
            md5_key: p.config.md5_key.clone(),
            ttl: p.config.ttl,
        });
    }
}
