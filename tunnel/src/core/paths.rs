//! The path side of the data plane core: which path each peer's datagrams take and how
//! it is found. The probe and reach messages that arrive (answered, or fed to the prober and
//! the relay choice), the polls that send probes and reach queries and switch paths or
//! relays, the path policy and local uplinks they work from, and [`send_path`], where a
//! datagram goes. The decisions themselves are in [`crate::path`]; this is the wiring
//! between them and the peers' tunnels.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;

use super::{DataplaneCore, MIN_TX_ROOM, Snapshot};
use crate::path::probe::{self, Probe, ProbeError, ProbeKey, ProbeKind, SenderId};
use crate::path::reach::{self, REACH_LEN, Reach, ReachKind};
use crate::path::{
    LocalUplink, Path, PathAction, PathPolicy, PathProber, PathState, RelayAction, RelayCandidate,
    candidates,
};
use crate::peer::{Peer, PeerState};
use crate::stats::{DropReason, PeerCounters};
use crate::tx::TxBatch;

/// Probe requests answered per peer and second. A peer hunting for a path probes each of at
/// most 16 paths every 100 ms; more than that is a replay and gets no answer.
const PROBE_REPLIES_PER_SECOND: u32 = 200;

impl DataplaneCore {
    /// How paths are ranked and probed from now on (`[paths]` in the config): every peer's
    /// candidates are ranked again at the next poll; a peer whose probe timers changed starts
    /// probing afresh with them.
    pub fn set_path_policy(&self, policy: Arc<dyn PathPolicy>) {
        *self.policy.write() = policy.clone();
        for peer in self.snapshot().peers() {
            let mut state = peer.state.lock();
            let config = policy.prober_config(&peer.name);
            if *state.prober.config() != config {
                state.prober = PathProber::new(config, rand::random());
            }
            state.candidates_stale = true;
        }
    }

    /// Our usable local uplink addresses changed (the shell follows rtnetlink): paths from
    /// an address that went away are down at once, paths from a new one become candidates
    /// and are probed at once. `locals` is in order of preference, primary uplink first.
    pub fn set_local_addresses(&self, locals: Vec<LocalUplink>, now: Instant) {
        let old = std::mem::replace(&mut *self.locals.write(), locals.clone());
        if old == locals {
            return;
        }
        let addresses = |l: &[LocalUplink]| l.iter().map(|u| u.address).collect::<Vec<_>>();
        let (old, new) = (addresses(&old), addresses(&locals));
        let policy = self.policy.read().clone();
        let snap = self.snapshot();
        for peer in snap.peers() {
            let mut state = peer.state.lock();
            for gone in old.iter().filter(|ip| !new.contains(ip)) {
                state.prober.local_address_down(*gone, now);
            }
            for added in new.iter().filter(|ip| !old.contains(ip)) {
                state.prober.local_address_up(*added, now);
            }
            let candidates =
                candidates::candidates(&peer.name, &state.endpoints, &locals, &*policy);
            state.prober.set_candidates(candidates, now);
            state.candidates_stale = false;
        }
    }

    /// A probe request or reply (0x50/0x51). Requests from a peer are answered, from the
    /// address they were sent to, with a reply of the same size; anything that does not
    /// authenticate is dropped without an answer.
    pub(super) fn handle_probe(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        let Some((peer, received)) = self.authenticate(snap, datagram, probe::peek, probe::decode)
        else {
            return;
        };
        let mut state = peer.state.lock();
        match received.kind {
            ProbeKind::Request => {
                if !reply_allowed(&mut state, now) {
                    return self.drop(DropReason::UnderLoad);
                }
                let reply = received.reply(self.probe_id).encode(&peer.probe_key);
                if !self.send_sealed(tx, &reply, from, local) {
                    return;
                }
                state.last_received = Some(now);
                state.prober.authenticated_from(from, local, now);
                // The peer is there and we have no session with it: we restarted (it still
                // sends on a session we forgot) or the session expired. Handshake now, on
                // the path it probes by, instead of waiting for its handshake timeout.
                if !state.session_up {
                    self.initiate_on(
                        &mut state,
                        Path {
                            local,
                            remote: from,
                        },
                        now,
                        tx,
                    );
                }
            }
            ProbeKind::Reply => {
                if state
                    .prober
                    .probe_reply(received.path_id, received.seq, now)
                {
                    state.last_received = Some(now);
                }
            }
        }
    }

