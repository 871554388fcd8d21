//! The pure heart of the data plane: packets in, packets out, no sockets and no tokio.
//!
//! Every entry point takes the current time from the caller (one clock reading per batch)
//! and writes its output into caller-owned batches: decrypted packets into a
//! [`PacketBatch`] for the device, encrypted datagrams into a [`TxBatch`] for the sockets.
//! Methods take `&self` so the two directions can run on two cores at once; the only
//! shared mutable state is each peer's `Tunn`, held for one packet at a time.
//!
//! boringtun 0.7 reads its own monotonic clock inside `Tunn` for the WireGuard protocol
//! timers (it has no way to pass one in short of a crate-global mock feature); every
//! decision meshd makes itself — path choice, endpoint rotation, when to tick — uses `now`.
//!
//! This file holds the packets: routing, encryption, handshakes, timers and counters. Which
//! path a peer's datagrams take (probes, reach queries, the path and relay polls) is in
//! `core/paths.rs`, a second `impl` block of the same [`DataplaneCore`].

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};

use crate::batch::PacketBatch;
use crate::config::{PeerConfig, WIREGUARD_OVERHEAD, validate_peers};
use crate::error::ConfigError;
use crate::exit_source::{ExitSources, Resolved, SourceTable};
use crate::ip;
use crate::path::probe::{self, SenderId};
use crate::path::reach;
use crate::path::{DefaultPolicy, HANDSHAKE_TIMEOUT, LocalUplink, Path, PathPolicy};
use crate::peer::{MAX_SLOT, Peer, PeerState, PeerTable, TableEntry, Target};
use crate::routing::CryptoRouter;
use crate::source_limit::SourceLimiter;
use crate::stats::{DataplaneStats, DropCounters, DropReason, PeerCounters, PeerStats};
use crate::tx::TxBatch;

mod paths;
mod rekey;
use paths::send_path;
pub use rekey::RekeyRequest;

/// Handshake messages per second (all peers together) before we answer with cookies.
/// Each message passes the limiter twice (our pre-check, then boringtun's own), hence 2x.
const HANDSHAKES_PER_SECOND: u64 = 2 * 100;
/// Largest WireGuard message we produce besides data: a handshake initiation.
pub const MIN_TX_ROOM: usize = 148;
const HANDSHAKE_INIT: u8 = 1;
const DATA: u8 = 4;

/// A consistent view of the peers for one batch (cheap to take, lock-free to use).
///
/// It remembers the last routing answers: the segments of one TSO super-packet (and a run
/// of datagrams from one peer) all carry the same addresses, so one longest-prefix match
/// serves the whole run. Destinations and sources are memoised apart because the receive
/// path asks for both, alternately. The memo lives and dies with the snapshot, so it never
/// outlives a peer-table change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    table: Arc<PeerTable>,
    /// This node's own prefixes: what arrives for them goes to the device even when a
    /// peer's route (an exit's default) also covers them.
    own: Arc<CryptoRouter<()>>,
    /// The source rules for Internet traffic (`crate::exit_source`).
    sources: Arc<SourceTable>,
    last_dst: RouteMemo,
    last_src: RouteMemo,
    /// The last source rule answer, by source and destination.
    last_source: Cell<Option<(IpAddr, IpAddr, Option<Resolved>)>>,
}

/// Where a source rule sends one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pinned {
    /// To this peer (its position in the table).
    Peer(usize),
    /// Out of this node.
    Here,
    /// Nowhere: the rule fails closed.
    Drop,
}

/// One remembered routing answer (a group's member is chosen per packet, after the memo).
type RouteMemo = Cell<Option<(IpAddr, Option<Target>)>>;

impl Snapshot {
    fn new(table: Arc<PeerTable>, own: Arc<CryptoRouter<()>>, sources: Arc<SourceTable>) -> Self {
        Snapshot {
            table,
            own,
            sources,
            last_dst: Cell::new(None),
            last_src: Cell::new(None),
            last_source: Cell::new(None),
        }
    }

