//! A peer: its tunnel (boringtun `Tunn`), its path choice and its counters, and the table
//! that finds peers by receiver index, by key and by address.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use boringtun::noise::Tunn;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::Mutex;

use crate::config::PeerConfig;
use crate::ecmp;
use crate::path::probe::{self, ProbeKey, SenderId};
use crate::path::{PathProber, PathSelector, ProberConfig, RelayChooser, RelayConfig};
use crate::routing::CryptoRouter;
use crate::stats::PeerCounters;

/// Number of bits boringtun keeps below the peer index in a receiver index (the rest
/// numbers the sessions of that peer).
const SESSION_BITS: u32 = 8;
/// Peer indexes are 24 bits.
pub(crate) const MAX_SLOT: u32 = (1 << (32 - SESSION_BITS)) - 1;

/// The peer index boringtun embedded in a receiver index.
pub(crate) fn slot_of_receiver_index(receiver_index: u32) -> u32 {
    receiver_index >> SESSION_BITS
}

/// The mutable part of a peer, behind one short-held lock.
pub(crate) struct PeerState {
    pub(crate) tunn: Tunn,
    /// The endpoint choice without probes, for peers that do not answer them (wireguard-go,
    /// static `[[peer]]`s) and while the prober has no path at all.
    pub(crate) path: PathSelector,
    /// Probes every local x remote path and chooses the one traffic takes.
    pub(crate) prober: PathProber,
    /// For a core: whether its traffic goes through another core instead (no direct path
    /// works, or a much faster one through a relay).
    pub(crate) relay: RelayChooser,
    /// When authenticated traffic of any kind (data, keepalive, handshake, probe) last came
    /// from the peer: what "up" in `meshd peers` is judged by.
    pub(crate) last_received: Option<Instant>,
    /// Probe replies sent in the current second, and when that second began: replies are
    /// limited per peer so that replayed requests cannot make us send without bound.
    pub(crate) probe_replies: Option<(Instant, u32)>,
    /// The peer's configured endpoints, and whether the prober still has to be told of
    /// them (set by a peer update, applied at the next poll, which brings `now`).
    pub(crate) endpoints: Vec<std::net::SocketAddr>,
    pub(crate) candidates_stale: bool,
    /// The prober asked to resolve the peer's endpoint names again (no path works).
    pub(crate) resolve_wanted: bool,
    /// When we sent the first unanswered handshake initiation on the current path.
    pub(crate) handshake_pending_since: Option<Instant>,
    /// When we sent our latest handshake initiation (retransmissions included), until its
    /// response arrives: the response gives the path's round-trip time.
    pub(crate) initiation_sent_at: Option<Instant>,
    /// When we answered the peer's latest initiation, and the session index our response
    /// gave it: the first data message for that index (the initiator's keepalive, sent as soon
    /// as it has our response) gives the path's round-trip time on the responder's side too.
    pub(crate) response_sent_at: Option<(Instant, u32)>,
    /// The round-trip time the last completed handshake measured (as initiator or responder).
    pub(crate) rtt: Option<std::time::Duration>,
    /// A peer with a persistent keepalive (typically a spoke's core, or a core behind NAT)
    /// should be reachable from the first moment, not after its first keepalive interval:
    /// the next tick starts a handshake on its own.
    pub(crate) initiate_on_tick: bool,
    /// An operator asked for a new handshake now (`meshd rekey`): the next tick sends it.
    pub(crate) rekey_requested: bool,
    /// Whether a session is established, so that "tunnel up" and "tunnel down" are logged
    /// once per change and not at every rekey.
    pub(crate) session_up: bool,
}

