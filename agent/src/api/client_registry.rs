//! `clients.json` in the state directory: the end-user devices (`meshd client add`) this node
//! accepts as WireGuard peers — name, public key, addresses. The client's private key is
//! printed once in its wg-quick config and never stored.
//!
//! Addresses come from the node's client pools (IPv4 from the first half of its /16, IPv6
//! from its /96). On the CA holder the mesh allocator in `ca/db.json` numbers them, so the CA
//! knows every address it handed out; a node without the CA numbers its own clients with the
//! counter kept here (no other node ever allocates from this node's pools). Numbers only
//! grow: an address is never handed out twice.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mesh_config::WireGuardKey;
use mesh_config::alloc::{AllocError, ClientAllocation, NodeAllocation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::dataplane::PeerConfig;
use crate::state::{
    Overwrite, PUBLIC_FILE_MODE, StateDir, StateError, generate_wireguard_key, read_json,
    write_json,
};

/// Format version of `clients.json`.
pub const CLIENTS_VERSION: u32 = 1;

/// The content of `clients.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistry {
    /// The number of the next client address on a node that does not hold the CA (from 1:
    /// `10.N.0.(1 + n)`); unused on the CA holder, whose allocator counts instead.
    pub next_local_index: u32,
    /// Every client, in order of creation.
    pub clients: Vec<ClientRecord>,
}

/// One client device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRecord {
    pub name: String,
    pub public_key: WireGuardKey,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Why a client could not be added.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("node {node:?} already has a client named {client:?} (in {})", path.display())]
    Duplicate {
        node: String,
        client: String,
        path: PathBuf,
    },
    #[error("node {node:?} has no client address left in {pool}")]
    Exhausted { node: String, pool: Ipv4Net },
    #[error(
        "the next client address {address} is already used by client {holder:?} in {}; \
         the allocator and this file disagree (restored from a backup?)",
        path.display()
    )]
    AddressTaken {
        address: String,
        holder: String,
        path: PathBuf,
    },
}

impl ClientRecord {
    /// The data plane peer for this client: it may use exactly its two addresses, and it
    /// always calls us (a phone behind NAT), so no endpoint and no keepalive of ours.
    pub fn peer_config(&self) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            public_key: *self.public_key.as_bytes(),
            endpoints: Vec::new(),
            allowed_ips: self.prefixes(),
            ecmp_ips: Vec::new(),
            persistent_keepalive: None,
            relay: false,
        }
    }

    /// The client's addresses as host prefixes (`/32`, `/128`).
    pub fn prefixes(&self) -> Vec<IpNet> {
        vec![
            IpNet::V4(Ipv4Net::from(self.ipv4)),
            IpNet::V6(Ipv6Net::from(self.ipv6)),
        ]
    }
}

impl ClientRegistry {
    /// The path of `clients.json` in `state`.
    pub fn path(state: &StateDir) -> PathBuf {
        state.clients_path()
    }

    /// Reads `clients.json`; a node that never added a client has none (no file). A file
    /// that is corrupt or inconsistent is an error naming it.
    pub fn load(state: &StateDir) -> Result<Self, StateError> {
        let path = Self::path(state);
        let registry: ClientRegistry = match read_json(&path, CLIENTS_VERSION, "") {
            Ok(registry) => registry,
            Err(StateError::Missing { .. }) => return Ok(Self::default()),
            Err(error) => return Err(error),
        };
        registry
            .check()
            .map_err(|reason| StateError::Corrupt { path, reason })?;
        Ok(registry)
    }

