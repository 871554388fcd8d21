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
//!
//! One job per file: [`SpeakerCore`]'s state and its entry points for the whole speaker
//! (start, stop, timers, own routes) here; `sessions` (the session table, each session's state
//! machine and its actions), `connections` (connecting, accepting, collisions), `receive` (a
//! received UPDATE into the RIB, through policy and the guard), `refusal_log` (the log lines
//! about refused routes), `propagate` (what each peer is sent) and `view` (what the speaker
//! shows of its sessions and paths).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::fsm::{Event, Fsm};
use crate::guard::ImportGuard;
use crate::neighbor::{Md5Key, NeighborConfig};
use crate::packet::{AsPath, DecodeError, Message, Open, Origin, PathAttributes};
use crate::refusals::SessionRefusals;
use crate::rib::export::LocalInfo;
use crate::rib::out::AdjRibOut;
use crate::rib::{BestChange, LOCAL, Path, PeerId, PeerInfo, Rib};

mod connections;
mod propagate;
mod receive;
mod refusal_log;
mod sessions;
mod view;

pub use view::{PeerSummary, RouteEntry, SessionStatus, UsablePath};

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
    /// The best route for a prefix, or the rest of its multipath group, changed (this node's
    /// own routes have `peer == LOCAL`).
    Best(BestChange),
}

#[derive(Debug, thiserror::Error)]
#[error("neighbour {name:?} ({address}) is configured twice")]
pub struct DuplicateNeighbor {
    pub name: String,
    pub address: IpAddr,
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

    /// How many equal paths a prefix's multipath group may hold, the best included (1, the
    /// default: the best alone); see [`Rib::multipath`] for the rule. What peers are sent is
    /// always the best path alone; the group goes to the shell in [`Output::Best`].
    pub fn set_max_paths(&mut self, max_paths: usize) {
        let changes = self.rib.set_max_paths(max_paths);
        self.propagate(changes);
    }

    /// The data plane's cost to reach `next_hop` (`None`: unreachable).
    pub fn set_igp_cost(&mut self, next_hop: IpAddr, cost: Option<u32>) {
        let changes = self.rib.set_igp_cost(next_hop, cost);
        self.propagate(changes);
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