/// One peer.
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) public_key: [u8; 32],
    /// The peer's probe sender id, and the probe MAC key only it and we can compute.
    pub(crate) probe_id: SenderId,
    pub(crate) probe_key: ProbeKey,
    pub(crate) slot: u32,
    pub(crate) persistent_keepalive: Option<std::time::Duration>,
    /// A core that may relay for us and be relayed to (see `PeerConfig::relay`).
    pub(crate) relay: bool,
    /// The slot of the core our packets to this peer go through now, 0 for direct. Read on
    /// every packet without the state lock; written by the relay choice.
    pub(crate) relay_via: AtomicU32,
    pub(crate) state: Mutex<PeerState>,
    pub(crate) counters: PeerCounters,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("slot", &self.slot)
            .finish()
    }
}

impl Peer {
    pub(crate) fn new(
        config: &PeerConfig,
        slot: u32,
        private_key: &StaticSecret,
        rate_limiter: &Arc<RateLimiter>,
        prober: ProberConfig,
    ) -> Self {
        let peer_public = PublicKey::from(config.public_key);
        let shared = private_key.diffie_hellman(&peer_public);
        let keepalive = config
            .persistent_keepalive
            .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX));
        let tunn = Tunn::new(
            private_key.clone(),
            peer_public,
            None,
            keepalive,
            slot,
            Some(rate_limiter.clone()),
        );
        Peer {
            name: config.name.clone(),
            public_key: config.public_key,
            probe_id: probe::sender_id(&config.public_key),
            probe_key: ProbeKey::from_shared_secret(shared.as_bytes()),
            slot,
            persistent_keepalive: config.persistent_keepalive,
            relay: config.relay,
            relay_via: AtomicU32::new(0),
            state: Mutex::new(PeerState {
                tunn,
                path: PathSelector::new(config.endpoints.clone()),
                // Sequence numbers start at random so that replies to an earlier run of
                // this node are not taken for answers to this one.
                prober: PathProber::new(prober, rand::random()),
                relay: RelayChooser::new(RelayConfig::default(), rand::random()),
                last_received: None,
                probe_replies: None,
                endpoints: config.endpoints.clone(),
                candidates_stale: true,
                resolve_wanted: false,
                handshake_pending_since: None,
                initiation_sent_at: None,
                response_sent_at: None,
                rtt: None,
                // Only keepalive peers: dialling every peer with an endpoint made two nodes
                // that start together cross initiations and measure the handshake RTT from
                // an initiation the other side never saw (1 s in netns_meshd). A peer that
                // still probes us on a forgotten session gets a handshake anyway
                // (core/paths.rs).
                initiate_on_tick: config.persistent_keepalive.is_some(),
                rekey_requested: false,
                session_up: false,
            }),
            counters: PeerCounters::default(),
        }
    }
}

/// Where a prefix routes to: one peer (its position in the table), or an equal-cost group
/// of peers (a position in [`PeerTable::groups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Peer(usize),
    Group(usize),
}

/// The peers that carry one shared prefix at equal cost, with their ECMP seeds.
#[derive(Debug)]
pub(crate) struct Group {
    /// Positions in the peer table, in table order.
    members: Box<[usize]>,
    /// `ecmp::member_seed` of each member's key, in the same order.
    seeds: Box<[u64]>,
}

/// An immutable snapshot of all peers; replaced as a whole when the peer set changes, so
/// the packet path reads it without locks.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    pub(crate) peers: Vec<Arc<Peer>>,
    by_slot: HashMap<u32, usize>,
    by_key: HashMap<[u8; 32], usize>,
    by_probe_id: HashMap<SenderId, usize>,
    router: CryptoRouter<Target>,
    groups: Vec<Group>,
    /// `0..peers.len()`: what [`Self::members`] hands out, one position long, for a target
    /// that is a single peer.
    positions: Box<[usize]>,
}

/// One peer for [`PeerTable::new`]: the peer, the prefixes it alone carries, and those it
/// carries as one of an equal-cost group.
pub(crate) type TableEntry<'a> = (Arc<Peer>, &'a [ipnet::IpNet], &'a [ipnet::IpNet]);

