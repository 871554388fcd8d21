//! Teaching an allocator what another copy of it handed out: the CA registry restored from a
//! backup learns the nodes admitted since the backup from their certificates (which carry
//! their prefixes), so that none of their numbers is handed out again.
//!
//! Everything here only moves counters forward and adds records; nothing that was recorded is
//! changed. A certificate that contradicts the records (a name live with other prefixes, a
//! number recorded for another node) is refused with both sides named, and the allocator is
//! left as it was.

use ipnet::{Ipv4Net, Ipv6Net};

use super::plan::nth_subnet6;
use super::{
    Allocator, CORE_PREFIX_LEN6, ClientAllocation, ClientRecord, Ipv6Source, NODE_PREFIX_LEN6,
    NodeRecord, SPOKES_PER_CORE, check_name, client_allocation, client_capacity, node_allocation,
};
use crate::schema::Role;

/// What a node was given, as its certificate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownNode<'a> {
    pub name: &'a str,
    pub role: Role,
    /// The core of a spoke.
    pub core: Option<&'a str>,
    /// Its IPv4 prefix (`10.N.0.0/16`).
    pub ipv4: Ipv4Net,
    /// A core's /64 or a spoke's /80.
    pub ipv6: Ipv6Net,
}

/// What [`Allocator::adopt_node`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// The allocator already had this node, with these prefixes.
    Known,
    /// The node was new to the allocator and is now recorded, live.
    Added,
}

/// A certificate that does not fit the allocator's records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    #[error("node {name:?}: {problem}")]
    Node { name: String, problem: String },
}

fn refuse<T>(name: &str, problem: impl Into<String>) -> Result<T, AdoptError> {
    Err(AdoptError::Node {
        name: name.to_owned(),
        problem: problem.into(),
    })
}

impl Allocator {
    /// Records a live node another copy of this allocator admitted (see the module
    /// documentation): its numbers are derived from its prefixes, checked against every
    /// record, live or revoked, and the counters move past them.
    pub fn adopt_node(&mut self, node: KnownNode<'_>) -> Result<Adoption, AdoptError> {
        let name = node.name;
        if let Err(error) = check_name(name) {
            return refuse(name, error.to_string());
        }
        if let Some(live) = self.live(name) {
            let a = &live.allocation;
            if a.role == node.role
                && a.ipv4 == node.ipv4
                && a.ipv6 == node.ipv6
                && a.core.as_deref() == node.core
            {
                return Ok(Adoption::Known);
            }
            return refuse(
                name,
                format!(
                    "its certificate says {} {} and {}, the registry has it as {} {} and {}",
                    node.role, node.ipv4, node.ipv6, a.role, a.ipv4, a.ipv6
                ),
            );
        }
        let index = self.index_of_prefix4(name, node.ipv4)?;
        let (source, core_position) = self.ipv6_source_of(&node)?;
        let allocation = node_allocation(
            &self.plan,
            name,
            node.role,
            index,
            node.ipv6,
            node.core.map(str::to_owned),
        );
        // Checked, so that `persist`'s load-time checks can never fail on what was adopted.
        if allocation.ipv4 != node.ipv4 || allocation.ipv6 != node.ipv6 {
            return refuse(name, "its prefixes do not follow the address plan");
        }
        let (next_spoke, next_client) = match source {
            Ipv6Source::Native => self.native_counters(node.ipv6),
            _ => (self.fresh_spoke_counter(), 1),
        };
        // Only the counter of each number's own share class moves: another copy's
        // admissions burn none of this copy's numbers.
        self.next_node.pass(index);
        match source {
            Ipv6Source::Pool { index } => self.next_core6.pass(index),
            Ipv6Source::Core { index, .. } => {
                let core = &mut self.records[core_position.expect("spokes have a core")];
                core.next_spoke.pass(index);
            }
            Ipv6Source::Native => {}
        }
        self.live_by_name
            .insert(name.to_owned(), self.records.len());
        self.records.push(NodeRecord {
            allocation,
            ipv6_source: source,
            revoked: false,
            next_spoke,
            next_client,
            clients: Vec::new(),
        });
        Ok(Adoption::Added)
    }

    /// Records that another copy of this allocator revoked `node` (admitted by it, or known
    /// here live): its numbers stay burnt and its name is a revoked one. True if that changed
    /// anything; a revoked record of this name with these prefixes is known already.
    pub fn adopt_revoked(&mut self, node: KnownNode<'_>) -> Result<bool, AdoptError> {
        let known = self.records.iter().any(|r| {
            r.revoked
                && r.allocation.name == node.name
                && r.allocation.ipv4 == node.ipv4
                && r.allocation.ipv6 == node.ipv6
        });
        if known && self.live(node.name).is_none() {
            return Ok(false);
        }
        self.adopt_node(node)?;
        self.revoke(node.name).map_err(|error| AdoptError::Node {
            name: node.name.to_owned(),
            problem: error.to_string(),
        })?;
        Ok(true)
    }