    /// A reach query or answer (0x54/0x55) from another core. A query is answered with
    /// our smoothed RTT to the core it asks about (our direct path, never a relay: relayed
    /// traffic is not relayed again), from the address it was sent to and at the same size;
    /// an answer feeds the relay choice for that core.
    pub(super) fn handle_reach(
        &self,
        snap: &Snapshot,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<IpAddr>,
        now: Instant,
        tx: &mut TxBatch,
    ) {
        let Some((asker, received)) = self.authenticate(snap, datagram, reach::peek, reach::decode)
        else {
            return;
        };
        let target = snap
            .table
            .by_probe_id(&received.target)
            .map(|(_, t)| t)
            .filter(|t| asker.relay && t.relay && t.slot != asker.slot);
        match received.kind {
            ReachKind::Query => {
                {
                    let mut state = asker.state.lock();
                    if !reply_allowed(&mut state, now) {
                        return self.drop(DropReason::UnderLoad);
                    }
                    state.last_received = Some(now);
                }
                let rtt = target.and_then(|t| t.state.lock().prober.active_up_srtt());
                let answer = received.answer(self.probe_id, rtt).encode(&asker.probe_key);
                self.send_sealed(tx, &answer, from, local);
            }
            ReachKind::Answer => {
                let Some(target) = target else {
                    return self.drop(DropReason::UnknownPeer);
                };
                let taken =
                    target
                        .state
                        .lock()
                        .relay
                        .answer(asker.slot, received.seq, received.rtt, now);
                if taken {
                    asker.state.lock().last_received = Some(now);
                }
            }
        }
    }

