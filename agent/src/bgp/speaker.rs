//! The BGP speaker: one tokio task that owns every session's state machine, the RIB and the
//! Adj-RIBs-Out, listens for peers, and reports best-route changes on a channel for the routing
//! plane (kernel routes via `crate::netlink`, the data plane's prefix table).
//!
//! Connections are handled by [`super::session`]; everything else happens on this one task, so
//! the RIB needs no locking and the order of events is the order they were handled in.
//!
//! Neighbours come and go at run time ([`Speaker::add_neighbor`], [`Speaker::remove_neighbor`]):
//! the mesh's iBGP neighbours follow membership, and one neighbour's change leaves the other
//! sessions alone. An [`ImportGuard`] (the mesh's certificate check) sees every announced route
//! after import policy; [`Speaker::set_igp_cost`] takes the data plane's path costs.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::fsm::{Action, Event, Fsm, Negotiated, SessionConfig, State};
use super::guard::{ImportGuard, RouteSource};
use super::import::{RibOp, import_update};
use super::packet::{
    AsPath, CodecOptions, Family, Message, Notification, Open, Origin, PathAttributes,
    RouteRefresh, Update, cease_subcodes,
};
use super::rib::export::{LocalInfo, export_path};
use super::rib::out::{AdjRibOut, Advertised, OutChange, pack_updates, resolve_next_hop};
use super::rib::{BestChange, LOCAL, Path, PeerId, PeerInfo, Rib};
use super::session::{ConnEvent, ConnReport, Connection};
use meshd_bgp::neighbor::Md5Key;

pub use meshd_bgp::neighbor::{BGP_PORT, NeighborConfig};

#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Where to accept connections; empty for none.
    pub listen: Vec<SocketAddr>,
    pub neighbors: Vec<NeighborConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("cannot listen for BGP on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("neighbour {name:?} ({address}) is configured twice")]
    DuplicateNeighbor { name: String, address: IpAddr },
    #[error(
        "cannot set the TCP-MD5 key for neighbour {name:?} ({address}) on {listener}: {source}"
    )]
    Md5Key {
        name: String,
        address: IpAddr,
        listener: SocketAddr,
        source: std::io::Error,
    },
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
}

enum Command {
    AddNeighbor(Box<NeighborConfig>),
    RemoveNeighbor(IpAddr),
    SetGuard(Option<Arc<dyn ImportGuard>>),
    Originate(IpNet),
    WithdrawLocal(IpNet),
    SetIgpCost(IpAddr, Option<u32>),
    Sessions(oneshot::Sender<Vec<SessionStatus>>),
    Routes(oneshot::Sender<Vec<(IpNet, Path)>>),
    AllPaths(oneshot::Sender<Vec<RouteEntry>>),
    Shutdown,
}

enum Internal {
    Connected {
        peer: PeerId,
        conn: u64,
        result: std::io::Result<TcpStream>,
    },
    Incoming(TcpStream, SocketAddr),
}

/// Handle to a running speaker. Dropping it stops the speaker too.
#[derive(Debug)]
pub struct Speaker {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    listeners: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl Speaker {
    /// Binds the listeners and starts every session. Best-route changes (including this
    /// node's own originated routes, whose path has `peer == LOCAL`) go to `routes`.
    pub async fn start(
        config: SpeakerConfig,
        routes: mpsc::UnboundedSender<BestChange>,
    ) -> Result<Speaker, SpeakerError> {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let mut listeners = Vec::new();
        let mut listen_sockets = Vec::new();
        let mut local_addrs = Vec::new();
        for address in &config.listen {
            let listener =
                TcpListener::bind(address)
                    .await
                    .map_err(|source| SpeakerError::Listen {
                        address: *address,
                        source,
                    })?;
            let bound = listener.local_addr().unwrap_or(*address);
            local_addrs.push(bound);
            // The actor keeps a handle too, to set TCP-MD5 keys as neighbours come and go.
            let listener = Arc::new(listener);
            listen_sockets.push((listener.clone(), bound));
            let tx = internal_tx.clone();
            listeners.push(tokio::spawn(async move {
                while let Ok((stream, from)) = listener.accept().await {
                    if tx.send(Internal::Incoming(stream, from)).is_err() {
                        return;
                    }
                }
            }));
        }
        let mut actor = Actor::new(&config, listen_sockets, routes, internal_tx)?;
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move { actor.run(commands_rx, internal_rx).await });
        Ok(Speaker {
            commands,
            task,
            listeners,
            local_addrs,
        })
    }