impl PeerTable {
    /// A table of `peers`, each with the prefixes it may use and that route to it.
    pub(crate) fn new(peers: Vec<TableEntry<'_>>) -> Self {
        let mut table = PeerTable {
            by_slot: HashMap::with_capacity(peers.len()),
            by_key: HashMap::with_capacity(peers.len()),
            by_probe_id: HashMap::with_capacity(peers.len()),
            router: CryptoRouter::new(),
            peers: Vec::new(),
            groups: Vec::new(),
            positions: (0..peers.len()).collect(),
        };
        let mut shared: BTreeMap<ipnet::IpNet, Vec<usize>> = BTreeMap::new();
        for (i, (peer, allowed, ecmp)) in peers.into_iter().enumerate() {
            table.by_slot.insert(peer.slot, i);
            table.by_key.insert(peer.public_key, i);
            table.by_probe_id.insert(peer.probe_id, i);
            for net in allowed {
                table.router.insert(*net, Target::Peer(i));
            }
            for net in ecmp {
                shared.entry(net.trunc()).or_default().push(i);
            }
            table.peers.push(peer);
        }
        for (net, members) in shared {
            let target = match members[..] {
                [only] => Target::Peer(only),
                _ => {
                    let seeds = members
                        .iter()
                        .map(|&m| ecmp::member_seed(&table.peers[m].public_key))
                        .collect();
                    table.groups.push(Group {
                        members: members.into_boxed_slice(),
                        seeds,
                    });
                    Target::Group(table.groups.len() - 1)
                }
            };
            table.router.insert(net, target);
        }
        table
    }

    /// O(1): the peer whose tunnel owns `receiver_index`.
    pub(crate) fn by_receiver_index(&self, receiver_index: u32) -> Option<(usize, &Arc<Peer>)> {
        let i = *self.by_slot.get(&slot_of_receiver_index(receiver_index))?;
        Some((i, &self.peers[i]))
    }

    /// The position of the peer with this slot.
    pub(crate) fn position_of_slot(&self, slot: u32) -> Option<usize> {
        self.by_slot.get(&slot).copied()
    }

    /// The peer with this slot (peer index).
    pub(crate) fn by_slot(&self, slot: u32) -> Option<&Arc<Peer>> {
        Some(&self.peers[*self.by_slot.get(&slot)?])
    }

    pub(crate) fn by_key(&self, key: &[u8; 32]) -> Option<(usize, &Arc<Peer>)> {
        let i = *self.by_key.get(key)?;
        Some((i, &self.peers[i]))
    }

    /// The peer whose probes carry this sender id.
    pub(crate) fn by_probe_id(&self, id: &SenderId) -> Option<(usize, &Arc<Peer>)> {
        let i = *self.by_probe_id.get(id)?;
        Some((i, &self.peers[i]))
    }

    /// Crypto-key routing: where a packet to `addr` goes (a peer, or a group to choose in).
    pub(crate) fn route(&self, addr: std::net::IpAddr) -> Option<Target> {
        self.router.lookup(addr)
    }

    /// The same, with the length of the matching prefix.
    pub(crate) fn route_with_len(&self, addr: std::net::IpAddr) -> Option<(Target, u8)> {
        self.router.lookup_with_len(addr)
    }

    /// The peer a packet goes to: the target's peer, or the member of its group that the
    /// packet's flow hashes to ([`ecmp`]). No allocation.
    pub(crate) fn resolve(&self, target: Target, packet: &[u8]) -> usize {
        match target {
            Target::Peer(i) => i,
            Target::Group(g) => {
                let group = &self.groups[g];
                group.members[ecmp::choose(ecmp::flow_hash(packet), &group.seeds)]
            }
        }
    }

    /// The peers a target stands for: one, or every member of its group.
    pub(crate) fn members(&self, target: Target) -> &[usize] {
        match target {
            Target::Peer(i) => &self.positions[i..=i],
            Target::Group(g) => &self.groups[g].members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_index_maps_to_slot() {
        assert_eq!(slot_of_receiver_index(0x0012_3456), 0x1234);
        assert_eq!(slot_of_receiver_index(u32::MAX), MAX_SLOT);
    }
}
