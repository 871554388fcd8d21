//! The speaker's decisions, without I/O: every session's state machine, the RIB and the
//! Adj-RIBs-Out, RFC 4271 §6.8 collision resolution, what a received UPDATE does to the RIB, and
//! what each peer is sent when a best route changes.
//!
//! The shell (agent/src/bgp/speaker.rs) owns the sockets and timers. It calls one method per
//! event (a neighbour added, a connection made or accepted, a message received, a timer due),
//! passing `now`, and then carries out the [`Output`]s from [`SpeakerCore::poll_output`] in
//! order: connect, attach the stream it just handed in, send bytes, close a connection, set a
//! TCP-MD5 key, report a best-route change. Connections are named by [`ConnId`]s the core hands
//! out, so a report from a connection the core already dropped is recognised and ignored.
//!
//! Neighbours come and go at run time: the mesh's iBGP neighbours follow membership, and one
//! neighbour's change leaves the other sessions alone. An [`ImportGuard`] (the mesh's
//! certificate check) sees every announced route after import policy.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::fsm::{Action, Event, Fsm, Negotiated, SessionConfig, State};
use crate::guard::{ImportGuard, RouteSource};
use crate::import::{RibOp, import_update};
use crate::neighbor::{Md5Key, NeighborConfig, NextHopSelf};
use crate::packet::{
    AsPath, CodecOptions, DecodeError, Family, Message, Notification, Open, Origin, PathAttributes,
    RouteRefresh, Update, cease_subcodes,
};
use crate::refusals::{Kind as RefusalKind, MAX_LINES, Note, Reason, SessionRefusals};
use crate::rib::export::{LocalInfo, export_path};
use crate::rib::out::{AdjRibOut, Advertised, OutChange, pack_updates, resolve_next_hop};
use crate::rib::{BestChange, LOCAL, Path, PeerId, PeerInfo, Rib};

/// A connection, as the core names it. Never reused.
pub type ConnId = u64;

/// What a connection reports. Nearly every report is a message, so it is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ConnEvent {
    Message(Message),
    BadMessage(DecodeError),
    Closed,
}

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a TCP connection to `remote` (from `bind` if set, with the key and TTL set before
    /// the SYN), giving up after `timeout`; then call [`SpeakerCore::connected`] or
    /// [`SpeakerCore::connect_failed`] with `peer` and `conn`.
    Connect {
        peer: PeerId,
        conn: ConnId,
        remote: SocketAddr,
        bind: Option<IpAddr>,
        timeout: Duration,
        md5_key: Option<Md5Key>,
        ttl: Option<u8>,
    },
    /// The stream handed to the call that produced this becomes connection `conn` of `peer`
    /// (its TTL set to `ttl` first, if given). A stream no `Attach` claimed is to be dropped.
    Attach {
        peer: PeerId,
        conn: ConnId,
        ttl: Option<u8>,
    },
    /// Write these bytes (one encoded message) on `conn`.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close `conn` once what was sent on it is written.
    Close { conn: ConnId },
    /// Set (`Some`) or remove (`None`) the TCP-MD5 key for the neighbour at `address` on the
    /// listening sockets.
    ListenerKey {
        neighbor: String,
        address: IpAddr,
        key: Option<Md5Key>,
    },
    /// The best route for a prefix changed (this node's own routes have `peer == LOCAL`).
    Best(BestChange),
}

#[derive(Debug, thiserror::Error)]
#[error("neighbour {name:?} ({address}) is configured twice")]
pub struct DuplicateNeighbor {
    pub name: String,
    pub address: IpAddr,
}

/// What the peers of a speaker see of it, for the routing plane's guard and `meshd routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: IpNet,
    pub path: Path,
    /// The session the path came from (`None`: this node's own route).
    pub from: Option<PeerSummary>,
    pub best: bool,
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

/// A live connection of a session.
#[derive(Debug, Clone, Copy)]
struct ConnInfo {
    id: ConnId,
    /// The session's local address: the default next hop announced as "self".
    local: SocketAddr,
    /// We opened it (as opposed to accepting it); collision resolution needs to know.
    outgoing: bool,
}