    /// The addresses the speaker listens on (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Adds a neighbour and starts its session, or, when a neighbour with its address exists
    /// and its configuration differs, restarts that one session with the new configuration
    /// (the same configuration changes nothing). Other sessions are not disturbed.
    pub fn add_neighbor(&self, neighbor: NeighborConfig) {
        let _ = self.commands.send(Command::AddNeighbor(Box::new(neighbor)));
    }

    /// Stops the session with the neighbour at `address` (Cease to an established peer),
    /// withdraws what it gave and forgets it. An unknown address changes nothing.
    pub fn remove_neighbor(&self, address: IpAddr) {
        let _ = self.commands.send(Command::RemoveNeighbor(address));
    }

    /// Installs (or with `None` removes) the check every received route passes after import
    /// policy. Established peers that support it are asked to send their routes again
    /// (ROUTE-REFRESH), so a route refused before is reconsidered under the new guard and one
    /// accepted before is dropped if the new guard refuses it.
    pub fn set_guard(&self, guard: Option<Arc<dyn ImportGuard>>) {
        let _ = self.commands.send(Command::SetGuard(guard));
    }

    /// Announces `prefix` from this node.
    pub fn originate(&self, prefix: IpNet) {
        let _ = self.commands.send(Command::Originate(prefix));
    }

    pub fn withdraw(&self, prefix: IpNet) {
        let _ = self.commands.send(Command::WithdrawLocal(prefix));
    }

    /// The data plane's cost to reach `next_hop` (`None`: unreachable).
    pub fn set_igp_cost(&self, next_hop: IpAddr, cost: Option<u32>) {
        let _ = self.commands.send(Command::SetIgpCost(next_hop, cost));
    }

    pub async fn sessions(&self) -> Vec<SessionStatus> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Sessions(tx));
        rx.await.unwrap_or_default()
    }

    /// Every prefix with its best path.
    pub async fn routes(&self) -> Vec<(IpNet, Path)> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Routes(tx));
        rx.await.unwrap_or_default()
    }

    /// Every path in the RIB with the session it came from and whether it is the best.
    pub async fn all_paths(&self) -> Vec<RouteEntry> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::AllPaths(tx));
        rx.await.unwrap_or_default()
    }

    /// Sends Cease to every established peer and stops.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        for l in &self.listeners {
            l.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

struct PeerState {
    config: NeighborConfig,
    fsm: Fsm,
    info: PeerInfo,
    conn: Option<Connection>,
    /// The outgoing connection attempt in flight.
    connecting: Option<u64>,
    /// A second connection that arrived while `conn` was exchanging OPENs (RFC 4271 §6.8),
    /// with its OPEN once received; one of the two is closed when the identifiers are known.
    pending: Option<Connection>,
    pending_open: Option<Open>,
    out: AdjRibOut,
}

struct Actor {
    local: LocalInfo,
    peers: HashMap<PeerId, PeerState>,
    /// Ids are never reused, so a report from a removed neighbour's connection cannot be
    /// mistaken for one of a neighbour added later.
    next_peer: PeerId,
    guard: Option<Arc<dyn ImportGuard>>,
    /// (peer, prefix) pairs whose refusal by the guard was logged: once each, not per UPDATE
    /// nor per ROUTE-REFRESH after a membership change; forgotten when the route is accepted
    /// or the session ends.
    refusals_logged: HashSet<(PeerId, IpNet)>,
    rib: Rib,
    next_conn: u64,
    routes: mpsc::UnboundedSender<BestChange>,
    internal: mpsc::UnboundedSender<Internal>,
    reports_tx: mpsc::Sender<ConnReport>,
    reports_rx: mpsc::Receiver<ConnReport>,
    /// The listening sockets with their addresses: where neighbours' TCP-MD5 keys go.
    listen_sockets: Vec<(Arc<TcpListener>, SocketAddr)>,
}

