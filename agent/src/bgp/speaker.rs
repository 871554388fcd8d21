//! The BGP speaker's tokio shell: one task that owns the listening sockets' keys, every
//! session's connection, and the timers, and feeds the engine's [`SpeakerCore`] (the sessions'
//! state machines, the RIB, every decision) with what happens, then carries out what it says.
//! Best-route changes go out on a channel for the routing plane (kernel routes via
//! `crate::netlink`, the data plane's prefix table).
//!
//! Connections are handled by [`super::session`]; everything else happens on this one task, so
//! the engine needs no locking and the order of events is the order they were handled in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use meshd_bgp::guard::ImportGuard;
use meshd_bgp::neighbor::Md5Key;
use meshd_bgp::rib::{BestChange, Path, PeerId};
use meshd_bgp::speaker::{ConnId, DuplicateNeighbor, Output, SpeakerCore};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::session::{ConnReport, Connection, prepare};

pub use meshd_bgp::neighbor::{BGP_PORT, NeighborConfig};
pub use meshd_bgp::speaker::{PeerSummary, RouteEntry, SessionStatus, UsablePath};

#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: std::net::Ipv4Addr,
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
    #[error(transparent)]
    DuplicateNeighbor(#[from] DuplicateNeighbor),
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

enum Command {
    AddNeighbor(Box<NeighborConfig>),
    RemoveNeighbor(IpAddr),
    SetGuard(Option<Arc<dyn ImportGuard>>),
    Originate(IpNet),
    WithdrawLocal(IpNet),
    SetIgpCost(IpAddr, Option<u32>),
    SetMaxPaths(usize),
    Sessions(oneshot::Sender<Vec<SessionStatus>>),
    Routes(oneshot::Sender<Vec<(IpNet, Path)>>),
    AllPaths(oneshot::Sender<Vec<RouteEntry>>),
    PathsOf(Vec<IpNet>, oneshot::Sender<Vec<RouteEntry>>),
    UsablePaths(Vec<IpNet>, oneshot::Sender<Vec<UsablePath>>),
    Shutdown,
}

enum Internal {
    Connected {
        peer: PeerId,
        conn: ConnId,
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

    /// How many equal paths a prefix's multipath group may hold, the best included (1, the
    /// speaker's default: the best alone). Prefixes whose group changes are reported as
    /// best-route changes, with the group in `BestChange::equal`.
    pub fn set_max_paths(&self, max_paths: usize) {
        let _ = self.commands.send(Command::SetMaxPaths(max_paths));
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

    /// [`Self::all_paths`] for these prefixes only.
    pub async fn paths_of(&self, prefixes: Vec<IpNet>) -> Vec<RouteEntry> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::PathsOf(prefixes, tx));
        rx.await.unwrap_or_default()
    }

    /// The selectable paths (next hop reachable) to each of `prefixes`, with their IGP costs.
    /// Commands are handled in order, so this sees every IGP cost set before it.
    pub async fn usable_paths(&self, prefixes: Vec<IpNet>) -> Vec<UsablePath> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::UsablePaths(prefixes, tx));
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

struct Actor {
    core: SpeakerCore,
    /// The live connections by the engine's id; dropping one closes it once its queue is sent.
    conns: HashMap<ConnId, Connection>,
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
        let core = SpeakerCore::new(config.asn, config.router_id, &config.neighbors)?;
        // Shared by all connections; small, so that a fast peer is slowed down by TCP rather
        // than buffered (see `session::read_loop`).
        let (reports_tx, reports_rx) = mpsc::channel(64);
        let actor = Actor {
            core,
            conns: HashMap::new(),
            routes,
            internal,
            reports_tx,
            reports_rx,
            listen_sockets,
        };
        for n in &config.neighbors {
            if let Some(key) = &n.md5_key {
                actor.set_listener_keys(&n.name, n.address, Some(key))?;
            }
        }
        Ok(actor)
    }

    /// Sets (`Some`) or removes (`None`) a neighbour's TCP-MD5 key on every listening socket
    /// that can take it: an IPv4 socket cannot hold keys for IPv6 neighbours, an IPv6 one holds
    /// both (IPv4 as mapped addresses).
    fn set_listener_keys(
        &self,
        name: &str,
        address: IpAddr,
        key: Option<&Md5Key>,
    ) -> Result<(), SpeakerError> {
        for (listener, bound) in &self.listen_sockets {
            if bound.is_ipv4() && address.is_ipv6() {
                continue;
            }
            let bytes = key.map_or(&[][..], Md5Key::as_bytes);
            tcp_md5sig::set_key(listener.as_ref(), address, bytes).map_err(|source| {
                SpeakerError::Md5Key {
                    name: name.to_owned(),
                    address,
                    listener: *bound,
                    source,
                }
            })?;
        }
        Ok(())
    }

    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        self.core.start(std::time::Instant::now());
        self.carry_out(None);
        loop {
            let deadline = self.core.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => {
                        self.core.shutdown(std::time::Instant::now());
                        self.carry_out(None);
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                },
                Some(report) = self.reports_rx.recv() => {
                    let now = std::time::Instant::now();
                    self.core.received(report.peer, report.conn, report.event, now);
                    self.carry_out(None);
                }
                Some(i) = internal.recv() => self.internal(i),
                () = sleep => {
                    self.core.tick(std::time::Instant::now());
                    self.carry_out(None);
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = std::time::Instant::now();
        match cmd {
            Command::AddNeighbor(n) => self.core.add_neighbor(*n, now),
            Command::RemoveNeighbor(address) => self.core.remove_neighbor(address, now),
            Command::SetGuard(guard) => self.core.set_guard(guard),
            Command::Originate(prefix) => self.core.originate(prefix),
            Command::WithdrawLocal(prefix) => self.core.withdraw(prefix),
            Command::SetIgpCost(nh, cost) => self.core.set_igp_cost(nh, cost),
            Command::SetMaxPaths(max_paths) => self.core.set_max_paths(max_paths),
            Command::Sessions(reply) => {
                let _ = reply.send(self.core.sessions());
            }
            Command::Routes(reply) => {
                let _ = reply.send(self.core.best_routes());
            }
            Command::AllPaths(reply) => {
                let _ = reply.send(self.core.all_paths());
            }
            Command::PathsOf(prefixes, reply) => {
                let _ = reply.send(self.core.paths_of(&prefixes));
            }
            Command::UsablePaths(prefixes, reply) => {
                let paths = prefixes
                    .iter()
                    .flat_map(|prefix| self.core.usable_paths(prefix))
                    .collect();
                let _ = reply.send(paths);
            }
            Command::Shutdown => {}
        }
        self.carry_out(None);
    }

    fn internal(&mut self, i: Internal) {
        let now = std::time::Instant::now();
        match i {
            Internal::Connected { peer, conn, result } => {
                let ready = result.and_then(|stream| Ok((prepare(&stream)?, stream)));
                match ready {
                    Ok((local, stream)) => {
                        self.core.connected(peer, conn, local, now);
                        self.carry_out(Some(stream));
                    }
                    Err(e) => {
                        self.core.connect_failed(peer, conn, &e, now);
                        self.carry_out(None);
                    }
                }
            }
            Internal::Incoming(stream, from) => match prepare(&stream) {
                Ok(local) => {
                    self.core.incoming(from, local, now);
                    self.carry_out(Some(stream));
                }
                Err(e) => tracing::debug!(%from, error = %e, "BGP connection lost on arrival"),
            },
        }
    }

    /// Does what the engine asked for. `stream` is the one the last event handed in; an
    /// [`Output::Attach`] claims it, otherwise it is dropped (closed).
    fn carry_out(&mut self, mut stream: Option<TcpStream>) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Connect {
                    peer,
                    conn,
                    remote,
                    bind,
                    timeout,
                    md5_key,
                    ttl,
                } => self.connect(peer, conn, remote, bind, timeout, md5_key, ttl),
                Output::Attach { peer, conn, ttl } => {
                    let Some(stream) = stream.take() else {
                        continue;
                    };
                    if let Some(ttl) = ttl
                        && let Ok(remote) = stream.peer_addr()
                        && let Err(e) = set_ttl(&stream, remote.ip().to_canonical(), ttl)
                    {
                        let name = self.core.peer_name(peer).unwrap_or_default();
                        tracing::warn!(peer = %name, error = %e, "cannot set the TTL");
                    }
                    let c = Connection::start(stream, peer, conn, self.reports_tx.clone());
                    self.conns.insert(conn, c);
                }
                Output::Send { conn, bytes } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.send(bytes);
                    }
                }
                Output::Close { conn } => {
                    self.conns.remove(&conn);
                }
                Output::ListenerKey {
                    neighbor,
                    address,
                    key,
                } => {
                    let adding = key.is_some();
                    if let Err(e) = self.set_listener_keys(&neighbor, address, key.as_ref()) {
                        if adding {
                            // Its connections would fail their MD5 check anyway; ours to it
                            // carry the key.
                            tracing::error!(peer = %neighbor, error = %e, "BGP neighbour's key not set");
                        } else {
                            tracing::warn!(peer = %neighbor, error = %e, "BGP neighbour's key not removed");
                        }
                    }
                }
                Output::Best(change) => {
                    let _ = self.routes.send(change);
                }
            }
        }
    }

    /// Opens a connection in a task of its own; the result comes back as
    /// [`Internal::Connected`].
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &self,
        peer: PeerId,
        conn: ConnId,
        remote: SocketAddr,
        bind: Option<IpAddr>,
        timeout: Duration,
        key: Option<Md5Key>,
        ttl: Option<u8>,
    ) {
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
}

/// The TTL (IPv4) or hop limit (IPv6) of a session's packets.
fn set_ttl(socket: &impl std::os::fd::AsFd, remote: IpAddr, ttl: u8) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    match remote {
        IpAddr::V4(_) => socket.set_ttl_v4(u32::from(ttl)),
        IpAddr::V6(_) => socket.set_unicast_hops_v6(u32::from(ttl)),
    }
}
