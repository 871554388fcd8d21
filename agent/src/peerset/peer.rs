//! The peers the peer set hands to the data plane, what each is to this node, and what the
//! peer set needs from the data plane it drives.

use mesh_config::Role;

use crate::dataplane::{DataplaneError, DataplaneHandle, DataplaneStats, PeerConfig, RekeyRequest};

/// What a peer is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Another meshd node; its role when known (from the CA database on the CA holder).
    Node(Option<Role>),
    /// An end-user device added with `meshd client add`.
    Client,
    /// A foreign router this core stands in for (`meshd router add`): a spoke that runs no
    /// meshd.
    Router,
}

/// A peer the data plane was configured with, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    pub config: PeerConfig,
    pub kind: PeerKind,
}

/// What the peer set (and the API and metrics reading through it) needs from the data plane:
/// the daemon's [`DataplaneHandle`], or a fake in tests.
pub trait DataplaneControl {
    fn stats(&self) -> DataplaneStats;
    fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), DataplaneError>;
    /// The prefixes this node handles itself (its kernel's), never passed on to a peer.
    fn set_own_prefixes(&self, prefixes: &[ipnet::IpNet]);
    /// Starts a new handshake with the peer `name` (every peer when `None`) now.
    fn request_rekey(&self, name: Option<&str>) -> Vec<RekeyRequest>;
}

impl DataplaneControl for DataplaneHandle {
    fn stats(&self) -> DataplaneStats {
        DataplaneHandle::stats(self)
    }

    fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), DataplaneError> {
        DataplaneHandle::update_peers(self, peers)
    }

    fn set_own_prefixes(&self, prefixes: &[ipnet::IpNet]) {
        DataplaneHandle::set_own_prefixes(self, prefixes);
    }

    fn request_rekey(&self, name: Option<&str>) -> Vec<RekeyRequest> {
        DataplaneHandle::request_rekey(self, name)
    }
}