    /// Writes `clients.json` atomically. Callers hold the state directory lock.
    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        write_json(
            &Self::path(state),
            CLIENTS_VERSION,
            self,
            PUBLIC_FILE_MODE,
            Overwrite::Replace,
        )
    }

    /// The client called `name`.
    pub fn get(&self, name: &str) -> Option<&ClientRecord> {
        self.clients.iter().find(|c| c.name == name)
    }

    /// Names, keys and addresses must each be unique: the data plane would refuse the set.
    fn check(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        let mut addresses = HashSet::new();
        for client in &self.clients {
            mesh_config::names::check_node_name(&client.name)
                .map_err(|reason| format!("client name {:?}: {reason}", client.name))?;
            if !names.insert(&client.name) {
                return Err(format!("client {:?} appears twice", client.name));
            }
            if !keys.insert(client.public_key.as_bytes()) {
                return Err(format!(
                    "client {:?} has the public key of another client",
                    client.name
                ));
            }
            for prefix in client.prefixes() {
                if !addresses.insert(prefix) {
                    return Err(format!(
                        "client {:?} has address {} of another client",
                        client.name,
                        prefix.addr()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The address number `index` (from 1) in a node's client pools: `10.N.0.(1 + index)` and
/// the `index`-th address of its /96 — the numbering the CA's allocator uses, so addresses
/// look the same whichever side handed them out. `None` when the IPv4 pool is full (its
/// network address, the node's own `.1` and the broadcast address are never handed out).
pub fn local_client_allocation(node: &NodeAllocation, index: u32) -> Option<ClientAllocation> {
    let pool4 = node.ipv4_clients;
    let size4 = 1u64 << (32 - u32::from(pool4.prefix_len()));
    if index == 0 || u64::from(index) > size4.saturating_sub(3) {
        return None;
    }
    let ipv4 = Ipv4Addr::from(u32::from(pool4.network()).checked_add(1 + index)?);
    let ipv6 =
        Ipv6Addr::from(u128::from(node.ipv6_clients.network()).checked_add(u128::from(index))?);
    Some(ClientAllocation { ipv4, ipv6 })
}

/// This node stops holding the CA (a hand-over, or a take-over elsewhere that demoted it):
/// its own clients go on being numbered locally after those the CA allocator `allocator`
/// gave it, so no address is handed out twice. Callers hold the state directory lock.
pub fn number_locally_after_ca(
    state: &StateDir,
    node: &NodeAllocation,
    allocator: &mesh_config::Allocator,
) -> Result<(), StateError> {
    let mut clients = ClientRegistry::load(state)?;
    let next = allocator
        .clients(&node.name)
        .map(|(_, a)| client_number(node, a) + 1)
        .max()
        .unwrap_or(1);
    if clients.next_local_index < next {
        clients.next_local_index = next;
        clients.save(state)?;
    }
    Ok(())
}

/// The number of client address `a` in node `node`'s pools (from 1).
fn client_number(node: &NodeAllocation, a: &ClientAllocation) -> u32 {
    u32::from(a.ipv4)
        .wrapping_sub(u32::from(node.ipv4_clients.network()))
        .wrapping_sub(1)
}

/// A client just created: its record (persisted) and its private key (to print once).
pub struct NewClient {
    pub record: ClientRecord,
    pub private_key: StaticSecret,
}

impl std::fmt::Debug for NewClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClient")
            .field("record", &self.record)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Creates client `name` of `node`: allocates its addresses (from the CA allocator on the CA
/// holder, else from the local counter), generates its key pair, and records it in
/// `clients.json`. Takes the state directory lock for the whole change.
pub fn add_client(
    state: &StateDir,
    node: &NodeAllocation,
    name: &str,
    now: OffsetDateTime,
) -> Result<NewClient, ClientError> {
    let _lock = state.lock()?;
    let mut registry = ClientRegistry::load(state)?;
    if registry.get(name).is_some() {
        return Err(ClientError::Duplicate {
            node: node.name.clone(),
            client: name.to_owned(),
            path: ClientRegistry::path(state),
        });
    }
    let addresses = if state.is_ca_holder() {
        let mut db = state.read_ca_db()?;
        let addresses = db.allocator.allocate_client(&node.name, name)?;
        // The CA database first: should the second write fail, the address is burnt, never
        // handed out twice.
        state.write_ca_db(&db)?;
        addresses
    } else {
        let index = registry.next_local_index.max(1);
        let addresses =
            local_client_allocation(node, index).ok_or_else(|| ClientError::Exhausted {
                node: node.name.clone(),
                pool: node.ipv4_clients,
            })?;
        registry.next_local_index = index + 1;
        addresses
    };
    // The two numberings never meet on a healthy node; should ca/db.json and clients.json
    // disagree (a restored backup), refuse rather than give two devices one address.
    if let Some(holder) = registry
        .clients
        .iter()
        .find(|c| c.ipv4 == addresses.ipv4 || c.ipv6 == addresses.ipv6)
    {
        return Err(ClientError::AddressTaken {
            address: addresses.ipv4.to_string(),
            holder: holder.name.clone(),
            path: ClientRegistry::path(state),
        });
    }
    let private_key = generate_wireguard_key();
    let record = ClientRecord {
        name: name.to_owned(),
        public_key: WireGuardKey(*PublicKey::from(&private_key).as_bytes()),
        ipv4: addresses.ipv4,
        ipv6: addresses.ipv6,
        created_at: now,
    };
    registry.clients.push(record.clone());
    registry.save(state)?;
    Ok(NewClient {
        record,
        private_key,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mesh_config::Role;

    /// A spoke's allocation, for tests of code that hands out client addresses.
    pub(crate) fn spoke() -> NodeAllocation {
        NodeAllocation {
            name: "home".into(),
            role: Role::Spoke,
            index: 3,
            ipv4: "10.3.0.0/16".parse().unwrap(),
            ipv4_clients: "10.3.0.0/17".parse().unwrap(),
            ipv4_apps: "10.3.128.0/17".parse().unwrap(),
            ipv4_address: "10.3.0.1".parse().unwrap(),
            ipv6: "fd00:1:2:1:1::/80".parse().unwrap(),
            ipv6_clients: "fd00:1:2:1:1:1::/96".parse().unwrap(),
            ipv6_address: "fd00:1:2:1:1::1".parse().unwrap(),
            core: Some("core".into()),
        }
    }

    #[test]
    fn local_numbering_matches_the_allocator() {
        let plan = mesh_config::AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "fd00:1:2::/48".parse().unwrap(),
        )
        .unwrap();
        let mut allocator = mesh_config::Allocator::new(plan).unwrap();
        let node = allocator
            .allocate_node("alpha", Role::Core, None, None)
            .unwrap();
        for index in 1..=3 {
            let from_ca = allocator
                .allocate_client("alpha", &format!("c{index}"))
                .unwrap();
            assert_eq!(local_client_allocation(&node, index), Some(from_ca));
        }
    }

    #[test]
    fn local_numbering_stops_before_the_broadcast_address() {
        let node = spoke();
        assert_eq!(
            local_client_allocation(&node, 1).unwrap().ipv4.to_string(),
            "10.3.0.2"
        );
        assert_eq!(
            local_client_allocation(&node, 1).unwrap().ipv6.to_string(),
            "fd00:1:2:1:1:1:0:1"
        );
        let last = (1 << 15) - 3;
        assert_eq!(
            local_client_allocation(&node, last)
                .unwrap()
                .ipv4
                .to_string(),
            "10.3.127.254"
        );
        assert_eq!(local_client_allocation(&node, last + 1), None);
        assert_eq!(local_client_allocation(&node, 0), None);
    }

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        (dir, state)
    }

    #[test]
    fn a_node_without_the_ca_numbers_its_own_clients_and_persists_them() {
        let (_dir, state) = state();
        let now = OffsetDateTime::UNIX_EPOCH;
        let first = add_client(&state, &spoke(), "laptop", now).unwrap();
        let second = add_client(&state, &spoke(), "phone", now).unwrap();
        assert_eq!(first.record.ipv4.to_string(), "10.3.0.2");
        assert_eq!(second.record.ipv4.to_string(), "10.3.0.3");
        assert_ne!(first.record.public_key, second.record.public_key);
        let registry = ClientRegistry::load(&state).unwrap();
        assert_eq!(registry.next_local_index, 3);
        assert_eq!(registry.clients, vec![first.record.clone(), second.record]);
        let peer = first.record.peer_config();
        assert_eq!(
            peer.allowed_ips,
            vec![
                "10.3.0.2/32".parse::<IpNet>().unwrap(),
                "fd00:1:2:1:1:1:0:1/128".parse().unwrap()
            ]
        );
        assert!(peer.endpoints.is_empty());

        let error = add_client(&state, &spoke(), "laptop", now).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("already has a client named \"laptop\""),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_registry_and_a_corrupt_one_an_error() {
        let (_dir, state) = state();
        assert_eq!(
            ClientRegistry::load(&state).unwrap(),
            ClientRegistry::default()
        );
        std::fs::write(ClientRegistry::path(&state), b"{\"version\":1,").unwrap();
        let error = ClientRegistry::load(&state).unwrap_err().to_string();
        assert!(error.contains("clients.json is corrupt"), "{error}");
    }

    #[test]
    fn inconsistent_registries_are_refused() {
        let (_dir, state) = state();
        let record = ClientRecord {
            name: "laptop".into(),
            public_key: WireGuardKey([5; 32]),
            ipv4: "10.3.0.2".parse().unwrap(),
            ipv6: "fd00::2".parse().unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        let mut twin = record.clone();
        twin.name = "phone".into();
        twin.public_key = WireGuardKey([6; 32]);
        let registry = ClientRegistry {
            next_local_index: 2,
            clients: vec![record, twin],
        };
        registry.save(&state).unwrap();
        let error = ClientRegistry::load(&state).unwrap_err().to_string();
        assert!(
            error.contains("address 10.3.0.2 of another client"),
            "{error}"
        );
    }
}