#[derive(Debug)]
struct PeerState {
    config: NeighborConfig,
    fsm: Fsm,
    info: PeerInfo,
    conn: Option<ConnInfo>,
    /// The outgoing connection attempt in flight.
    connecting: Option<ConnId>,
    /// A second connection that arrived while `conn` was exchanging OPENs (RFC 4271 §6.8),
    /// with its OPEN once received; one of the two is closed when the identifiers are known.
    pending: Option<ConnInfo>,
    pending_open: Option<Open>,
    out: AdjRibOut,
    /// The session's refused routes: logged once each, counted (new for every session).
    refusals: SessionRefusals,
    /// RFC 7606 problems already logged this session (attribute type, what was wrong): a
    /// peer that sends the same malformed attribute in every UPDATE is said once.
    problems_logged: HashSet<(u8, &'static str)>,
}

/// The speaker without its sockets; see the module documentation.
pub struct SpeakerCore {
    local: LocalInfo,
    peers: HashMap<PeerId, PeerState>,
    /// Ids are never reused, so a report from a removed neighbour's connection cannot be
    /// mistaken for one of a neighbour added later.
    next_peer: PeerId,
    guard: Option<Arc<dyn ImportGuard>>,
    rib: Rib,
    next_conn: ConnId,
    outputs: VecDeque<Output>,
}

impl fmt::Debug for SpeakerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeakerCore")
            .field("local", &self.local)
            .field("peers", &self.peers.len())
            .field("guard", &self.guard)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl SpeakerCore {
    /// A speaker for AS `asn` with these neighbours, none of them started yet
    /// ([`SpeakerCore::start`]). Their TCP-MD5 keys are the caller's to set on its listeners.
    pub fn new(
        asn: u32,
        router_id: Ipv4Addr,
        neighbors: &[NeighborConfig],
    ) -> Result<SpeakerCore, DuplicateNeighbor> {
        for (i, n) in neighbors.iter().enumerate() {
            if neighbors[..i].iter().any(|m| m.address == n.address) {
                return Err(DuplicateNeighbor {
                    name: n.name.clone(),
                    address: n.address,
                });
            }
        }
        let mut core = SpeakerCore {
            local: LocalInfo {
                asn,
                router_id,
                cluster_id: router_id,
            },
            peers: HashMap::new(),
            next_peer: 1,
            guard: None,
            rib: Rib::new(),
            next_conn: 1,
            outputs: VecDeque::new(),
        };
        for n in neighbors {
            core.insert_peer(n.clone());
        }
        Ok(core)
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Starts every session.
    pub fn start(&mut self, now: Instant) {
        for id in self.peer_ids() {
            self.fsm_event(id, Event::Start, now);
        }
    }

    /// Stops every session (Cease to established peers).
    pub fn shutdown(&mut self, now: Instant) {
        for id in self.peer_ids() {
            self.fsm_event(id, Event::Stop, now);
        }
    }

    /// The earliest timer deadline of any session; call [`SpeakerCore::tick`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.fsm.next_deadline())
            .min()
    }

    /// Runs the timers that are due at `now`.
    pub fn tick(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.fsm.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fsm_event(id, Event::Tick, now);
        }
    }

