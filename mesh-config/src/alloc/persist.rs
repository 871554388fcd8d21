//! The persisted form of an [`Allocator`]: versioned, and checked on load so that a
//! damaged or hand-edited file is reported instead of causing a prefix to be handed
//! out twice. Every stored allocation is recomputed from its numbers and compared.

use std::collections::{HashMap, HashSet};
use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::error::StateError;
use super::plan::{AddressPlan, nth_subnet6};
use super::share::{Counter, Share};
use super::{
    Allocator, CORE_PREFIX_LEN6, Ipv6Source, NODE_PREFIX_LEN6, NodeRecord, SPOKES_PER_CORE,
    client_allocation, client_capacity, node_allocation,
};
use crate::names::check_node_name;
use crate::schema::Role;

/// The only format version this code reads and writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Persisted {
    version: u32,
    plan: AddressPlan,
    /// Absent for a registry of one holder (every registry before the split), so that
    /// those files are written exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share: Option<Share>,
    next_node_index: Counter,
    next_core6_index: Counter,
    nodes: Vec<NodeRecord>,
}

impl From<Allocator> for Persisted {
    fn from(a: Allocator) -> Self {
        Persisted {
            version: VERSION,
            plan: a.plan,
            share: (!a.share.is_sole()).then_some(a.share),
            next_node_index: a.next_node,
            next_core6_index: a.next_core6,
            nodes: a.records,
        }
    }
}

impl TryFrom<Persisted> for Allocator {
    type Error = StateError;

    fn try_from(p: Persisted) -> Result<Self, StateError> {
        if p.version != VERSION {
            return Err(StateError::UnsupportedVersion(p.version));
        }
        p.plan.check()?;
        let share = p.share.unwrap_or(Share::SOLE);
        share.check().map_err(StateError::Share)?;
        if p.share == Some(Share::SOLE) {
            return Err(StateError::Share(
                "a registry of one holder has no share".into(),
            ));
        }
        counter(
            "next_node_index",
            &p.next_node_index,
            share.holders,
            p.plan.node_prefix_count4(),
        )?;
        counter(
            "next_core6_index",
            &p.next_core6_index,
            share.holders,
            p.plan.core_prefix_count6(),
        )?;
        let mut seen = Seen::default();
        for record in &p.nodes {
            check_record(&p, share, record, &mut seen)?;
        }
        check_live_overlaps(&p.nodes)?;
        Ok(Allocator::from_parts(
            p.plan,
            share,
            p.next_node_index,
            p.next_core6_index,
            p.nodes,
        ))
    }
}

/// Numbers already claimed by earlier records.
#[derive(Default)]
struct Seen {
    node_indexes: HashSet<u32>,
    core6_indexes: HashSet<u32>,
    spoke_slots: HashSet<(u32, u32)>,
    /// Across all records: a native /64 shared by a revoked and a live core must
    /// still never give the same /80 or client address twice.
    spoke_prefixes: HashSet<Ipv6Net>,
    client_ipv6: HashSet<Ipv6Addr>,
}

fn counter(name: &'static str, value: &Counter, holders: u32, max: u64) -> Result<(), StateError> {
    value
        .check_stored(holders, max)
        .map_err(|problem| StateError::Counter { name, problem })
}

fn check_record(
    p: &Persisted,
    share: Share,
    record: &NodeRecord,
    seen: &mut Seen,
) -> Result<(), StateError> {
    let a = &record.allocation;
    let fail = |problem: String| Err(StateError::node(&a.name, problem));
    if let Err(reason) = check_node_name(&a.name) {
        return fail(reason);
    }
    if a.index == 0 || !p.next_node_index.covers(a.index) {
        return fail(format!(
            "index {} is not below next_node_index {}",
            a.index, p.next_node_index
        ));
    }
    if !seen.node_indexes.insert(a.index) {
        return fail(format!("index {} is used twice", a.index));
    }
    let max_spoke = if a.role == Role::Core {
        SPOKES_PER_CORE
    } else {
        1
    };
    if let Err(problem) = record.next_spoke.check_stored(share.holders, max_spoke) {
        return fail(format!("next_spoke: {problem}"));
    }
    let (ipv6, core) = expected_ipv6(p, record, seen)?;
    let expected = node_allocation(&p.plan, &a.name, a.role, a.index, ipv6, core);
    if &expected != a {
        return fail(format!(
            "stored prefixes do not match its numbers (expected {} and {})",
            expected.ipv4, expected.ipv6
        ));
    }
    check_clients(record, seen)
}