impl Actor {
    fn new(
        config: &SpeakerConfig,
        listen_sockets: Vec<(Arc<TcpListener>, SocketAddr)>,
        routes: mpsc::UnboundedSender<BestChange>,
        internal: mpsc::UnboundedSender<Internal>,
    ) -> Result<Actor, SpeakerError> {
        let local = LocalInfo {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config.router_id,
        };
        for (i, n) in config.neighbors.iter().enumerate() {
            if config.neighbors[..i].iter().any(|m| m.address == n.address) {
                return Err(SpeakerError::DuplicateNeighbor {
                    name: n.name.clone(),
                    address: n.address,
                });
            }
        }
        // Shared by all connections; small, so that a fast peer is slowed down by TCP rather
        // than buffered (see `session::read_loop`).
        let (reports_tx, reports_rx) = mpsc::channel(64);
        let mut actor = Actor {
            local,
            peers: HashMap::new(),
            next_peer: 1,
            guard: None,
            refusals_logged: HashSet::new(),
            rib: Rib::new(),
            next_conn: 1,
            routes,
            internal,
            reports_tx,
            reports_rx,
            listen_sockets,
        };
        for n in &config.neighbors {
            actor.set_listener_keys(n, n.md5_key.as_ref())?;
            actor.insert_peer(n.clone());
        }
        Ok(actor)
    }

