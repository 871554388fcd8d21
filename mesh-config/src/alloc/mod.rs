//! Address allocation, following "Address plan" in docs/architecture.md. Pure: the CA
//! holder keeps one [`Allocator`], persists it (serde, versioned) with its database,
//! and records each result in the node's certificate.
//!
//! Every number handed out (node index, core /64, spoke /80, client address) comes
//! from a counter that only grows, so nothing is handed out twice, also after a
//! revocation or a restart. A registry shared by two CA copies (a standby) splits the
//! counters by residue class ([`share`]), so the copies never hand out one number twice
//! either, even when they do not hear of each other.

mod adopt;
mod error;
mod persist;
mod plan;
pub mod share;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::names::check_node_name;
use crate::schema::Role;

pub use adopt::{AdoptError, Adoption, KnownNode};
pub use error::{AllocError, StateError};
pub use plan::{
    AddressPlan, CLIENT_POOL_LEN6, CORE_PREFIX_LEN6, NODE_PREFIX_LEN6, PlanError, random_ula48,
};
pub use share::{Counter, Counters, MAX_HOLDERS, Share, ShareError};

use plan::{halves4, nth_addr4, nth_addr6, nth_subnet6};

/// /80s in a /64; number 0 is the core's own.
const SPOKES_PER_CORE: u64 = 1 << (NODE_PREFIX_LEN6 - CORE_PREFIX_LEN6);

/// Everything a node is given: what goes into its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAllocation {
    pub name: String,
    pub role: Role,
    /// Order of admission, from 1; also the number of its IPv4 prefix in pool4.
    pub index: u32,
    /// The node's IPv4 prefix (`10.N.0.0/16`).
    pub ipv4: Ipv4Net,
    /// First half of `ipv4`: the node's own address and its clients.
    pub ipv4_clients: Ipv4Net,
    /// Second half of `ipv4`: the node's applications.
    pub ipv4_apps: Ipv4Net,
    /// `10.N.0.1`.
    pub ipv4_address: Ipv4Addr,
    /// A core's /64 (from pool6 or native) or a spoke's /80 (from its core's /64).
    pub ipv6: Ipv6Net,
    /// The /96 the node's clients get addresses from.
    pub ipv6_clients: Ipv6Net,
    /// `…::1` in the first /96 of the node's /80.
    pub ipv6_address: Ipv6Addr,
    /// The core a spoke attaches to.
    pub core: Option<String>,
}

/// The addresses of one client (a laptop or phone) of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAllocation {
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// Where a node's IPv6 prefix came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
enum Ipv6Source {
    /// The `index`-th /64 of pool6 (a core).
    Pool { index: u32 },
    /// The core's own native /64, stored in the allocation.
    Native,
    /// The `index`-th /80 of the core whose node index is `core_index` (a spoke).
    Core { core_index: u32, index: u32 },
}

/// One client of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRecord {
    name: String,
    /// From 1; the client's address is number `index` in the node's client pools.
    index: u32,
    addresses: ClientAllocation,
}

/// A node ever admitted, live or revoked. Revoked records stay so that their numbers
/// are visibly burnt and spokes of a revoked core still know their parent prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    allocation: NodeAllocation,
    ipv6_source: Ipv6Source,
    revoked: bool,
    /// Next /80 number for a spoke of this core (unused for spokes), per share class.
    next_spoke: Counter,
    next_client: u32,
    clients: Vec<ClientRecord>,
}

/// Hands out node prefixes and client addresses; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "persist::Persisted", try_from = "persist::Persisted")]
pub struct Allocator {
    plan: AddressPlan,
    /// Which numbers this copy hands out ([`Share::SOLE`] unless split for a standby).
    share: Share,
    next_node: Counter,
    next_core6: Counter,
    records: Vec<NodeRecord>,
    /// Position in `records` of each live node, derived from `records` (lookups by
    /// name must not be linear: a full core has 65535 spokes).
    live_by_name: HashMap<String, usize>,
}

