//! Counters of the data plane: per peer traffic and handshakes, and drops by reason.
//!
//! Counters are relaxed atomics bumped on the packet path; [`DataplaneStats`] is a copy
//! taken for `meshd status`/`peers`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A UDP datagram that is not a WireGuard message (wrong type or length).
    Malformed,
    /// A message for a receiver index or from a key we have no peer for.
    UnknownPeer,
    /// A handshake message whose MAC1 does not check out (not meant for our key).
    InvalidMac,
    /// A handshake we could not complete (wrong key, stale timestamp, unexpected message).
    HandshakeRejected,
    /// A data message that failed authentication.
    DecryptFailed,
    /// A data message whose counter was already seen or is too old (replay).
    Replay,
    /// A data message for a session we no longer (or not yet) have.
    NoSession,
    /// A handshake refused because we are under load (a cookie reply was sent instead).
    UnderLoad,
    /// A handshake message from a source address over its per-source rate (a flood from
    /// one address costs a lookup, no MAC check and no reply).
    RateLimited,
    /// A decrypted packet whose source address the sending peer may not use.
    SpoofedSource,
    /// A decrypted packet that is not a valid IP packet.
    InvalidInnerPacket,
    /// A packet for an address that routes to no peer.
    NoRoute,
    /// A packet for a peer we know no endpoint of.
    NoEndpoint,
    /// Internet traffic from a source pinned to exits that fails closed, while none of
    /// its exits is reachable (`crate::exit_source`).
    NoExit,
    /// A packet that did not fit the batch buffers (should not happen; a bug if it counts).
    NoBuffer,
    /// The session with the peer expired and could not be renewed.
    Expired,
    /// Sending the datagram failed (no socket for the address family, or a socket error).
    SendFailed,
    /// A handshake message that found the handshake queue full (many sources flooding at
    /// once): dropped so that the data of established sessions is never held up behind it.
    HandshakeQueueFull,
}

impl DropReason {
    /// Every reason, in display order.
    pub const ALL: [DropReason; 18] = [
        DropReason::Malformed,
        DropReason::UnknownPeer,
        DropReason::InvalidMac,
        DropReason::HandshakeRejected,
        DropReason::DecryptFailed,
        DropReason::Replay,
        DropReason::NoSession,
        DropReason::UnderLoad,
        DropReason::RateLimited,
        DropReason::SpoofedSource,
        DropReason::InvalidInnerPacket,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::NoExit,
        DropReason::NoBuffer,
        DropReason::Expired,
        DropReason::SendFailed,
        DropReason::HandshakeQueueFull,
    ];

    /// A stable snake_case name for JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::InvalidMac => "invalid_mac",
            DropReason::HandshakeRejected => "handshake_rejected",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::Replay => "replay",
            DropReason::NoSession => "no_session",
            DropReason::UnderLoad => "under_load",
            DropReason::RateLimited => "rate_limited",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::InvalidInnerPacket => "invalid_inner_packet",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::NoExit => "no_exit",
            DropReason::NoBuffer => "no_buffer",
            DropReason::Expired => "expired",
            DropReason::SendFailed => "send_failed",
            DropReason::HandshakeQueueFull => "handshake_queue_full",
        }
    }
}

/// Drop counters, one per reason.
#[derive(Debug, Default)]
pub(crate) struct DropCounters([AtomicU64; DropReason::ALL.len()]);

impl DropCounters {
    pub(crate) fn count(&self, reason: DropReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DropCounts {
        DropCounts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// A copy of the drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    /// Packets dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Packets dropped for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Per peer counters, bumped on the packet path.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) rx_bytes: AtomicU64,
    pub(crate) rx_packets: AtomicU64,
    pub(crate) tx_bytes: AtomicU64,
    pub(crate) tx_packets: AtomicU64,
    pub(crate) handshakes: AtomicU64,
    pub(crate) transit_packets: AtomicU64,
    pub(crate) path_switches: AtomicU64,
    /// Packets for this peer sent through a relay core instead.
    pub(crate) relayed_packets: AtomicU64,
}

impl PeerCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

use crate::path::{PathStats, SwitchReason};

/// Statistics of one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub name: String,
    pub public_key: [u8; 32],
    /// The remote end of the path packets go on now.
    pub endpoint: Option<SocketAddr>,
    /// The local address they leave from (`None`: the kernel chooses).
    pub local_address: Option<IpAddr>,
    /// When the last authenticated packet of any kind (data, keepalive, handshake, probe)
    /// came from the peer, on the clock the shell passes in as `now`; `None`: none ever did.
    pub last_received: Option<Instant>,
    /// Whether the peer answers path probes (meshd does; wireguard-go does not, and its
    /// path is then chosen by handshake timeouts).
    pub probing: bool,
    /// Every candidate path with its state and measurements (the active one marked).
    pub paths: Vec<PathStats>,
    /// When traffic last moved to another path, and why.
    pub last_switch: Option<(Instant, SwitchReason)>,
    /// How often traffic moved to another path.
    pub path_switches: u64,
    /// Inner (decrypted) bytes and packets received from the peer.
    pub rx_bytes: u64,
    pub rx_packets: u64,
    /// Inner bytes and packets sent to the peer (transit included).
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Packets received from this peer and forwarded to another peer inside meshd.
    pub transit_packets: u64,
    /// The core our packets to this peer go through now (`None`: direct), and why.
    pub relay: Option<String>,
    pub relay_reason: Option<crate::path::RelayReason>,
    /// Packets for this peer sent through a relay core.
    pub relayed_packets: u64,
    /// Handshakes completed with the peer.
    pub handshakes: u64,
    /// Age of the current session, if there is one.
    pub last_handshake: Option<Duration>,
    /// Round-trip time of the current path, measured by the last completed handshake: as
    /// initiator from our initiation to its response, as responder from our response to the
    /// first data message on the session it opened (`None` until a handshake completed).
    pub rtt: Option<Duration>,
}

/// Statistics of the whole data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneStats {
    pub peers: Vec<PeerStats>,
    pub drops: DropCounts,
}

impl DataplaneStats {
    /// The statistics of the peer called `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerStats> {
        self.peers.iter().find(|p| p.name == name)
    }
}