    /// Sets (`Some`) or removes (`None`) neighbour `n`'s TCP-MD5 key on every listening socket
    /// that can take it: an IPv4 socket cannot hold keys for IPv6 neighbours, an IPv6 one holds
    /// both (IPv4 as mapped addresses).
    fn set_listener_keys(
        &self,
        n: &NeighborConfig,
        key: Option<&Md5Key>,
    ) -> Result<(), SpeakerError> {
        if key.is_none() && n.md5_key.is_none() {
            return Ok(());
        }
        for (listener, bound) in &self.listen_sockets {
            if bound.is_ipv4() && n.address.is_ipv6() {
                continue;
            }
            let bytes = key.map_or(&[][..], Md5Key::as_bytes);
            tcp_md5sig::set_key(listener.as_ref(), n.address, bytes).map_err(|source| {
                SpeakerError::Md5Key {
                    name: n.name.clone(),
                    address: n.address,
                    listener: *bound,
                    source,
                }
            })?;
        }
        Ok(())
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

    /// Adds a neighbour at run time, or replaces the one with its address if it changed.
    fn add_neighbor(&mut self, n: NeighborConfig) {
        if let Some(existing) = self.peer_by_address(n.address) {
            if self.peers.get(&existing).is_some_and(|p| p.config == n) {
                return;
            }
            self.remove_neighbor(n.address);
        }
        tracing::info!(peer = %n.name, address = %n.address, asn = n.remote_asn, "BGP neighbour added");
        if let Err(e) = self.set_listener_keys(&n, n.md5_key.as_ref()) {
            // Its connections would fail their MD5 check anyway; ours to it carry the key.
            tracing::error!(peer = %n.name, error = %e, "BGP neighbour's key not set");
        }
        let id = self.insert_peer(n);
        self.fsm_event(id, Event::Start);
    }

    /// Stops one session (Cease when established, its routes withdrawn) and forgets it.
    fn remove_neighbor(&mut self, address: IpAddr) {
        let Some(id) = self.peer_by_address(address) else {
            return;
        };
        self.fsm_event(id, Event::Stop);
        // Stop from Established already removed its routes; from any other state there were
        // none, but make sure the RIB does not keep the peer.
        let changes = self.rib.remove_peer(id);
        self.propagate(changes);
        self.refusals_logged.retain(|(peer, _)| *peer != id);
        if let Some(p) = self.peers.remove(&id) {
            tracing::info!(peer = %p.config.name, %address, "BGP neighbour removed");
            if p.config.md5_key.is_some()
                && let Err(e) = self.set_listener_keys(&p.config, None)
            {
                tracing::warn!(peer = %p.config.name, error = %e, "BGP neighbour's key not removed");
            }
        }
    }

    /// A new guard: established peers resend their routes so that all of them pass it.
    fn set_guard(&mut self, guard: Option<Arc<dyn ImportGuard>>) {
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

    /// Every path of the RIB with where it came from.
    fn all_paths(&self) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for (prefix, best) in self.rib.best_routes() {
            for path in self.rib.paths(&prefix) {
                let from = self.peers.get(&path.peer).map(|p| PeerSummary {
                    name: p.config.name.clone(),
                    address: p.config.address,
                    internal: p.info.internal,
                });
                out.push(RouteEntry {
                    prefix,
                    path: (**path).clone(),
                    from,
                    best: **path == *best,
                });
            }
        }
        out.sort_by_key(|e| (e.prefix, !e.best));
        out
    }

    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.fsm_event(id, Event::Start);
        }
        loop {
            let deadline = self
                .peers
                .values()
                .filter_map(|p| p.fsm.next_deadline())
                .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => {
                        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                        for id in ids {
                            self.fsm_event(id, Event::Stop);
                        }
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                },
                Some(report) = self.reports_rx.recv() => self.report(report),
                Some(i) = internal.recv() => self.internal(i),
                () = sleep => {
                    let now = std::time::Instant::now();
                    let due: Vec<PeerId> = self
                        .peers
                        .iter()
                        .filter(|(_, p)| p.fsm.next_deadline().is_some_and(|d| d <= now))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in due {
                        self.fsm_event(id, Event::Tick);
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddNeighbor(n) => self.add_neighbor(*n),
            Command::RemoveNeighbor(address) => self.remove_neighbor(address),
            Command::SetGuard(guard) => self.set_guard(guard),
            Command::AllPaths(reply) => {
                let _ = reply.send(self.all_paths());
            }
            Command::Originate(prefix) => {
                let next_hop = match prefix {
                    IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                let attrs = PathAttributes {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::default()),
                    ..PathAttributes::default()
                };
                let path = Path {
                    peer: LOCAL,
                    next_hop,
                    attrs: Arc::new(attrs),
                };
                let change = self.rib.announce(prefix, path);
                self.propagate(change.into_iter().collect());
            }
            Command::WithdrawLocal(prefix) => {
                let change = self.rib.withdraw(LOCAL, prefix);
                self.propagate(change.into_iter().collect());
            }
            Command::SetIgpCost(nh, cost) => {
                let changes = self.rib.set_igp_cost(nh, cost);
                self.propagate(changes);
            }
            Command::Sessions(reply) => {
                let mut list: Vec<SessionStatus> = self
                    .peers
                    .values()
                    .map(|p| SessionStatus {
                        name: p.config.name.clone(),
                        address: p.config.address,
                        remote_asn: p.config.remote_asn,
                        rr_client: p.config.rr_client,
                        state: p.fsm.state(),
                        negotiated: p.fsm.negotiated().cloned(),
                        advertised: p.out.len(),
                    })
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(list);
            }
            Command::Routes(reply) => {
                let routes = self
                    .rib
                    .best_routes()
                    .map(|(p, path)| (p, path.clone()))
                    .collect();
                let _ = reply.send(routes);
            }
            Command::Shutdown => {}
        }
    }

    fn report(&mut self, report: ConnReport) {
        let Some(peer) = self.peers.get(&report.peer) else {
            return;
        };
        if peer.pending.as_ref().map(|c| c.id) == Some(report.conn) {
            self.pending_report(report.peer, report.event);
            return;
        }
        if peer.conn.as_ref().map(|c| c.id) != Some(report.conn) {
            return; // a connection we already dropped
        }
        let event = match report.event {
            ConnEvent::Message(m) => Event::Message(m),
            ConnEvent::BadMessage(e) => {
                tracing::warn!(peer = %peer.config.name, error = %e, "bad BGP message");
                Event::BadMessage(e)
            }
            ConnEvent::Closed => Event::TcpFailed,
        };
        self.fsm_event(report.peer, event);
        // The session's own OPEN may be what settles a collision.
        let id = report.peer;
        if let Some(p) = self.peers.get(&id)
            && p.pending.is_some()
            && let Some(remote_id) = p.fsm.negotiated().map(|n| n.peer_id)
        {
            self.resolve_collision(id, remote_id);
        }
    }

    /// A message on the second connection of a collision: only its OPEN matters.
    fn pending_report(&mut self, peer: PeerId, event: ConnEvent) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        match event {
            ConnEvent::Message(Message::Open(open)) => {
                let remote_id = open.bgp_id;
                p.pending_open = Some(open);
                self.resolve_collision(peer, remote_id);
            }
            _ => {
                p.pending = None;
                p.pending_open = None;
            }
        }
    }