    /// Where the source rules send a packet from `src` to `dst`, when its destination goes
    /// through an exit; `None`: by destination. Costs nothing without rules.
    fn pinned(&self, src: IpAddr, dst: IpAddr) -> Option<Pinned> {
        if self.sources.is_empty() {
            return None;
        }
        let rule = match self.last_source.get() {
            Some((s, d, rule)) if s == src && d == dst => rule,
            _ => {
                let route_len = self.table.route_with_len(dst).map(|(_, len)| len);
                let own_len = self.own.lookup_with_len(dst).map(|(_, len)| len);
                let rule = self.sources.rule_for(src, dst, route_len, own_len);
                self.last_source.set(Some((src, dst, rule)));
                rule
            }
        };
        match rule? {
            Resolved::Slot { slot, fail_closed } => match self.table.position_of_slot(slot) {
                Some(i) => Some(Pinned::Peer(i)),
                None if fail_closed => Some(Pinned::Drop),
                None => None,
            },
            Resolved::Here => Some(Pinned::Here),
            Resolved::Drop => Some(Pinned::Drop),
            Resolved::ByDestination => None,
        }
    }

    /// The peer `packet`, to `dst`, goes to: for a shared prefix with several equal-cost
    /// next hops, the one its flow hashes to.
    fn route_dst(&self, dst: IpAddr, packet: &[u8]) -> Option<usize> {
        let target = self.route_memoised(dst, &self.last_dst)?;
        Some(self.table.resolve(target, packet))
    }

    /// Whether a packet from a peer for `dst`, which routes to another peer, belongs to this
    /// node instead: one of our own prefixes matches it at least as specifically (an exit's
    /// default covers our addresses, our LANs, a shared prefix we serve). Only for what
    /// arrives from peers: what the kernel sends into the TUN it has already decided about.
    fn kept_here(&self, dst: IpAddr) -> bool {
        let Some((_, own_len)) = self.own.lookup_with_len(dst) else {
            return false;
        };
        self.table
            .route_with_len(dst)
            .is_none_or(|(_, peer_len)| own_len >= peer_len)
    }

    /// The peers allowed to send from `src`: one, or every member of an equal-cost group
    /// (any announcer of a shared prefix may send from it).
    fn route_src(&self, src: IpAddr) -> &[usize] {
        match self.route_memoised(src, &self.last_src) {
            Some(target) => self.table.members(target),
            None => &[],
        }
    }

    fn route_memoised(&self, addr: IpAddr, memo: &RouteMemo) -> Option<Target> {
        if let Some((last, to)) = memo.get()
            && last == addr
        {
            return to;
        }
        let to = self.table.route(addr);
        memo.set(Some((addr, to)));
        to
    }

    fn peers(&self) -> &[Arc<Peer>] {
        &self.table.peers
    }
}

/// The data plane's protocol state: peers, crypto-key routing, rate limiting, counters.
pub struct DataplaneCore {
    private_key: StaticSecret,
    public_key: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    /// Handshake messages per source address (checked before anything else about them).
    source_limiter: SourceLimiter,
    table: RwLock<Arc<PeerTable>>,
    /// Serialises peer updates and hands out peer indexes.
    next_slot: Mutex<u32>,
    drops: DropCounters,
    /// Our probe sender id.
    probe_id: SenderId,
    /// How paths are ranked and probed (`[paths]`).
    policy: RwLock<Arc<dyn PathPolicy>>,
    /// Our usable local uplink addresses, primary first (empty: the kernel chooses sources).
    locals: RwLock<Vec<LocalUplink>>,
    /// This node's own prefixes (see [`Self::set_own_prefixes`]).
    own_prefixes: RwLock<Arc<CryptoRouter<()>>>,
    /// The source rules as given, and resolved against the current peer table (again at
    /// every peer update, under `next_slot`).
    exit_sources: Mutex<ExitSources>,
    source_table: RwLock<Arc<SourceTable>>,
    /// Probe timestamps count microseconds from here (they are only echoed back to us).
    epoch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for DataplaneCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneCore")
            .field("public_key", &self.public_key.as_bytes())
            .field("peers", &self.table.read().peers.len())
            .finish()
    }
}

impl DataplaneCore {
    /// A core with our private key and an initial peer set.
    pub fn new(private_key: [u8; 32], peers: &[PeerConfig]) -> Result<Self, ConfigError> {
        Self::with_handshake_limit(private_key, peers, HANDSHAKES_PER_SECOND)
    }

