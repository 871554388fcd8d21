//! A data plane node on a loopback address, and helpers to wire nodes together.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use meshd::dataplane::{Dataplane, DataplaneConfig, DataplaneHandle, PeerConfig};

use crate::memory_device::{MemoryDeviceHandle, memory_device};

/// A running node: its data plane and the kernel side of its packet device.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub private_key: [u8; 32],
    pub dataplane: DataplaneHandle,
    pub device: MemoryDeviceHandle,
}

/// A deterministic private key per test node (seed 0 is not used).
pub fn private_key(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] = 0x42;
    k
}

/// The public key of `private_key`.
pub fn public_key(private_key: &[u8; 32]) -> [u8; 32] {
    let secret = boringtun::x25519::StaticSecret::from(*private_key);
    *boringtun::x25519::PublicKey::from(&secret).as_bytes()
}

/// Starts a node on `ip` (port chosen by the kernel) with `peers`.
pub async fn start_node(name: &str, seed: u8, ip: &str, peers: Vec<PeerConfig>) -> Node {
    let private_key = private_key(seed);
    let (device, handle) = memory_device();
    let config = DataplaneConfig {
        private_key,
        listen_port: 0,
        bind_addresses: vec![ip.parse::<IpAddr>().expect("test address")],
        mtu: 1420,
        peers,
        fwmark: None,
    };
    let dataplane = Dataplane::start(config, device)
        .await
        .expect("data plane starts");
    Node {
        name: name.to_owned(),
        private_key,
        dataplane,
        device: handle,
    }
}

impl Node {
    /// Where this node listens.
    pub fn endpoint(&self) -> SocketAddr {
        self.dataplane.local_addrs()[0]
    }

    /// The peer entry other nodes use for this node.
    pub fn as_peer(&self, allowed: &[&str], endpoint: bool) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            public_key: public_key(&self.private_key),
            endpoints: if endpoint {
                vec![self.endpoint()]
            } else {
                vec![]
            },
            allowed_ips: allowed
                .iter()
                .map(|a| a.parse::<IpNet>().expect("test prefix"))
                .collect(),
            ecmp_ips: Vec::new(),
            persistent_keepalive: None,
            relay: false,
        }
    }

    /// Waits for the next packet this node's data plane delivers to its "kernel".
    pub async fn receive(&mut self) -> Option<Vec<u8>> {
        self.device.next_packet(Duration::from_secs(5)).await
    }
}