    /// RFC 4271 §6.8: of two connections with one peer, keep the one opened by the speaker
    /// with the higher BGP identifier, and close the other with Cease/7.
    fn resolve_collision(&mut self, peer: PeerId, remote_id: Ipv4Addr) {
        let local_wins = u32::from(self.local.router_id) > u32::from(remote_id);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let (Some(main), Some(_)) = (&p.conn, &p.pending) else {
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
        if !keep_pending {
            if let Some(loser) = p.pending.take() {
                loser.send(cease);
            }
            p.pending_open = None;
            return;
        }
        if let Some(loser) = p.conn.take() {
            loser.send(cease);
        }
        p.conn = p.pending.take();
        let open = p.pending_open.take();
        self.fsm_event(peer, Event::ConnectionReplaced);
        self.fsm_event(peer, Event::TcpConnected);
        if let Some(open) = open {
            self.fsm_event(peer, Event::Message(Message::Open(open)));
        }
    }

    fn internal(&mut self, i: Internal) {
        match i {
            Internal::Connected { peer, conn, result } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if p.connecting != Some(conn) {
                    return; // an attempt that was abandoned
                }
                p.connecting = None;
                match result {
                    Ok(stream) if p.fsm.accepts_connection() => {
                        self.attach(peer, stream, conn, true)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(peer = %p.config.name, error = %e, "BGP connect failed");
                        self.fsm_event(peer, Event::TcpFailed);
                    }
                }
            }
            Internal::Incoming(stream, from) => {
                // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
                let from_ip = from.ip().to_canonical();
                let found = self
                    .peers
                    .iter()
                    .find(|(_, p)| p.config.address == from_ip)
                    .map(|(id, p)| (*id, p.fsm.accepts_connection()));
                match found {
                    Some((id, true)) => {
                        let conn = self.next_conn;
                        self.next_conn += 1;
                        if let Some(p) = self.peers.get_mut(&id) {
                            p.connecting = None; // the peer's connection wins over ours
                            if let Some(ttl) = p.config.ttl
                                && let Err(e) = set_ttl(&stream, from_ip, ttl)
                            {
                                tracing::warn!(peer = %p.config.name, error = %e, "cannot set the TTL");
                            }
                        }
                        self.attach(id, stream, conn, false);
                    }
                    Some((id, false)) => self.second_connection(id, stream),
                    None => tracing::info!(%from, "BGP connection from an unknown address refused"),
                }
            }
        }
    }