    /// Like [`DataplaneCore::new`] with another handshake rate before cookies (tests).
    pub(crate) fn with_handshake_limit(
        private_key: [u8; 32],
        peers: &[PeerConfig],
        handshakes_per_second: u64,
    ) -> Result<Self, ConfigError> {
        let secret = StaticSecret::from(private_key);
        let public_key = PublicKey::from(&secret);
        let core = DataplaneCore {
            rate_limiter: Arc::new(RateLimiter::new(&public_key, handshakes_per_second)),
            source_limiter: SourceLimiter::default(),
            private_key: secret,
            public_key,
            table: RwLock::new(Arc::new(PeerTable::default())),
            // Start at a random peer index so indexes differ across restarts.
            next_slot: Mutex::new(rand::random_range(1..=MAX_SLOT / 2)),
            drops: DropCounters::default(),
            probe_id: probe::sender_id(public_key.as_bytes()),
            policy: RwLock::new(Arc::new(DefaultPolicy)),
            locals: RwLock::new(Vec::new()),
            own_prefixes: RwLock::new(Arc::new(CryptoRouter::new())),
            exit_sources: Mutex::new(ExitSources::default()),
            source_table: RwLock::new(Arc::new(SourceTable::default())),
            epoch: Mutex::new(None),
        };
        core.update_peers(peers)?;
        Ok(core)
    }

    /// Our public key.
    pub fn public_key(&self) -> [u8; 32] {
        *self.public_key.as_bytes()
    }