    /// Records a client that live node `node` numbered itself (a node without the CA counts
    /// its own clients), so that the allocator, once this node holds the CA, goes on after
    /// it. `Ok(false)`: it was recorded already.
    pub fn adopt_client(
        &mut self,
        node: &str,
        client: &str,
        addresses: ClientAllocation,
    ) -> Result<bool, AdoptError> {
        let Some(position) = self.live_position(node) else {
            return refuse(node, "is not a live node of the registry");
        };
        let record = &mut self.records[position];
        let offset = u32::from(addresses.ipv4)
            .wrapping_sub(u32::from(record.allocation.ipv4_clients.network()));
        let index = offset.wrapping_sub(1);
        let fits = index >= 1
            && u64::from(index) <= client_capacity(&record.allocation)
            && client_allocation(&record.allocation, index) == addresses;
        if !fits {
            return refuse(
                node,
                format!(
                    "client {client:?} has {} and {}, which are not a client address pair of its pools",
                    addresses.ipv4, addresses.ipv6
                ),
            );
        }
        if let Some(same) = record
            .clients
            .iter()
            .find(|c| c.index == index || c.name == client)
        {
            if same.index == index && same.name == client {
                return Ok(false);
            }
            return refuse(
                node,
                format!(
                    "client {client:?} ({}) collides with recorded client {:?} ({})",
                    addresses.ipv4, same.name, same.addresses.ipv4
                ),
            );
        }
        record.next_client = record.next_client.max(index + 1);
        record.clients.push(ClientRecord {
            name: client.to_owned(),
            index,
            addresses,
        });
        Ok(true)
    }

    /// Moves every counter `count` numbers on without recording anything: for numbers that
    /// may have been handed out by a copy of this allocator that is gone, to nodes nobody
    /// knows of any more (admitted and revoked since a backup). Each counter stops at the end
    /// of its pool. Returns how many node numbers were skipped.
    ///
    /// In a split registry each share class skips `count` of its own numbers: the lost copy
    /// may have been any of them. The count returned is of this copy's class.
    pub fn skip_numbers(&mut self, count: u32) -> u32 {
        let slot = self.share.slot;
        let before = self.next_node.next(slot);
        let limit4 = u32::try_from(self.plan.node_prefix_count4()).unwrap_or(u32::MAX);
        let limit6 = u32::try_from(self.plan.core_prefix_count6()).unwrap_or(u32::MAX);
        self.next_node.skip(count, limit4);
        self.next_core6.skip(count, limit6);
        let spokes = u32::try_from(SPOKES_PER_CORE).unwrap_or(u32::MAX);
        for record in &mut self.records {
            if record.allocation.role == Role::Core && !record.revoked {
                record.next_spoke.skip(count, spokes);
            }
        }
        (self.next_node.next(slot) - before) / self.share.holders
    }

    /// The node number whose IPv4 prefix is `ipv4`, if no record has it yet.
    fn index_of_prefix4(&self, name: &str, ipv4: Ipv4Net) -> Result<u32, AdoptError> {
        let pool = self.plan.pool4;
        if ipv4.prefix_len() != self.plan.node_prefix_len4
            || !pool.contains(&ipv4)
            || ipv4.trunc() != ipv4
        {
            return refuse(
                name,
                format!(
                    "{ipv4} is not a /{} of the mesh pool {pool}",
                    self.plan.node_prefix_len4
                ),
            );
        }
        let shift = 32 - u32::from(self.plan.node_prefix_len4);
        let index = (u32::from(ipv4.network()) - u32::from(pool.network())) >> shift;
        if index == 0 {
            return refuse(
                name,
                format!("{ipv4} is number 0 of the pool, which is reserved"),
            );
        }
        if let Some(other) = self.records.iter().find(|r| r.allocation.index == index) {
            return refuse(
                name,
                format!(
                    "its {ipv4} is number {index}, recorded for node {:?}{}",
                    other.allocation.name,
                    if other.revoked { " (revoked)" } else { "" }
                ),
            );
        }
        debug_assert_eq!(self.plan.node_prefix4(index), ipv4);
        Ok(index)
    }