impl Allocator {
    /// An empty allocator for `plan`.
    pub fn new(plan: AddressPlan) -> Result<Self, PlanError> {
        plan.check()?;
        Ok(Allocator::from_parts(
            plan,
            Share::SOLE,
            Counter::single(1),
            Counter::single(1),
            Vec::new(),
        ))
    }

    /// An allocator over existing records (checked by the caller).
    fn from_parts(
        plan: AddressPlan,
        share: Share,
        next_node: Counter,
        next_core6: Counter,
        records: Vec<NodeRecord>,
    ) -> Self {
        let live_by_name = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.revoked)
            .map(|(i, r)| (r.allocation.name.clone(), i))
            .collect();
        Allocator {
            plan,
            share,
            next_node,
            next_core6,
            records,
            live_by_name,
        }
    }

    pub fn plan(&self) -> &AddressPlan {
        &self.plan
    }

    /// Admits a node. A spoke names its `core`; a core may bring its own `native6` /64.
    pub fn allocate_node(
        &mut self,
        name: &str,
        role: Role,
        core: Option<&str>,
        native6: Option<Ipv6Net>,
    ) -> Result<NodeAllocation, AllocError> {
        check_name(name)?;
        if self.live(name).is_some() {
            return Err(AllocError::DuplicateName(name.to_owned()));
        }
        // Decide everything before changing anything, so a refusal leaves no trace.
        let (ipv6, ipv6_source, core_position) = match (role, core) {
            (Role::Core, Some(_)) => return Err(AllocError::CoreForCore(name.to_owned())),
            (Role::Spoke, None) => return Err(AllocError::CoreRequired(name.to_owned())),
            (Role::Core, None) => match native6 {
                Some(native) => (self.check_native6(native)?, Ipv6Source::Native, None),
                None => {
                    let index = self.next_core6.next(self.share.slot);
                    if u64::from(index) >= self.plan.core_prefix_count6() {
                        return Err(AllocError::Ipv6Exhausted {
                            pool6: self.plan.pool6,
                            share: self.share,
                        });
                    }
                    (
                        self.plan.core_prefix6(index),
                        Ipv6Source::Pool { index },
                        None,
                    )
                }
            },
            (Role::Spoke, Some(core_name)) => {
                if native6.is_some() {
                    return Err(AllocError::NativeForSpoke(name.to_owned()));
                }
                let position = self
                    .live_position(core_name)
                    .ok_or_else(|| AllocError::UnknownCore(core_name.to_owned()))?;
                let core = &self.records[position];
                if core.allocation.role != Role::Core {
                    return Err(AllocError::NotACore(core_name.to_owned()));
                }
                let slot = core.next_spoke.next(self.share.slot);
                if u64::from(slot) >= SPOKES_PER_CORE {
                    return Err(AllocError::SpokesExhausted {
                        core: core_name.to_owned(),
                        prefix: core.allocation.ipv6,
                        share: self.share,
                    });
                }
                let source = Ipv6Source::Core {
                    core_index: core.allocation.index,
                    index: slot,
                };
                let prefix = nth_subnet6(core.allocation.ipv6, NODE_PREFIX_LEN6, slot);
                (prefix, source, Some(position))
            }
        };
        let index = self.next_node.next(self.share.slot);
        if u64::from(index) >= self.plan.node_prefix_count4() {
            return Err(AllocError::Ipv4Exhausted {
                pool4: self.plan.pool4,
                prefix_len: self.plan.node_prefix_len4,
                share: self.share,
            });
        }

        let allocation =
            node_allocation(&self.plan, name, role, index, ipv6, core.map(str::to_owned));
        // A core that comes back with its native /64 continues the numbering of that
        // /64, so the /80s and client addresses of its revoked past stay burnt.
        let (next_spoke, next_client) = match ipv6_source {
            Ipv6Source::Native => self.native_counters(ipv6),
            _ => (self.fresh_spoke_counter(), 1),
        };
        let slot = self.share.slot;
        self.next_node.advance(slot);
        match ipv6_source {
            Ipv6Source::Pool { .. } => self.next_core6.advance(slot),
            Ipv6Source::Core { .. } => {
                let position = core_position.expect("spokes have a core");
                self.records[position].next_spoke.advance(slot);
            }
            Ipv6Source::Native => {}
        }
        self.live_by_name
            .insert(name.to_owned(), self.records.len());
        self.records.push(NodeRecord {
            allocation: allocation.clone(),
            ipv6_source,
            revoked: false,
            next_spoke,
            next_client,
            clients: Vec::new(),
        });
        Ok(allocation)
    }

    /// Revokes a live node. Its numbers stay burnt; its clients go with it. A revoked
    /// core's spokes keep their prefixes, but no new spoke can attach to it.
    pub fn revoke(&mut self, name: &str) -> Result<NodeAllocation, AllocError> {
        let position = self
            .live_position(name)
            .ok_or_else(|| AllocError::UnknownNode(name.to_owned()))?;
        self.live_by_name.remove(name);
        let record = &mut self.records[position];
        record.revoked = true;
        Ok(record.allocation.clone())
    }

    /// Gives a client of live node `node_name` the next IPv4 and IPv6 address.
    pub fn allocate_client(
        &mut self,
        node_name: &str,
        client_name: &str,
    ) -> Result<ClientAllocation, AllocError> {
        check_name(client_name)?;
        let position = self
            .live_position(node_name)
            .ok_or_else(|| AllocError::UnknownNode(node_name.to_owned()))?;
        let record = &mut self.records[position];
        if record.clients.iter().any(|c| c.name == client_name) {
            return Err(AllocError::DuplicateClient {
                node: node_name.to_owned(),
                client: client_name.to_owned(),
            });
        }
        let index = record.next_client;
        if u64::from(index) > client_capacity(&record.allocation) {
            return Err(AllocError::ClientsExhausted {
                node: node_name.to_owned(),
                pool: record.allocation.ipv4_clients,
            });
        }
        let addresses = client_allocation(&record.allocation, index);
        record.next_client += 1;
        record.clients.push(ClientRecord {
            name: client_name.to_owned(),
            index,
            addresses,
        });
        Ok(addresses)
    }

    /// A live node by name.
    pub fn node(&self, name: &str) -> Option<&NodeAllocation> {
        self.live(name).map(|r| &r.allocation)
    }

    /// All live nodes, in order of admission.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeAllocation> {
        self.records
            .iter()
            .filter(|r| !r.revoked)
            .map(|r| &r.allocation)
    }

    /// Whether `name` was admitted once and is not live now.
    pub fn is_revoked(&self, name: &str) -> bool {
        self.live(name).is_none() && self.records.iter().any(|r| r.allocation.name == name)
    }

    /// A client of a live node.
    pub fn client(&self, node_name: &str, client_name: &str) -> Option<&ClientAllocation> {
        let record = self.live(node_name)?;
        record
            .clients
            .iter()
            .find(|c| c.name == client_name)
            .map(|c| &c.addresses)
    }

    /// The clients of a live node, in order of allocation.
    pub fn clients(&self, node_name: &str) -> impl Iterator<Item = (&str, &ClientAllocation)> {
        self.live(node_name)
            .into_iter()
            .flat_map(|r| r.clients.iter().map(|c| (c.name.as_str(), &c.addresses)))
    }

    /// The live node whose prefixes contain `address`; for a spoke's address that is
    /// the spoke, not the core whose /64 encloses it.
    pub fn node_for_address(&self, address: IpAddr) -> Option<&NodeAllocation> {
        let mut matches = self.nodes().filter(|n| match address {
            IpAddr::V4(a) => n.ipv4.contains(&a),
            IpAddr::V6(a) => n.ipv6.contains(&a),
        });
        let first = matches.next()?;
        Some(matches.fold(first, |best, n| {
            if n.ipv6.prefix_len() > best.ipv6.prefix_len() {
                n
            } else {
                best
            }
        }))
    }

    fn live_position(&self, name: &str) -> Option<usize> {
        self.live_by_name.get(name).copied()
    }

    fn live(&self, name: &str) -> Option<&NodeRecord> {
        self.live_position(name).map(|i| &self.records[i])
    }

    /// The highest /80 and client counters any earlier core with `native` reached.
    fn native_counters(&self, native: Ipv6Net) -> (Counter, u32) {
        self.records
            .iter()
            .filter(|r| r.ipv6_source == Ipv6Source::Native && r.allocation.ipv6 == native)
            .fold((self.fresh_spoke_counter(), 1), |(mut spoke, client), r| {
                // Same holders throughout a registry: checked on load and at the split.
                let _ = spoke.merge(&r.next_spoke);
                (spoke, client.max(r.next_client))
            })
    }

    /// The /80 counter of a new core: /80 number 0 is the core's own, so each share's first
    /// /80 is its first number from 1.
    fn fresh_spoke_counter(&self) -> Counter {
        Counter::single(1)
            .split(self.share.holders)
            .expect("a single counter splits")
    }

    /// A core's native /64 must be a real /64 outside the pool and not anyone else's.
    fn check_native6(&self, native: Ipv6Net) -> Result<Ipv6Net, AllocError> {
        if native.prefix_len() != CORE_PREFIX_LEN6 || native.trunc() != native {
            return Err(AllocError::NativeNotA64(native));
        }
        let pool6 = self.plan.pool6;
        if pool6.contains(&native) || native.contains(&pool6) {
            return Err(AllocError::NativeInsidePool { native, pool6 });
        }
        if let Some(owner) = self
            .nodes()
            .find(|n| n.ipv6.contains(&native) || native.contains(&n.ipv6))
        {
            return Err(AllocError::NativeInUse {
                native,
                owner: owner.name.clone(),
            });
        }
        Ok(native)
    }
}

