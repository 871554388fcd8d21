//! What the data plane needs to know: our key, our port, the TUN MTU and the peers.
//!
//! The daemon builds this from `meshd.toml`, the state directory and (later) the membership
//! records of the control plane; the data plane checks it for consistency before use.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::error::ConfigError;

/// Bytes WireGuard adds to an inner packet: 16 header + 16 tag (the outer IP/UDP headers come on top).
pub const WIREGUARD_OVERHEAD: usize = 32;
/// Smallest MTU we accept: IPv6 requires links of at least 1280 bytes.
pub const MIN_MTU: u16 = 1280;
/// Largest inner MTU that still fits one UDP datagram after encapsulation.
pub const MAX_MTU: u16 = 65535 - 40 - 8 - WIREGUARD_OVERHEAD as u16;

/// The whole configuration of one node's data plane.
#[derive(Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Our WireGuard private key (x25519).
    pub private_key: [u8; 32],
    /// UDP port for WireGuard, shared with the control plane's TCP port.
    pub listen_port: u16,
    /// Addresses to bind the UDP sockets to. Empty means the wildcard of both families
    /// (`0.0.0.0` and `[::]`), which is what the daemon uses; tests bind to `127.0.0.x`.
    pub bind_addresses: Vec<IpAddr>,
    /// MTU of the TUN device (inner packets); used to size buffers.
    pub mtu: u16,
    /// The peers we hold tunnels with.
    pub peers: Vec<PeerConfig>,
    /// The firewall mark (`SO_MARK`) put on the UDP sockets, so that policy rules can keep
    /// the tunnels' own packets out of routes that lead into the tunnels (`[exit] fwmark`
    /// while the node uses exits). `None`: unmarked.
    pub fwmark: Option<u32>,
}

/// One WireGuard peer: a core, a spoke or a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Node name, for logs and statistics.
    pub name: String,
    /// The peer's WireGuard public key (from its certificate).
    pub public_key: [u8; 32],
    /// Candidate remote endpoints, in order of preference. May be empty for a peer that
    /// always calls us (a spoke behind NAT): we then learn its address from its packets.
    pub endpoints: Vec<SocketAddr>,
    /// Prefixes the peer may use as source, and which we route to it (crypto-key routing).
    pub allowed_ips: Vec<IpNet>,
    /// Prefixes the peer carries as one of several equal-cost next hops (ECMP, a shared
    /// prefix announced by several members): the same prefix may be in several peers'
    /// `ecmp_ips`, never in anyone's `allowed_ips`. A packet to it goes to one of those
    /// peers, chosen by a hash of its flow ([`crate::ecmp`]); a packet from it is accepted
    /// from any of them. A prefix in one peer's `ecmp_ips` alone is routed like an allowed one.
    pub ecmp_ips: Vec<IpNet>,
    /// Send a keepalive this often even when idle (keeps NAT mappings open).
    pub persistent_keepalive: Option<Duration>,
    /// A core of the mesh, as we are: it may relay our traffic to another core, and we to
    /// it, when direct paths fail ([`crate::path::relay`]). False for spokes, clients and
    /// static peers.
    pub relay: bool,
}

// Hand-written so that the private key never lands in a log.
impl std::fmt::Debug for DataplaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneConfig")
            .field("private_key", &"<redacted>")
            .field("listen_port", &self.listen_port)
            .field("bind_addresses", &self.bind_addresses)
            .field("mtu", &self.mtu)
            .field("peers", &self.peers)
            .field("fwmark", &self.fwmark)
            .finish()
    }
}

impl DataplaneConfig {
    /// Checks the configuration; the error names the offending field and value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::new(format!(
                "mtu {} is outside {MIN_MTU}..={MAX_MTU}",
                self.mtu
            )));
        }
        validate_peers(&self.peers, &self.private_key)
    }
}

/// Checks a peer list on its own (also used by `DataplaneHandle::update_peers`).
pub(crate) fn validate_peers(
    peers: &[PeerConfig],
    private_key: &[u8; 32],
) -> Result<(), ConfigError> {
    let own_public =
        boringtun::x25519::PublicKey::from(&boringtun::x25519::StaticSecret::from(*private_key));
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut prefixes: Vec<(IpNet, &str)> = Vec::new();
    for peer in peers {
        if peer.name.is_empty() {
            return Err(ConfigError::new("a peer has an empty name"));
        }
        if !names.insert(peer.name.as_str()) {
            return Err(ConfigError::new(format!(
                "peer name {:?} appears twice",
                peer.name
            )));
        }
        if !keys.insert(peer.public_key) {
            return Err(ConfigError::new(format!(
                "peer {:?}: its public key is already used by another peer",
                peer.name
            )));
        }
        if peer.public_key == *own_public.as_bytes() {
            return Err(ConfigError::new(format!(
                "peer {:?}: its public key is our own",
                peer.name
            )));
        }
        if let Some(ka) = peer.persistent_keepalive
            && (ka.is_zero() || ka.as_secs() > u64::from(u16::MAX) || ka.subsec_nanos() != 0)
        {
            return Err(ConfigError::new(format!(
                "peer {:?}: persistent_keepalive {ka:?} must be whole seconds in 1..=65535",
                peer.name
            )));
        }
        for net in &peer.allowed_ips {
            if net.trunc() != *net {
                return Err(ConfigError::new(format!(
                    "peer {:?}: allowed prefix {net} has host bits set (did you mean {}?)",
                    peer.name,
                    net.trunc()
                )));
            }
            if let Some((_, other)) = prefixes.iter().find(|(p, _)| p == net) {
                return Err(ConfigError::new(format!(
                    "peers {other:?} and {:?} both claim prefix {net}",
                    peer.name
                )));
            }
            prefixes.push((*net, peer.name.as_str()));
        }
    }
    // Shared prefixes after every allowed one is known: they may repeat across peers, but
    // not within one, and never shadow (or be shadowed by) a peer's own prefix.
    for peer in peers {
        for (i, net) in peer.ecmp_ips.iter().enumerate() {
            if net.trunc() != *net {
                return Err(ConfigError::new(format!(
                    "peer {:?}: equal-cost prefix {net} has host bits set (did you mean {}?)",
                    peer.name,
                    net.trunc()
                )));
            }
            if peer.ecmp_ips[..i].contains(net) {
                return Err(ConfigError::new(format!(
                    "peer {:?}: equal-cost prefix {net} appears twice",
                    peer.name
                )));
            }
            if let Some((_, owner)) = prefixes.iter().find(|(p, _)| p == net) {
                return Err(ConfigError::new(format!(
                    "peer {:?} claims prefix {net}, which peer {:?} carries as an equal-cost \
                     next hop",
                    owner, peer.name
                )));
            }
        }
    }
    Ok(())
}