    /// Where `node`'s IPv6 prefix came from, checked against the records; for a spoke also
    /// the position of its core's record.
    fn ipv6_source_of(
        &self,
        node: &KnownNode<'_>,
    ) -> Result<(Ipv6Source, Option<usize>), AdoptError> {
        let name = node.name;
        let ipv6 = node.ipv6;
        match (node.role, node.core) {
            (Role::Core, None) => {
                let pool6 = self.plan.pool6;
                if !pool6.contains(&ipv6) {
                    // A native /64: outside the pool and nobody else's.
                    return self
                        .check_native6(ipv6)
                        .map(|_| (Ipv6Source::Native, None))
                        .or_else(|error| refuse(name, error.to_string()));
                }
                if ipv6.prefix_len() != CORE_PREFIX_LEN6 || ipv6.trunc() != ipv6 {
                    return refuse(
                        name,
                        format!("{ipv6} is not a /64 of the mesh pool {pool6}"),
                    );
                }
                let offset = (u128::from(ipv6.network()) - u128::from(pool6.network()))
                    >> (128 - u32::from(CORE_PREFIX_LEN6));
                let Ok(index) = u32::try_from(offset) else {
                    return refuse(name, format!("{ipv6} lies beyond the /64s meshd numbers"));
                };
                if index == 0 || u64::from(index) >= self.plan.core_prefix_count6() {
                    return refuse(name, format!("{ipv6} is not a /64 meshd hands out"));
                }
                let taken = self
                    .records
                    .iter()
                    .find(|r| r.ipv6_source == Ipv6Source::Pool { index });
                if let Some(other) = taken {
                    return refuse(
                        name,
                        format!("{ipv6} is recorded for node {:?}", other.allocation.name),
                    );
                }
                Ok((Ipv6Source::Pool { index }, None))
            }
            (Role::Spoke, Some(core_name)) => {
                // The newest record of that name that is a core: a spoke keeps its prefix when
                // its core is revoked.
                let Some(position) = self.records.iter().rposition(|r| {
                    r.allocation.name == core_name && r.allocation.role == Role::Core
                }) else {
                    return refuse(
                        name,
                        format!("its core {core_name:?} is not in the registry"),
                    );
                };
                let core = &self.records[position];
                let parent = core.allocation.ipv6;
                if ipv6.prefix_len() != NODE_PREFIX_LEN6
                    || ipv6.trunc() != ipv6
                    || !parent.contains(&ipv6)
                {
                    return refuse(
                        name,
                        format!("{ipv6} is not a /80 of its core {core_name}'s {parent}"),
                    );
                }
                let slot = (u128::from(ipv6.network()) - u128::from(parent.network()))
                    >> (128 - u32::from(NODE_PREFIX_LEN6));
                let slot = u32::try_from(slot).expect("a /64 holds 65536 /80s");
                if slot == 0 {
                    return refuse(name, format!("{ipv6} is its core's own /80"));
                }
                debug_assert_eq!(nth_subnet6(parent, NODE_PREFIX_LEN6, slot), ipv6);
                let core_index = core.allocation.index;
                let source = Ipv6Source::Core {
                    core_index,
                    index: slot,
                };
                if let Some(other) = self.records.iter().find(|r| {
                    r.ipv6_source == source
                        || (r.allocation.role == Role::Spoke && r.allocation.ipv6 == ipv6)
                }) {
                    return refuse(
                        name,
                        format!("{ipv6} is recorded for node {:?}", other.allocation.name),
                    );
                }
                Ok((source, Some(position)))
            }
            (role, core) => refuse(
                name,
                format!(
                    "a {role} {} a core",
                    if core.is_some() { "with" } else { "without" }
                ),
            ),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::alloc::{AddressPlan, NodeAllocation};

    pub(in crate::alloc) fn plan() -> AddressPlan {
        AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "fd00:1:2::/48".parse().unwrap(),
        )
        .unwrap()
    }

    pub(in crate::alloc) fn known(a: &NodeAllocation) -> KnownNode<'_> {
        KnownNode {
            name: &a.name,
            role: a.role,
            core: a.core.as_deref(),
            ipv4: a.ipv4,
            ipv6: a.ipv6,
        }
    }

    /// The registry as backed up (alpha, beta) and as the lost copy went on (gamma, a spoke
    /// of beta, and delta), the lost copy's allocations returned too.
    fn backup_and_lost_copy() -> (Allocator, Allocator, Vec<NodeAllocation>) {
        let mut backup = Allocator::new(plan()).unwrap();
        backup
            .allocate_node("alpha", Role::Core, None, None)
            .unwrap();
        backup
            .allocate_node("beta", Role::Core, None, None)
            .unwrap();
        let mut lost = backup.clone();
        let gamma = lost
            .allocate_node("gamma", Role::Spoke, Some("beta"), None)
            .unwrap();
        let delta = lost.allocate_node("delta", Role::Core, None, None).unwrap();
        (backup, lost, vec![gamma, delta])
    }