    /// A probe or reach message (read with that module's `peek` and `decode`) and the peer
    /// that sent it, authenticated with that peer's key; `None`, the drop counted, if it is
    /// malformed, from no peer of ours, or does not verify.
    fn authenticate<'s, K, M>(
        &self,
        snap: &'s Snapshot,
        datagram: &[u8],
        peek: Peek<K>,
        decode: fn(&[u8], &ProbeKey) -> Result<M, ProbeError>,
    ) -> Option<(&'s Arc<Peer>, M)> {
        let Ok((_, sender)) = peek(datagram) else {
            self.drop(DropReason::Malformed);
            return None;
        };
        let Some((_, peer)) = snap.table.by_probe_id(&sender) else {
            self.drop(DropReason::UnknownPeer);
            return None;
        };
        let Ok(message) = decode(datagram, &peer.probe_key) else {
            self.drop(DropReason::InvalidMac);
            return None;
        };
        Some((peer, message))
    }

    /// Puts a sealed probe or reach message into `tx`, to `remote` from `local`; false, the
    /// drop counted, when `tx` has no room for it.
    fn send_sealed(
        &self,
        tx: &mut TxBatch,
        message: &[u8],
        remote: SocketAddr,
        local: Option<IpAddr>,
    ) -> bool {
        let len = message.len();
        if tx.remaining() < len {
            self.drop(DropReason::NoBuffer);
            return false;
        }
        tx.room()[..len].copy_from_slice(message);
        tx.commit_from(len, remote, local);
        true
    }

    /// Sends a handshake initiation to the peer on `path` (none if one is already under
    /// way: boringtun sends at most one per rekey timeout unless forced).
    fn initiate_on(&self, state: &mut PeerState, path: Path, now: Instant, tx: &mut TxBatch) {
        if tx.remaining() < MIN_TX_ROOM {
            return self.drop(DropReason::NoBuffer);
        }
        if let TunnResult::WriteToNetwork(p) =
            state.tunn.format_handshake_initiation(tx.room(), false)
        {
            let len = p.len();
            state.handshake_pending_since.get_or_insert(now);
            state.initiation_sent_at = Some(now);
            tx.commit_from(len, path.remote, path.local);
        }
    }

    /// Runs the path probers: probes due, lost probes, switches. Cheap enough to call at
    /// every [`Self::next_path_deadline`] (it is also part of [`Self::tick`]).
    pub fn poll_paths(&self, now: Instant, tx: &mut TxBatch) {
        let snap = self.snapshot();
        let epoch = *self.epoch.lock().get_or_insert(now);
        let locals = self.locals.read().clone();
        let policy = self.policy.read().clone();
        let mut actions = Vec::new();
        for peer in snap.peers() {
            if tx.remaining() < MIN_TX_ROOM + usize::from(u16::MAX) {
                break; // the rest get their turn at the next poll
            }
            let mut state = peer.state.lock();
            if state.candidates_stale {
                state.candidates_stale = false;
                let candidates =
                    candidates::candidates(&peer.name, &state.endpoints, &locals, &*policy);
                state.prober.set_candidates(candidates, now);
            }
            let session_up = state.session_up;
            state.prober.set_session_up(session_up, now);
            actions.clear();
            state.prober.poll_into(now, &mut actions);
            for action in actions.drain(..) {
                match action {
                    PathAction::SendProbe { path, path_id, seq } => {
                        let micros = now.saturating_duration_since(epoch).as_micros();
                        let timestamp = u64::try_from(micros).unwrap_or(u64::MAX);
                        let request = Probe::request(self.probe_id, seq, timestamp, path_id)
                            .encode(&peer.probe_key);
                        self.send_sealed(tx, &request, path.remote, path.local);
                    }
                    PathAction::Switched { from, to, reason } => {
                        PeerCounters::add(&peer.counters.path_switches, 1);
                        let show =
                            |p: Option<Path>| p.map_or("none".to_string(), |p| p.to_string());
                        tracing::info!(
                            peer = %peer.name,
                            from = %show(from),
                            to = %show(to),
                            %reason,
                            "path switch"
                        );
                    }
                    PathAction::Resolve => state.resolve_wanted = true,
                }
            }
        }
        self.poll_relays(&snap, now, tx);
    }

    /// Runs the relay choice of every core peer: who could relay (cores whose active path
    /// is up, with our RTT to them), reach queries due, relay switches. One peer lock at a
    /// time: the candidates are read first, then each target is decided on its own.
    fn poll_relays(&self, snap: &Snapshot, now: Instant, tx: &mut TxBatch) {
        let cores: Vec<(&Arc<Peer>, Option<UsablePath>)> = snap
            .peers()
            .iter()
            .filter(|peer| peer.relay)
            .map(|peer| {
                let state = peer.state.lock();
                let usable = state
                    .prober
                    .active_up_srtt()
                    .zip(state.prober.active_path());
                (peer, usable)
            })
            .collect();
        if cores.len() < 2 {
            return;
        }
        let mut candidates = Vec::with_capacity(cores.len());
        let mut actions = Vec::new();
        for (target, direct) in &cores {
            if tx.remaining() < REACH_LEN * cores.len() + MIN_TX_ROOM + usize::from(u16::MAX) {
                break; // the rest get their turn at the next poll
            }
            candidates.clear();
            candidates.extend(
                cores
                    .iter()
                    .filter(|(c, _)| c.slot != target.slot)
                    .filter_map(|(c, usable)| {
                        usable.map(|(rtt, _)| RelayCandidate { relay: c.slot, rtt })
                    }),
            );
            actions.clear();
            {
                let mut state = target.state.lock();
                // Until some direct path has been tried to the end, there is nothing to
                // replace: a peer still being reached for the first time is not relayed.
                let direct = match direct {
                    Some((rtt, _)) => Some(*rtt),
                    None if state.prober.all_down() => None,
                    None => continue,
                };
                state.relay.poll(now, direct, &candidates, &mut actions);
                let via = state.relay.active().unwrap_or(0);
                target.relay_via.store(via, Ordering::Relaxed);
            }
            for action in actions.drain(..) {
                match action {
                    RelayAction::Query { relay, seq } => {
                        let Some((relay, Some((_, path)))) =
                            cores.iter().find(|(c, _)| c.slot == relay)
                        else {
                            continue;
                        };
                        let query = Reach::query(self.probe_id, seq, target.probe_id)
                            .encode(&relay.probe_key);
                        self.send_sealed(tx, &query, path.remote, path.local);
                    }
                    RelayAction::Switched { from, to, reason } => {
                        PeerCounters::add(&target.counters.path_switches, 1);
                        let name = |slot: Option<u32>| {
                            slot.and_then(|s| snap.table.by_slot(s))
                                .map_or("direct".to_string(), |p| format!("via {}", p.name))
                        };
                        tracing::info!(
                            peer = %target.name,
                            from = %name(from),
                            to = %name(to),
                            %reason,
                            "relay switch"
                        );
                    }
                }
            }
        }
    }

    /// When [`Self::poll_paths`] has something to do next (`None`: nothing until an event).
    pub fn next_path_deadline(&self) -> Option<Instant> {
        let snap = self.snapshot();
        snap.peers()
            .iter()
            // A peer whose candidates are not applied yet has no deadline: the next tick
            // applies them (the core reads no clock of its own).
            .filter_map(|peer| {
                let state = peer.state.lock();
                let relay = peer.relay.then(|| state.relay.next_deadline()).flatten();
                [state.prober.next_deadline(), relay]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    /// Names of the peers whose paths all failed since the last call: the shell asks DNS
    /// for their endpoint names again.
    pub fn take_resolve_requests(&self) -> Vec<String> {
        let snap = self.snapshot();
        snap.peers()
            .iter()
            .filter(|peer| std::mem::take(&mut peer.state.lock().resolve_wanted))
            .map(|peer| peer.name.clone())
            .collect()
    }
}

/// `probe::peek` or `reach::peek`: a message's kind and sender, before its MAC is checked.
type Peek<K> = fn(&[u8]) -> Result<(K, SenderId), ProbeError>;

/// A peer's active path while it is up, with its smoothed RTT.
type UsablePath = (Duration, Path);

/// The path the peer's datagrams go on: the prober's choice while the peer answers probes
/// and that path is not known to be dead; else the handshake-timeout selector's endpoint.
/// So a peer whose every path is down (all probes lost, or it is not meshd and its session
/// is not up yet) is still reached by rotating through its endpoints, as without probes.
pub(super) fn send_path(state: &PeerState) -> Option<Path> {
    if state.prober.probing_supported()
        && state.prober.active_state() != Some(PathState::Down)
        && let Some(path) = state.prober.active_path()
    {
        return Some(path);
    }
    state.path.current().map(|remote| Path {
        local: None,
        remote,
    })
}

/// Whether one more probe reply fits this peer's budget for the current second.
fn reply_allowed(state: &mut PeerState, now: Instant) -> bool {
    let (since, sent) = state.probe_replies.get_or_insert((now, 0));
    if now.saturating_duration_since(*since) >= std::time::Duration::from_secs(1) {
        *since = now;
        *sent = 0;
    }
    *sent += 1;
    *sent <= PROBE_REPLIES_PER_SECOND
}