    /// The neighbour's name, for the shell's logs.
    pub fn peer_name(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|p| p.config.name.as_str())
    }

    fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Adds a neighbour's session state (not started) and returns its id.
    fn insert_peer(&mut self, n: NeighborConfig) -> PeerId {
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

    /// Announces `prefix` from this node.
    pub fn originate(&mut self, prefix: IpNet) {
        let change = self.rib.announce(prefix, local_path(prefix));
        self.propagate(change.into_iter().collect());
    }

    /// Withdraws this node's own `prefix`.
    pub fn withdraw(&mut self, prefix: IpNet) {
        let change = self.rib.withdraw(LOCAL, prefix);
        self.propagate(change.into_iter().collect());
    }

    /// The data plane's cost to reach `next_hop` (`None`: unreachable).
    pub fn set_igp_cost(&mut self, next_hop: IpAddr, cost: Option<u32>) {
        let changes = self.rib.set_igp_cost(next_hop, cost);
        self.propagate(changes);
    }

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

    /// Every path of the RIB with the session it came from and whether it is the best.
    pub fn all_paths(&self) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for (prefix, best) in self.rib.best_routes() {
            self.entries(prefix, best, &mut out);
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        out
    }

    /// [`Self::all_paths`] for these prefixes only (those without a best path have none).
    pub fn paths_of(&self, prefixes: &[IpNet]) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for prefix in prefixes {
            if let Some(best) = self.rib.best(prefix) {
                self.entries(*prefix, best, &mut out);
            }
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        out
    }

    /// The paths to `prefix`, whose best is `best`, onto `out`.
    fn entries(&self, prefix: IpNet, best: &Path, out: &mut Vec<RouteEntry>) {
        for path in self.rib.paths(&prefix) {
            out.push(RouteEntry {
                prefix,
                path: (**path).clone(),
                from: self.summary(path.peer),
                best: **path == *best,
            });
        }
    }

    /// The paths to `prefix` the decision process chooses among, with their IGP costs and
    /// whether each is the best: for choices made by other means than the best path (an
    /// exit preferred by name), which need the runners-up too.
    pub fn usable_paths(&self, prefix: &IpNet) -> Vec<UsablePath> {
        let best = self.rib.best(prefix);
        self.rib
            .candidates(prefix)
            .into_iter()
            .map(|(path, igp_cost)| UsablePath {
                entry: RouteEntry {
                    prefix: *prefix,
                    path: path.clone(),
                    from: self.summary(path.peer),
                    best: best == Some(path),
                },
                igp_cost,
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

    fn fsm_event(&mut self, peer: PeerId, event: Event, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let actions = p.fsm.handle(event, now);
        for action in actions {
            self.action(peer, action);
        }
    }

    fn send(&mut self, peer: PeerId, msg: &Message) {
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

    fn connect(&mut self, peer: PeerId) {
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

    fn session_up(&mut self, peer: PeerId, negotiated: Negotiated) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        tracing::info!(peer = %p.config.name, ?negotiated, "BGP session established");
        p.info.bgp_id = negotiated.peer_id;
        self.rib.add_peer(peer, p.info.clone());
        // The initial table, then End-of-RIB for each family (RFC 4724 §2).
        let changes: Vec<OutChange> = if p.config.default_only {
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
        };
        self.send_changes(peer, changes);
        for family in negotiated.families {
            self.send(peer, &Message::Update(Update::end_of_rib(family)));
        }
    }

    fn update(&mut self, peer: PeerId, update: Update) {
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

    /// Reports best-route changes to the shell and advertises them to the peers.
    fn propagate(&mut self, changes: Vec<BestChange>) {
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

    fn send_changes(&mut self, peer: PeerId, changes: Vec<OutChange>) {
        if changes.is_empty() {
            return;
        }
        for update in pack_updates(changes) {
            self.send(peer, &Message::Update(update));
        }
    }
}

/// This speaker's own path to `prefix`: origin IGP, an empty AS path, next hop "self" (the
/// unspecified address, replaced by the session's own address on the way out).
fn local_path(prefix: IpNet) -> Path {
    let next_hop = match prefix {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        ..PathAttributes::default()
    };
    Path {
        peer: LOCAL,
        next_hop,
        attrs: Arc::new(attrs),
    }
}

/// Says what [`SessionRefusals`] found worth saying about a route of `peer`. A member's route
/// its certificate does not allow, or a broken UPDATE, is a warning; a route an import policy
/// or a loop check keeps out is what they are for, so it is information.
fn log_refusal(peer: &str, import: &crate::policy::Policy, prefix: IpNet, note: &Note) {
    let (reason, previous) = match note {
        Note::Refused { reason } => (reason, None),
        Note::Changed { previous, reason } => (reason, Some(previous.describe(import))),
        Note::Accepted { previous } => {
            let previous = previous.describe(import);
            tracing::info!(%peer, %prefix, %previous, "BGP route accepted, refused before");
            return;
        }
        Note::Quiet => {
            tracing::warn!(
                %peer,
                lines = MAX_LINES,
                "more BGP routes refused from this neighbour than are logged one by one: the \
                 others are only counted until the session restarts (`meshd routes` shows them)"
            );
            return;
        }
    };
    let kind = reason.kind();
    let serious = matches!(
        kind,
        RefusalKind::Certificate | RefusalKind::Malformed | RefusalKind::FirstAsNotNeighbor
    );
    let reason = reason.describe(import);
    match (serious, previous) {
        (true, None) => tracing::warn!(%peer, %prefix, %reason, %kind, "BGP route refused"),
        (false, None) => tracing::info!(%peer, %prefix, %reason, %kind, "BGP route refused"),
        (true, Some(previous)) => tracing::warn!(
            %peer, %prefix, %reason, %kind, %previous, "BGP route refused, for another reason now"
        ),
        (false, Some(previous)) => tracing::info!(
            %peer, %prefix, %reason, %kind, %previous, "BGP route refused, for another reason now"
        ),
    }
}