    #[test]
    fn nodes_admitted_since_the_backup_are_learnt_and_their_numbers_never_come_again() {
        let (mut restored, mut lost, since) = backup_and_lost_copy();
        for node in &since {
            assert_eq!(restored.adopt_node(known(node)), Ok(Adoption::Added));
            assert_eq!(restored.adopt_node(known(node)), Ok(Adoption::Known));
        }
        for node in &since {
            assert_eq!(restored.node(&node.name), Some(node));
        }
        // What the restored copy hands out next is what the lost copy would have: nothing
        // of gamma's or delta's.
        let next = restored
            .allocate_node("epsilon", Role::Spoke, Some("beta"), None)
            .unwrap();
        let would = lost
            .allocate_node("epsilon", Role::Spoke, Some("beta"), None)
            .unwrap();
        assert_eq!(next, would);
        assert_eq!(next.index, 5);
        assert_ne!(next.ipv6, since[0].ipv6);
        let core = restored
            .allocate_node("zeta", Role::Core, None, None)
            .unwrap();
        assert_ne!(core.ipv6, since[1].ipv6);
        // And it survives being stored and loaded (the load-time checks accept it).
        let text = serde_json::to_string(&restored).unwrap();
        let back: Allocator = serde_json::from_str(&text).unwrap();
        assert_eq!(back, restored);
    }

    #[test]
    fn a_certificate_that_contradicts_the_records_is_refused_and_changes_nothing() {
        let (mut restored, _, since) = backup_and_lost_copy();
        let before = restored.clone();
        let beta = restored.node("beta").unwrap().clone();
        // beta live with other prefixes.
        let mut other = known(&since[1]);
        other.name = "beta";
        let err = restored.adopt_node(other).unwrap_err();
        assert!(err.to_string().contains("the registry has it as"), "{err}");
        // A new name on beta's number.
        let mut squatter = known(&beta);
        squatter.name = "eve";
        let err = restored.adopt_node(squatter).unwrap_err();
        assert!(
            err.to_string().contains("recorded for node \"beta\""),
            "{err}"
        );
        // A prefix outside the plan, a spoke of an unknown core, a core's own /80.
        let mut outside = known(&since[1]);
        outside.ipv4 = "192.168.0.0/16".parse().unwrap();
        assert!(restored.adopt_node(outside).is_err());
        let mut orphan = known(&since[0]);
        orphan.core = Some("nobody");
        assert!(restored.adopt_node(orphan).is_err());
        let mut own80 = known(&since[0]);
        own80.ipv6 = "fd00:1:2:2::/80".parse().unwrap();
        let err = restored.adopt_node(own80).unwrap_err();
        assert!(err.to_string().contains("own /80"), "{err}");
        assert_eq!(restored, before);
    }

    #[test]
    fn a_revoked_number_is_not_taken_by_a_certificate() {
        let (mut restored, _, since) = backup_and_lost_copy();
        restored.adopt_node(known(&since[1])).unwrap();
        restored.revoke("delta").unwrap();
        let mut again = known(&since[1]);
        again.name = "delta2";
        let err = restored.adopt_node(again).unwrap_err();
        assert!(err.to_string().contains("(revoked)"), "{err}");
    }

    #[test]
    fn clients_numbered_by_the_node_itself_are_adopted() {
        let (mut restored, _, _) = backup_and_lost_copy();
        let beta = restored.node("beta").unwrap().clone();
        let second = client_allocation(&beta, 2);
        assert_eq!(restored.adopt_client("beta", "phone", second), Ok(true));
        assert_eq!(restored.adopt_client("beta", "phone", second), Ok(false));
        assert!(restored.adopt_client("beta", "laptop", second).is_err());
        let mut odd = client_allocation(&beta, 3);
        odd.ipv6 = client_allocation(&beta, 4).ipv6;
        assert!(restored.adopt_client("beta", "odd", odd).is_err());
        // The allocator goes on after the adopted number.
        let next = restored.allocate_client("beta", "tablet").unwrap();
        assert_eq!(next, client_allocation(&beta, 3));
        let text = serde_json::to_string(&restored).unwrap();
        assert_eq!(serde_json::from_str::<Allocator>(&text).unwrap(), restored);
    }

    #[test]
    fn skipping_numbers_burns_them_for_every_kind_of_prefix() {
        let (mut restored, _, _) = backup_and_lost_copy();
        assert_eq!(restored.skip_numbers(2), 2);
        let core = restored.allocate_node("c", Role::Core, None, None).unwrap();
        assert_eq!(core.index, 5);
        assert_eq!(core.ipv6.to_string(), "fd00:1:2:5::/64");
        let spoke = restored
            .allocate_node("s", Role::Spoke, Some("beta"), None)
            .unwrap();
        assert_eq!(spoke.ipv6.to_string(), "fd00:1:2:2:3::/80");
        let text = serde_json::to_string(&restored).unwrap();
        assert_eq!(serde_json::from_str::<Allocator>(&text).unwrap(), restored);
        // Never past the end of a pool.
        assert_eq!(restored.skip_numbers(u32::MAX), 256 - 7);
        assert!(restored.allocate_node("x", Role::Core, None, None).is_err());
    }
}