    /// A connection from a peer whose session already has one.
    fn second_connection(&mut self, peer: PeerId, stream: TcpStream) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let exchanging = matches!(p.fsm.state(), State::OpenSent | State::OpenConfirm);
        if !exchanging || p.pending.is_some() {
            // Established (or not started): the existing session stands; the stream drops.
            tracing::debug!(peer = %p.config.name, "refusing a second BGP connection");
            return;
        }
        let Ok(c) = Connection::start(stream, peer, conn, false, self.reports_tx.clone()) else {
            return;
        };
        // The peer opened it, so it sends its OPEN first; ours follows if this one is kept.
        p.pending = Some(c);
        if let Some(remote_id) = p.fsm.negotiated().map(|n| n.peer_id) {
            self.resolve_collision(peer, remote_id);
        }
    }

    fn attach(&mut self, peer: PeerId, stream: TcpStream, conn: u64, outgoing: bool) {
        match Connection::start(stream, peer, conn, outgoing, self.reports_tx.clone()) {
            Ok(c) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.conn = Some(c);
                }
                self.fsm_event(peer, Event::TcpConnected);
            }
            Err(_) => self.fsm_event(peer, Event::TcpFailed),
        }
    }

    fn fsm_event(&mut self, peer: PeerId, event: Event) {
        let now = std::time::Instant::now();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let actions = p.fsm.handle(event, now);
        for action in actions {
            self.action(peer, action);
        }
    }

    fn send(&self, peer: PeerId, msg: &Message) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(conn) = &p.conn else {
            return;
        };
        match msg.encode(p.fsm.codec()) {
            Ok(bytes) => conn.send(bytes),
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
                    p.conn = None;
                    p.connecting = None;
                    p.pending = None;
                    p.pending_open = None;
                }
            }
            Action::Up(negotiated) => self.session_up(peer, negotiated),
            Action::Down(reason) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    tracing::info!(peer = %p.config.name, ?reason, "BGP session down");
                    p.out.clear();
                }
                self.refusals_logged.retain(|(p, _)| *p != peer);
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
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let conn = self.next_conn;
        self.next_conn += 1;
        p.connecting = Some(conn);
        let remote = SocketAddr::new(p.config.address, p.config.port);
        let bind = p.config.local_address;
        let timeout = p.config.connect_retry;
        let key = p.config.md5_key.clone();
        let ttl = p.config.ttl;
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let attempt = async {
                let socket = if remote.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                if let Some(addr) = bind {
                    socket.bind(SocketAddr::new(addr, 0))?;
                }
                // Both before the SYN: the key signs it, the TTL limits how far it may go.
                if let Some(key) = &key {
                    tcp_md5sig::set_key(&socket, remote.ip(), key.as_bytes())?;
                }
                if let Some(ttl) = ttl {
                    set_ttl(&socket, remote.ip(), ttl)?;
                }
                socket.connect(remote).await
            };
            let result = match tokio::time::timeout(timeout, attempt).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            };
            let _ = tx.send(Internal::Connected { peer, conn, result });
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
        // Shared paths: a full table is a million of them.
        let best: Vec<(IpNet, Arc<Path>)> = self.rib.best_routes_shared().collect();
        let changes: Vec<OutChange> = best
            .into_iter()
            .filter_map(|(prefix, path)| self.export_to(peer, prefix, Some(&*path)))
            .collect();
        self.send_changes(peer, changes);
        for family in negotiated.families {
            self.send(peer, &Message::Update(Update::end_of_rib(family)));
        }
    }

    fn update(&mut self, peer: PeerId, update: Update) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        for problem in &update.problems {
            tracing::warn!(peer = %p.config.name, ?problem, "malformed attribute (RFC 7606)");
        }
        let imported = import_update(&self.local, peer, &p.info, &p.config.import, &update);
        if let Some(reason) = imported.refused {
            tracing::info!(peer = %p.config.name, ?reason, "UPDATE's routes refused");
        }
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
        let name = p.config.name.clone();
        let mut changes = Vec::new();
        for op in imported.ops {
            let change = match op {
                RibOp::Announce(prefix, path) => match self.guard_refusal(&prefix, &source) {
                    None => {
                        // Accepted now (a new guard, a new announcement): a later refusal is
                        // news again.
                        if !self.refusals_logged.is_empty() {
                            self.refusals_logged.remove(&(peer, prefix));
                        }
                        self.rib.announce(prefix, path)
                    }
                    Some(reason) => {
                        if self.refusals_logged.insert((peer, prefix)) {
                            tracing::warn!(peer = %name, %prefix, %reason, "BGP route refused");
                        }
                        self.rib.withdraw(peer, prefix)
                    }
                },
                RibOp::Withdraw(prefix) => self.rib.withdraw(peer, prefix),
            };
            changes.extend(change);
        }
        self.propagate(changes);
    }

    fn guard_refusal(&self, prefix: &IpNet, source: &RouteSource) -> Option<String> {
        self.guard.as_ref()?.check(prefix, source).err()
    }

    /// Reports best-route changes to the routing plane and advertises them to the peers.
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
        for c in changes {
            let _ = self.routes.send(c);
        }
    }

    /// Decides what `peer` should now have for `prefix` and records it in its Adj-RIB-Out.
    fn export_to(&mut self, peer: PeerId, prefix: IpNet, best: Option<&Path>) -> Option<OutChange> {
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
            let kept = kept.filter(|_| !(p.config.next_hop_self && learnt_outside));
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
            let session_local = p.conn.as_ref().map(|c| c.local.ip());
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

    fn send_changes(&self, peer: PeerId, changes: Vec<OutChange>) {
        if changes.is_empty() {
            return;
        }
        for update in pack_updates(changes) {
            self.send(peer, &Message::Update(update));
        }
    }
}

/// The TTL (IPv4) or hop limit (IPv6) of a session's packets.
fn set_ttl(socket: &impl std::os::fd::AsFd, remote: IpAddr, ttl: u8) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    match remote {
        IpAddr::V4(_) => socket.set_ttl_v4(u32::from(ttl)),
        IpAddr::V6(_) => socket.set_unicast_hops_v6(u32::from(ttl)),
    }
}