/// The IPv6 prefix and core name a record must have, given where it says they came from.
fn expected_ipv6(
    p: &Persisted,
    record: &NodeRecord,
    seen: &mut Seen,
) -> Result<(Ipv6Net, Option<String>), StateError> {
    let a = &record.allocation;
    let fail = |problem: String| Err(StateError::node(&a.name, problem));
    match (a.role, record.ipv6_source) {
        (Role::Core, Ipv6Source::Pool { index }) => {
            if index == 0 || !p.next_core6_index.covers(index) {
                return fail(format!(
                    "/64 number {index} is not below next_core6_index {}",
                    p.next_core6_index
                ));
            }
            if !seen.core6_indexes.insert(index) {
                return fail(format!("/64 number {index} is used twice"));
            }
            Ok((p.plan.core_prefix6(index), None))
        }
        (Role::Core, Ipv6Source::Native) => {
            let native = a.ipv6;
            if native.prefix_len() != CORE_PREFIX_LEN6 || native.trunc() != native {
                return fail(format!("native prefix {native} is not a /64"));
            }
            if p.plan.pool6.contains(&native) || native.contains(&p.plan.pool6) {
                return fail(format!(
                    "native prefix {native} lies inside pool6 {}",
                    p.plan.pool6
                ));
            }
            Ok((native, None))
        }
        (Role::Spoke, Ipv6Source::Core { core_index, index }) => {
            let Some(core) = p.nodes.iter().find(|r| r.allocation.index == core_index) else {
                return fail(format!("its core (node index {core_index}) is missing"));
            };
            let core_prefix = core.allocation.ipv6;
            if core.allocation.role != Role::Core
                || core_prefix.prefix_len() != CORE_PREFIX_LEN6
                || core_prefix.trunc() != core_prefix
            {
                return fail(format!(
                    "its core {:?} is not a core with a /64",
                    core.allocation.name
                ));
            }
            if index == 0 || !core.next_spoke.covers(index) {
                return fail(format!(
                    "/80 number {index} is not below its core's next_spoke {}",
                    core.next_spoke
                ));
            }
            if !seen.spoke_slots.insert((core_index, index)) {
                return fail(format!("/80 number {index} of its core is used twice"));
            }
            let prefix = nth_subnet6(core_prefix, NODE_PREFIX_LEN6, index);
            if !seen.spoke_prefixes.insert(prefix) {
                return fail(format!("{prefix} was already given to another spoke"));
            }
            Ok((prefix, Some(core.allocation.name.clone())))
        }
        (role, source) => fail(format!(
            "a {role} cannot take its IPv6 prefix from {source:?}"
        )),
    }
}

fn check_clients(record: &NodeRecord, seen: &mut Seen) -> Result<(), StateError> {
    let a = &record.allocation;
    let fail = |problem: String| Err(StateError::node(&a.name, problem));
    if record.next_client == 0 || u64::from(record.next_client) > client_capacity(a) + 1 {
        return fail(format!(
            "next_client {} is out of range",
            record.next_client
        ));
    }
    let mut names = HashSet::new();
    let mut indexes = HashSet::new();
    for client in &record.clients {
        if let Err(reason) = check_node_name(&client.name) {
            return fail(format!("client: {reason}"));
        }
        if !names.insert(client.name.as_str()) {
            return fail(format!("client {:?} is listed twice", client.name));
        }
        if client.index == 0 || client.index >= record.next_client || !indexes.insert(client.index)
        {
            return fail(format!(
                "client {:?} has an invalid or reused number {}",
                client.name, client.index
            ));
        }
        if client.addresses != client_allocation(a, client.index) {
            return fail(format!(
                "client {:?} addresses do not match its number",
                client.name
            ));
        }
        if !seen.client_ipv6.insert(client.addresses.ipv6) {
            return fail(format!(
                "client {:?} address {} was already given out",
                client.name, client.addresses.ipv6
            ));
        }
    }
    Ok(())
}

/// Live nodes must have distinct names and disjoint prefixes. Prefixes of one kind all
/// have the same length, so "disjoint" means "different"; a spoke's /80 may only lie
/// in its own core's /64.
fn check_live_overlaps(records: &[NodeRecord]) -> Result<(), StateError> {
    let live: Vec<_> = records
        .iter()
        .filter(|r| !r.revoked)
        .map(|r| &r.allocation)
        .collect();
    let mut names = HashSet::new();
    let mut ipv4: HashMap<Ipv4Net, &str> = HashMap::new();
    let mut core64: HashMap<Ipv6Net, &str> = HashMap::new();
    let mut spoke80: HashMap<Ipv6Net, &str> = HashMap::new();
    let overlap = |first: &str, second: &str, prefix: String| StateError::Overlap {
        first: format!("node {first:?}"),
        second: format!("node {second:?} ({prefix})"),
    };
    for a in &live {
        if !names.insert(a.name.as_str()) {
            return Err(StateError::node(&a.name, "two live nodes have this name"));
        }
        if let Some(other) = ipv4.insert(a.ipv4, &a.name) {
            return Err(overlap(other, &a.name, a.ipv4.to_string()));
        }
        let by_length = if a.role == Role::Core {
            &mut core64
        } else {
            &mut spoke80
        };
        if let Some(other) = by_length.insert(a.ipv6, &a.name) {
            return Err(overlap(other, &a.name, a.ipv6.to_string()));
        }
    }
    for a in live.iter().filter(|a| a.role == Role::Spoke) {
        let parent = enclosing(a.ipv6, CORE_PREFIX_LEN6);
        if let Some(core) = core64.get(&parent)
            && Some(*core) != a.core.as_deref()
        {
            return Err(overlap(core, &a.name, a.ipv6.to_string()));
        }
    }
    Ok(())
}

/// The prefix of length `len` that contains `net`.
fn enclosing(net: Ipv6Net, len: u8) -> Ipv6Net {
    Ipv6Net::new(net.network(), len)
        .expect("len is a valid IPv6 prefix length")
        .trunc()
}