    /// Replaces the peer set. Peers whose key, name and keepalive are unchanged keep their
    /// tunnel (sessions survive); their endpoints and prefixes are updated.
    pub fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), ConfigError> {
        validate_peers(peers, &self.private_key.to_bytes())?;
        let mut next_slot = self.next_slot.lock();
        let old = self.table.read().clone();
        let mut entries = Vec::with_capacity(peers.len());
        for config in peers {
            let reused = old.by_key(&config.public_key).map(|(_, p)| p).filter(|p| {
                p.name == config.name
                    && p.persistent_keepalive == config.persistent_keepalive
                    && p.relay == config.relay
            });
            let peer = match reused {
                Some(peer) => {
                    let mut state = peer.state.lock();
                    state.path.set_configured(config.endpoints.clone());
                    if state.endpoints != config.endpoints {
                        state.endpoints = config.endpoints.clone();
                        state.candidates_stale = true;
                    }
                    drop(state);
                    peer.clone()
                }
                None => {
                    let slot = allocate_slot(&mut next_slot, &old, &entries);
                    Arc::new(Peer::new(
                        config,
                        slot,
                        &self.private_key,
                        &self.rate_limiter,
                        self.policy.read().prober_config(&config.name),
                    ))
                }
            };
            entries.push((
                peer,
                config.allowed_ips.as_slice(),
                config.ecmp_ips.as_slice(),
            ));
        }
        let table = Arc::new(PeerTable::new(entries));
        let sources = SourceTable::resolve(&self.exit_sources.lock(), &table);
        *self.table.write() = table;
        *self.source_table.write() = Arc::new(sources);
        Ok(())
    }

    /// Replaces the source rules: which exit the Internet traffic of each source prefix
    /// takes ([`crate::exit_source`]). Each rule's next hop is found in the peer table now
    /// and again whenever the peers change.
    pub fn set_exit_sources(&self, sources: ExitSources) {
        let _updating = self.next_slot.lock();
        let table = self.table.read().clone();
        let resolved = SourceTable::resolve(&sources, &table);
        *self.exit_sources.lock() = sources;
        *self.source_table.write() = Arc::new(resolved);
    }

    /// This node's own prefixes: its allocation, its LANs, the shared prefixes it serves, the
    /// defaults it announces as an exit, and whatever its kernel routes elsewhere. A packet
    /// from a peer for one of them goes to the device, not on to another peer whose prefix
    /// also covers it: without this, a core that uses an exit would relay packets for its
    /// own addresses to that exit (its default route covers them). A peer's more specific
    /// prefix inside ours (a client's address) still wins.
    pub fn set_own_prefixes(&self, prefixes: &[IpNet]) {
        let mut router = CryptoRouter::new();
        for prefix in prefixes {
            router.insert(*prefix, ());
        }
        *self.own_prefixes.write() = Arc::new(router);
    }

    /// The peer set to use for one batch.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            self.table.read().clone(),
            self.own_prefixes.read().clone(),
            self.source_table.read().clone(),
        )
    }

    /// A packet from the device: route it to its peer and encrypt it into `tx`.
    pub fn handle_outbound(&self, snap: &Snapshot, packet: &[u8], now: Instant, tx: &mut TxBatch) {
        let Some((src, dst)) = ip::addresses(packet) else {
            return self.drop(DropReason::InvalidInnerPacket);
        };
        match snap.pinned(src, dst) {
            Some(Pinned::Peer(to)) => {
                return self.send_routed(snap, &snap.peers()[to], packet, now, tx);
            }
            Some(Pinned::Drop) => return self.drop(DropReason::NoExit),
            // The kernel sent it into the mesh after all: by destination.
            Some(Pinned::Here) | None => {}
        }
        let Some(to) = snap.route_dst(dst, packet) else {
            return self.drop(DropReason::NoRoute);
        };
        self.send_routed(snap, &snap.peers()[to], packet, now, tx);
    }

    /// Sends `packet` to `peer`, or through the core that relays to it now.
    fn send_routed(
        &self,
        snap: &Snapshot,
        peer: &Peer,
        packet: &[u8],
        now: Instant,
        tx: &mut TxBatch,
    ) {
        let via = peer.relay_via.load(Ordering::Relaxed);
        if via != 0
            && let Some(relay) = snap.table.by_slot(via)
        {
            PeerCounters::add(&peer.counters.relayed_packets, 1);
            return self.send_to_peer(relay, packet, now, tx);
        }
        self.send_to_peer(peer, packet, now, tx);
    }

    /// Whether core `via` may bring us packets from the addresses of core `origin` (it
    /// relays them): only between cores, and only while our direct paths to `origin` are
    /// all down, or `via` is our own relay to `origin`, or `via` told us that it reaches
    /// `origin` faster than our direct path (see `RelayChooser::vouches`). So a core cannot
    /// use another core's addresses while the direct path between them is the better one.
    /// Only relayed packets come here (two short locks each, one at a time).
    fn relay_accepted(&self, via: &Peer, origin: &Peer, now: Instant) -> bool {
        if !(via.relay && origin.relay) {
            return false;
        }
        let via_rtt = via.state.lock().prober.active_up_srtt();
        let state = origin.state.lock();
        state.prober.all_down()
            || state
                .relay
                .vouches(via.slot, via_rtt, state.prober.active_up_srtt(), now)
    }

    /// A UDP datagram from `from`: decrypt it into `to_device`, forward it to another peer
    /// (transit) into `tx`, or answer a handshake into `tx`. Never panics on any input.
    ///
    /// The caller makes sure `to_device` has a free buffer and `tx` at least
    /// `MIN_TX_ROOM` plus one MTU of room; otherwise the packet is dropped as `NoBuffer`.
    pub fn handle_inbound(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        to_device: &mut PacketBatch,
        tx: &mut TxBatch,
    ) {
        self.handle_inbound_on(snap, datagram, from, None, now, to_device, tx);
    }

    /// [`Self::handle_inbound`] for a datagram that arrived on our local address `local`
    /// (`None`: unknown): the path it came by is `local` x `from`, and a probe is answered
    /// from the address it was sent to.
    #[allow(clippy::too_many_arguments)] // the datagram, both its addresses, the clock and two outputs
    pub fn handle_inbound_on(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
        to_device: &mut PacketBatch,
        tx: &mut TxBatch,
    ) {
        if probe::is_probe(datagram) {
            return self.handle_probe(snap, datagram, from, local, now, tx);
        }
        if reach::is_reach(datagram) {
            return self.handle_reach(snap, datagram, from, local, now, tx);
        }
        match Tunn::parse_incoming_packet(datagram) {
            Err(_) => self.drop(DropReason::Malformed),
            Ok(Packet::PacketData(data)) => {
                let Some((index, peer)) = snap.table.by_receiver_index(data.receiver_idx) else {
                    return self.drop(DropReason::UnknownPeer);
                };
                let path = Path {
                    local,
                    remote: from,
                };
                self.handle_data(snap, index, peer, datagram, path, now, to_device, tx);
            }
            Ok(_) => {
                if self.admit_handshake(from.ip(), now) {
                    self.handle_handshake(snap, datagram, from, local, now, tx)
                }
            }
        }
    }

    /// Whether `datagram` is a handshake message by its type and length (an initiation, a
    /// response or a cookie reply): what the shell hands to its handshake queue, so that the
    /// expensive work of a handshake never holds up data. Costs a few compares.
    pub fn is_handshake(datagram: &[u8]) -> bool {
        const INITIATION: (u8, usize) = (1, 148);
        const RESPONSE: (u8, usize) = (2, 92);
        const COOKIE_REPLY: (u8, usize) = (3, 64);
        let Some((&kind, rest)) = datagram.split_first() else {
            return false;
        };
        // The type is a little-endian u32 whose upper three bytes are zero.
        rest.get(..3) == Some(&[0, 0, 0])
            && [INITIATION, RESPONSE, COOKIE_REPLY].contains(&(kind, datagram.len()))
    }

    /// The per-source limit on handshake messages: false (counted as `RateLimited`) for a
    /// source over its rate. Checked before the MAC check and before the handshake queue,
    /// so a flood from one address costs only this lookup once its bucket is empty.
    pub fn admit_handshake(&self, from: IpAddr, now: Instant) -> bool {
        let allowed = self.source_limiter.allow(from, now);
        if !allowed {
            self.drop(DropReason::RateLimited);
        }
        allowed
    }

    /// A handshake message (see [`Self::is_handshake`]) that [`Self::admit_handshake`]
    /// let through, taken from the handshake queue: MAC checks, cookie replies under load,
    /// Diffie-Hellman. Replies go into `tx`.
    pub fn handle_queued_handshake(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        if Self::is_handshake(datagram) {
            self.handle_handshake(snap, datagram, from, local, now, tx);
        } else {
            self.drop(DropReason::Malformed);
        }
    }

    #[allow(clippy::too_many_arguments)] // the packet, its origin, the clock and two outputs
    fn handle_data(
        &self,
        snap: &Snapshot,
        index: usize,
        peer: &Peer,
        datagram: &[u8],
        path: Path,
        now: Instant,
        to_device: &mut PacketBatch,
        tx: &mut TxBatch,
    ) {
        let from = path.remote;
        let Some(buf) = to_device.next_free() else {
            return self.drop(DropReason::NoBuffer);
        };
        let len = {
            let mut state = peer.state.lock();
            match state
                .tunn
                .decapsulate(Some(from.ip()), datagram, buf.room_mut())
            {
                TunnResult::Err(e) => return self.drop(drop_reason(&e)),
                TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                    let len = p.len();
                    authenticated(&mut state, path, now);
                    first_data_after_response(&mut state, datagram, now);
                    len
                }
                // A keepalive (or a message boringtun answered itself): proof the peer is
                // alive on this path, nothing to deliver.
                TunnResult::Done | TunnResult::WriteToNetwork(_) => {
                    authenticated(&mut state, path, now);
                    first_data_after_response(&mut state, datagram, now);
                    return;
                }
            }
        };
        PeerCounters::add(&peer.counters.rx_packets, 1);
        PeerCounters::add(&peer.counters.rx_bytes, len as u64);
        buf.set_packet_len(len);
        let packet = buf.packet();

        let Some((src, dst)) = ip::addresses(packet) else {
            return self.drop(DropReason::InvalidInnerPacket);
        };
        // Crypto-key routing on receive: the source must route back to the sender (or to a
        // group it is a member of), or to a core this core relays for.
        let origins = snap.route_src(src);
        let relayed = if origins.contains(&index) {
            false
        } else if origins
            .iter()
            .any(|&origin| self.relay_accepted(peer, &snap.peers()[origin], now))
        {
            true
        } else {
            return self.drop(DropReason::SpoofedSource);
        };
        // Source rules where traffic enters the mesh of cores: from a spoke, a client or a
        // static peer. What a core sends us was pinned (or not) where it entered; choosing
        // again here could bounce it between two exits that pin it to each other.
        if !relayed && !peer.relay {
            match snap.pinned(src, dst) {
                Some(Pinned::Peer(to)) if to != index => {
                    PeerCounters::add(&peer.counters.transit_packets, 1);
                    return self.send_routed(snap, &snap.peers()[to], packet, now, tx);
                }
                Some(Pinned::Peer(_) | Pinned::Here) => return to_device.commit(),
                Some(Pinned::Drop) => return self.drop(DropReason::NoExit),
                None => {}
            }
        }
        match snap.route_dst(dst, packet) {
            // Behind another peer: relay inside meshd, no kernel round trip.
            Some(to) if to != index && !snap.kept_here(dst) => {
                let next = &snap.peers()[to];
                // Relayed once is enough: a relayed packet goes no further than our own
                // spokes, and what a core sends through us goes on our direct path (never
                // relayed again), so two cores cannot bounce a packet between them.
                if relayed && next.relay {
                    return self.drop(DropReason::NoRoute);
                }
                PeerCounters::add(&peer.counters.transit_packets, 1);
                if peer.relay {
                    self.send_to_peer(next, packet, now, tx);
                } else {
                    self.send_routed(snap, next, packet, now, tx);
                }
            }
            // For us (or for the kernel to decide).
            _ => to_device.commit(),
        }
    }

    fn handle_handshake(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        if tx.remaining() < MIN_TX_ROOM {
            return self.drop(DropReason::NoBuffer);
        }
        // MAC1 and load check before any Diffie-Hellman work, so floods stay cheap.
        let packet = match self
            .rate_limiter
            .verify_packet(Some(from.ip()), datagram, tx.room())
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let len = cookie.len();
                tx.commit_from(len, from, local);
                return self.drop(DropReason::UnderLoad);
            }
            Err(TunnResult::Err(e)) => return self.drop(drop_reason(&e)),
            Err(_) => return self.drop(DropReason::Malformed),
        };
        let found = match &packet {
            Packet::HandshakeInit(init) => {
                match parse_handshake_anon(&self.private_key, &self.public_key, init) {
                    Ok(half) => snap.table.by_key(&half.peer_static_public),
                    Err(e) => return self.drop(drop_reason(&e)),
                }
            }
            Packet::HandshakeResponse(resp) => snap.table.by_receiver_index(resp.receiver_idx),
            Packet::PacketCookieReply(cookie) => snap.table.by_receiver_index(cookie.receiver_idx),
            Packet::PacketData(_) => return self.drop(DropReason::Malformed),
        };
        let Some((_, peer)) = found else {
            return self.drop(DropReason::UnknownPeer);
        };
        let is_cookie = matches!(packet, Packet::PacketCookieReply(_));
        let is_response = matches!(packet, Packet::HandshakeResponse(_));

        let mut state = peer.state.lock();
        match state.tunn.decapsulate(Some(from.ip()), datagram, tx.room()) {
            TunnResult::WriteToNetwork(reply) => {
                // A handshake response (we are responder) or the first keepalive (we were
                // initiator): either way the handshake completed with this peer at `from`.
                let len = reply.len();
                authenticated(
                    &mut state,
                    Path {
                        local,
                        remote: from,
                    },
                    now,
                );
                if is_response && let Some(sent) = state.initiation_sent_at.take() {
                    state.rtt = Some(now.saturating_duration_since(sent));
                }
                if !is_response
                    && !is_cookie
                    && let Some(index) = session_index(reply)
                {
                    state.response_sent_at = Some((now, index));
                }
                PeerCounters::add(&peer.counters.handshakes, 1);
                if !state.session_up {
                    state.session_up = true;
                    tracing::info!(peer = %peer.name, endpoint = %from, "tunnel up");
                }
                tx.commit_from(len, from, local);
                self.flush_queue(peer, &mut state, now, tx);
            }
            TunnResult::Done if is_cookie => {}
            TunnResult::Done => {}
            TunnResult::Err(e) => self.drop(drop_reason(&e)),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                self.drop(DropReason::Malformed)
            }
        }
    }

    /// Sends the packets boringtun queued while the handshake was in progress.
    fn flush_queue(&self, peer: &Peer, state: &mut PeerState, now: Instant, tx: &mut TxBatch) {
        // Only with a session: without one boringtun would requeue at the back (reordering).
        if state.tunn.time_since_last_handshake().is_none() {
            return;
        }
        while tx.remaining() >= MIN_TX_ROOM + usize::from(u16::MAX) {
            match state.tunn.decapsulate(None, &[], tx.room()) {
                TunnResult::WriteToNetwork(p) => {
                    let len = p.len();
                    self.commit_datagram(peer, state, len, now, tx);
                }
                _ => break,
            }
        }
    }

    /// Encrypts `packet` for `peer` into `tx` (or queues it behind a handshake).
    fn send_to_peer(&self, peer: &Peer, packet: &[u8], now: Instant, tx: &mut TxBatch) {
        let needed = (packet.len() + WIREGUARD_OVERHEAD).max(MIN_TX_ROOM);
        if tx.remaining() < needed {
            return self.drop(DropReason::NoBuffer);
        }
        let mut state = peer.state.lock();
        match state.tunn.encapsulate(packet, tx.room()) {
            TunnResult::WriteToNetwork(p) => {
                let len = p.len();
                self.commit_datagram(peer, &mut state, len, now, tx);
            }
            TunnResult::Err(e) => self.drop(drop_reason(&e)),
            _ => {}
        }
    }

    /// Counts the datagram boringtun just wrote at the start of `tx.room()` and sends it
    /// down the peer's current path.
    fn commit_datagram(
        &self,
        peer: &Peer,
        state: &mut PeerState,
        len: usize,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        let Some(path) = send_path(state) else {
            return self.drop(DropReason::NoEndpoint);
        };
        match tx.room().first() {
            Some(&HANDSHAKE_INIT) => {
                state.handshake_pending_since.get_or_insert(now);
                state.initiation_sent_at = Some(now);
            }
            Some(&DATA) if len > WIREGUARD_OVERHEAD => {
                PeerCounters::add(&peer.counters.tx_packets, 1);
                PeerCounters::add(&peer.counters.tx_bytes, (len - WIREGUARD_OVERHEAD) as u64);
                state.prober.traffic_sent(now);
            }
            _ => {}
        }
        tx.commit_from(len, path.remote, path.local);
    }

    /// Runs the protocol timers of every peer (handshake retry, keepalives, rekeying,
    /// session expiry) and the path policy's timeouts. Call every ~250 ms.
    pub fn tick(&self, now: Instant, tx: &mut TxBatch) {
        let snap = self.snapshot();
        for peer in &snap.table.peers {
            if tx.remaining() < MIN_TX_ROOM + usize::from(u16::MAX) {
                break; // the rest get their turn on the next tick
            }
            let mut state = peer.state.lock();
            if state.initiate_on_tick && state.session_up {
                // The peer was quicker: its handshake already opened a session.
                state.initiate_on_tick = false;
            }
            if state.initiate_on_tick && send_path(&state).is_some() {
                state.initiate_on_tick = false;
                if let TunnResult::WriteToNetwork(p) =
                    state.tunn.format_handshake_initiation(tx.room(), false)
                {
                    let len = p.len();
                    self.commit_datagram(peer, &mut state, len, now, tx);
                }
            }
            self.start_requested_rekey(peer, &mut state, now, tx);
            match state.tunn.update_timers(tx.room()) {
                TunnResult::WriteToNetwork(p) => {
                    let len = p.len();
                    self.commit_datagram(peer, &mut state, len, now, tx);
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    state.handshake_pending_since = None;
                    if state.session_up {
                        state.session_up = false;
                        tracing::info!(peer = %peer.name, "tunnel down: no handshake, session expired");
                    }
                }
                _ => {}
            }
            if let Some(since) = state.handshake_pending_since
                && now.saturating_duration_since(since) >= HANDSHAKE_TIMEOUT
            {
                state.path.on_handshake_timeout(now);
                state.handshake_pending_since = Some(now);
            }
            self.flush_queue(peer, &mut state, now, tx);
        }
        // The shared limiter resets itself at most once a second, on its own clock.
        self.rate_limiter.reset_count();
        self.poll_paths(now, tx);
    }

    /// A copy of the counters.
    pub fn stats(&self) -> DataplaneStats {
        let snap = self.snapshot();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let peers = snap
            .table
            .peers
            .iter()
            .map(|peer| {
                let state = peer.state.lock();
                let c = &peer.counters;
                PeerStats {
                    name: peer.name.clone(),
                    public_key: peer.public_key,
                    endpoint: send_path(&state).map(|p| p.remote),
                    local_address: send_path(&state).and_then(|p| p.local),
                    last_received: state.last_received,
                    probing: state.prober.probing_supported(),
                    paths: state.prober.path_stats(),
                    last_switch: state.prober.last_switch().cloned(),
                    path_switches: load(&c.path_switches),
                    rx_bytes: load(&c.rx_bytes),
                    rx_packets: load(&c.rx_packets),
                    tx_bytes: load(&c.tx_bytes),
                    tx_packets: load(&c.tx_packets),
                    transit_packets: load(&c.transit_packets),
                    relay: state
                        .relay
                        .active()
                        .filter(|_| peer.relay)
                        .and_then(|slot| snap.table.by_slot(slot))
                        .map(|relay| relay.name.clone()),
                    relay_reason: state.relay.active_reason().filter(|_| peer.relay),
                    relayed_packets: load(&c.relayed_packets),
                    handshakes: load(&c.handshakes),
                    last_handshake: state.tunn.time_since_last_handshake(),
                    rtt: state.rtt,
                }
            })
            .collect();
        DataplaneStats {
            peers,
            drops: self.drops.snapshot(),
        }
    }

    /// Counts a drop.
    pub fn drop(&self, reason: DropReason) {
        self.drops.count(reason);
    }
}