fn check_name(name: &str) -> Result<(), AllocError> {
    check_node_name(name).map_err(|reason| AllocError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// The allocation of node number `index` whose IPv6 prefix is `ipv6` (/64 or /80).
fn node_allocation(
    plan: &AddressPlan,
    name: &str,
    role: Role,
    index: u32,
    ipv6: Ipv6Net,
    core: Option<String>,
) -> NodeAllocation {
    let ipv4 = plan.node_prefix4(index);
    let (ipv4_clients, ipv4_apps) = halves4(ipv4);
    // A core's own part of its /64 is /80 number 0.
    let own80 = if ipv6.prefix_len() == CORE_PREFIX_LEN6 {
        nth_subnet6(ipv6, NODE_PREFIX_LEN6, 0)
    } else {
        ipv6
    };
    NodeAllocation {
        name: name.to_owned(),
        role,
        index,
        ipv4,
        ipv4_clients,
        ipv4_apps,
        ipv4_address: nth_addr4(ipv4_clients, 1),
        ipv6,
        ipv6_clients: nth_subnet6(own80, CLIENT_POOL_LEN6, 1),
        ipv6_address: nth_addr6(nth_subnet6(own80, CLIENT_POOL_LEN6, 0), 1),
        core,
    }
}

/// How many clients a node can have: its IPv4 client half minus the network address,
/// the node's own address and the last (broadcast) address. The /96 is never smaller.
fn client_capacity(node: &NodeAllocation) -> u64 {
    let size = 1u64 << (32 - u32::from(node.ipv4_clients.prefix_len()));
    size.saturating_sub(3)
}

/// Client number `index` (from 1): `10.N.0.(1 + index)` and `…:1:0:index` in the /96.
fn client_allocation(node: &NodeAllocation, index: u32) -> ClientAllocation {
    ClientAllocation {
        ipv4: nth_addr4(node.ipv4_clients, 1 + index),
        ipv6: nth_addr6(node.ipv6_clients, index),
    }
}