/// Authenticated traffic came by `path`: the peer is there, and any handshake is answered.
fn authenticated(state: &mut PeerState, path: Path, now: Instant) {
    state.path.on_authenticated(path.remote, now);
    state
        .prober
        .authenticated_from(path.remote, path.local, now);
    state.last_received = Some(now);
    state.handshake_pending_since = None;
}

/// The session index at bytes 4..8 (little endian): in a handshake response the responder's
/// (sender) index, in a data message the receiver's, which is the same number for the session
/// the response opened.
fn session_index(message: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = message.get(4..8)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// An authenticated data message: if it is the first on the session our latest response
/// opened (its receiver index is the one we gave), the time since that response is the
/// round trip. Messages of the previous session, still in flight, are not mistaken for it.
fn first_data_after_response(state: &mut PeerState, datagram: &[u8], now: Instant) {
    let Some((sent, index)) = state.response_sent_at else {
        return;
    };
    if session_index(datagram) == Some(index) {
        state.response_sent_at = None;
        state.rtt = Some(now.saturating_duration_since(sent));
    }
}

/// A free peer index: not used by the old table nor by peers created in this update.
fn allocate_slot(next: &mut u32, old: &PeerTable, new: &[TableEntry<'_>]) -> u32 {
    loop {
        let slot = *next;
        *next = if *next >= MAX_SLOT { 1 } else { *next + 1 };
        let taken =
            old.peers.iter().any(|p| p.slot == slot) || new.iter().any(|(p, _, _)| p.slot == slot);
        if !taken {
            return slot;
        }
    }
}

fn drop_reason(e: &WireGuardError) -> DropReason {
    match e {
        WireGuardError::InvalidPacket
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::WrongPacketType => DropReason::Malformed,
        WireGuardError::InvalidMac => DropReason::InvalidMac,
        WireGuardError::WrongIndex => DropReason::UnknownPeer,
        WireGuardError::InvalidAeadTag => DropReason::DecryptFailed,
        WireGuardError::InvalidCounter | WireGuardError::DuplicateCounter => DropReason::Replay,
        WireGuardError::NoCurrentSession => DropReason::NoSession,
        WireGuardError::UnderLoad => DropReason::UnderLoad,
        WireGuardError::ConnectionExpired => DropReason::Expired,
        WireGuardError::WrongKey
        | WireGuardError::InvalidTai64nTimestamp
        | WireGuardError::WrongTai64nTimestamp
        | WireGuardError::UnexpectedPacket => DropReason::HandshakeRejected,
        WireGuardError::DestinationBufferTooSmall | WireGuardError::LockFailed => {
            DropReason::NoBuffer
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_paths_tests.rs"]
mod paths_tests;

#[cfg(test)]
#[path = "core_relay_tests.rs"]
mod relay_tests;
