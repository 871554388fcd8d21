//! The CA registry record: what the active CA holder publishes of its registry so that a
//! standby copy of the CA (docs/architecture.md, "The CA: backup, move, and a standby") never
//! hands out a name or a number the holder handed out. Pure: the agent signs the body with the
//! CA key (`pki::ca_signed`), spreads it with the membership, verifies the signature and calls
//! [`RegistryRecord::parse`], [`judge`] and [`merge`] here.
//!
//! A record says:
//! - who speaks: the `term` (grows by one at every take-over) and the `holder` of that term,
//!   and a `version` that grows with every record of the holder, with the hash of the body of
//!   the record before it (`previous`), so a receiver sees when it missed one;
//! - the allocator's counters, per share class ([`Counters`]): how far the holder went;
//! - the deltas: the nodes the holder recorded last (a window of up to [`MAX_NODES`], from
//!   position `from` of its registry, each with its prefixes and whether it is revoked), and
//!   every revoked node (up to [`MAX_REVOKED`]), so a name thrown out is never handed out
//!   again by the other copy.
//!
//! The window makes missed records harmless as long as fewer than [`MAX_NODES`] nodes were
//! admitted in between; the counters alone already keep the numbers apart (the two copies
//! count different residue classes). Records arrive from the network: [`RegistryRecord::parse`]
//! bounds the size and checks every field, and never panics (fuzzed by the proptest below).

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::alloc::{AdoptError, Adoption, Allocator, Counters, KnownNode, MAX_HOLDERS};
use crate::names::check_node_name;
use crate::schema::Role;

/// The format of a record body this version writes and reads.
pub const RECORD_FORMAT: u32 = 1;
/// The signing context of a record body (see `pki::ca_signed`).
pub const SIGNING_CONTEXT: &str = "meshd CA registry record v1";
/// Largest body accepted.
pub const MAX_BODY_LEN: usize = 512 * 1024;
/// Most recent nodes a record carries.
pub const MAX_NODES: usize = 256;
/// Most revoked nodes a record carries (the newest ones).
pub const MAX_REVOKED: usize = 4096;
/// Most /80 counters (one per core) a record carries.
const MAX_CORE_COUNTERS: usize = 65_536;

/// A registry record's body, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// [`RECORD_FORMAT`]; a body of another format is refused.
    pub format: u32,
    /// The mesh's name (the signature already ties the record to the mesh's CA).
    pub mesh: String,
    /// Grows by one with every take-over; a record of an older term is refused.
    pub term: u64,
    /// The node that admits and renews in this term.
    pub holder: String,
    /// Grows with every record the holder publishes (across terms too).
    pub version: u64,
    /// SHA-256 (hex) of the body of the record before this one, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The holder's counters, every share class.
    pub counters: Counters,
    /// Position in the holder's registry of the first entry of `nodes`.
    pub from: u64,
    /// The nodes recorded at positions `from..`, in order.
    pub nodes: Vec<Handed>,
    /// Revoked nodes, the newest [`MAX_REVOKED`].
    pub revoked: Vec<Handed>,
}

/// A node the holder recorded, as its certificate has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<String>,
    pub ipv4: Ipv4Net,
    pub ipv6: Ipv6Net,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

impl Handed {
    fn known(&self) -> KnownNode<'_> {
        KnownNode {
            name: &self.name,
            role: self.role,
            core: self.core.as_deref(),
            ipv4: self.ipv4,
            ipv6: self.ipv6,
        }
    }
}

/// What a CA copy knows of the newest record: the one it published or the one it merged
/// last. Stored in `ca/db.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub term: u64,
    pub holder: String,
    pub version: u64,
    /// SHA-256 (hex) of that record's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Head {
    /// What a copy assumes before any record: term 1, held by `holder` (the copy itself when
    /// it is active, the active holder when it is a standby).
    pub fn initial(holder: &str) -> Self {
        Head {
            term: 1,
            holder: holder.to_owned(),
            version: 0,
            hash: None,
        }
    }
}

/// Why a record body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is {0} bytes, more than the {MAX_BODY_LEN} allowed")]
    TooLarge(usize),
    #[error("the record cannot be read: {0}")]
    Malformed(String),
    #[error("the record is of format {0}; this meshd reads format {RECORD_FORMAT}")]
    Format(u32),
    #[error("the record is invalid: {0}")]
    Invalid(String),
}

impl RegistryRecord {
    /// The record of `allocator` as holder `holder` of `term` publishes it, numbered
    /// `version`, after the record whose body hashed to `previous`.
    pub fn build(
        allocator: &Allocator,
        mesh: &str,
        term: u64,
        holder: &str,
        version: u64,
        previous: Option<String>,
    ) -> Self {
        let count = allocator.node_count();
        let from = count.saturating_sub(MAX_NODES);
        let handed = |(a, revoked): (&crate::NodeAllocation, bool)| Handed {
            name: a.name.clone(),
            role: a.role,
            core: a.core.clone(),
            ipv4: a.ipv4,
            ipv6: a.ipv6,
            revoked,
        };
        let nodes = allocator.nodes_since(from).map(handed).collect();
        let mut revoked: Vec<Handed> = allocator
            .nodes_since(0)
            .filter(|(_, revoked)| *revoked)
            .map(handed)
            .collect();
        if revoked.len() > MAX_REVOKED {
            revoked.drain(..revoked.len() - MAX_REVOKED);
        }
        RegistryRecord {
            format: RECORD_FORMAT,
            mesh: mesh.to_owned(),
            term,
            holder: holder.to_owned(),
            version,
            previous,
            counters: allocator.counters(),
            from: from as u64,
            nodes,
            revoked,
        }
    }

    /// The body to sign and send.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// Reads a body that arrived from a peer (its signature checked already), and checks it.
    pub fn parse(body: &[u8]) -> Result<Self, RecordError> {
        if body.len() > MAX_BODY_LEN {
            return Err(RecordError::TooLarge(body.len()));
        }
        // The format first, so a newer format is named as such rather than as malformed.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format = serde_json::from_slice::<Format>(body)
            .map_err(|e| RecordError::Malformed(e.to_string()))?
            .format;
        if format != RECORD_FORMAT {
            return Err(RecordError::Format(format));
        }
        let record: RegistryRecord =
            serde_json::from_slice(body).map_err(|e| RecordError::Malformed(e.to_string()))?;
        record.check().map_err(RecordError::Invalid)?;
        Ok(record)
    }

    fn check(&self) -> Result<(), String> {
        check_node_name(&self.holder).map_err(|e| format!("holder {:?}: {e}", self.holder))?;
        if self.mesh.is_empty() || self.mesh.len() > 64 {
            return Err("the mesh name must have 1 to 64 characters".into());
        }
        if self.term == 0 || self.version == 0 {
            return Err("term and version start at 1".into());
        }
        if let Some(previous) = &self.previous
            && (previous.len() != 64 || !previous.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("previous is not a SHA-256 in hex".into());
        }
        if self.nodes.len() > MAX_NODES || self.revoked.len() > MAX_REVOKED {
            return Err(format!(
                "it lists {} nodes and {} revoked ones, more than the {MAX_NODES} and \
                 {MAX_REVOKED} allowed",
                self.nodes.len(),
                self.revoked.len()
            ));
        }
        if self.counters.spokes.len() > MAX_CORE_COUNTERS {
            return Err("it has more /80 counters than a mesh has cores".into());
        }
        let holders = self.counters.node.holders();
        let all = std::iter::once(&self.counters.node)
            .chain(std::iter::once(&self.counters.core6))
            .chain(self.counters.spokes.values());
        for counter in all {
            if counter.holders() != holders || holders > MAX_HOLDERS {
                return Err(format!(
                    "its counters disagree on the number of CA copies ({counter})"
                ));
            }
        }
        for node in self.nodes.iter().chain(&self.revoked) {
            check_node_name(&node.name).map_err(|e| format!("node {:?}: {e}", node.name))?;
            match (node.role, &node.core) {
                (Role::Core, None) => {}
                (Role::Spoke, Some(core)) => check_node_name(core)
                    .map_err(|e| format!("node {:?}: core {core:?}: {e}", node.name))?,
                (Role::Core, Some(_)) => return Err(format!("core {:?} has a core", node.name)),
                (Role::Spoke, None) => return Err(format!("spoke {:?} has no core", node.name)),
            }
        }
        Ok(())
    }
}

/// What a CA copy does with a record whose signature verified ([`judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Newer than the head: merge it. `newer_term`: another node took over since the head
    /// (an active copy that is told so becomes a standby). `missed`: records between the
    /// head and this one never arrived (the window covers them, see the module
    /// documentation).
    Merge { newer_term: bool, missed: bool },
    /// The head itself, or an older record of the same holder: nothing to do.
    Seen,
    /// Refused: a record of an older term, or of a holder the term is not held by.
    Refuse(String),
}

/// Compares a record (its body hashed to `hash`) with the copy's head. Pure.
pub fn judge(head: &Head, record: &RegistryRecord, hash: &str) -> Judgement {
    use std::cmp::Ordering::*;
    match record.term.cmp(&head.term) {
        Less => Judgement::Refuse(format!(
            "it is of term {} by {}, older than term {} by {}",
            record.term, record.holder, head.term, head.holder
        )),
        Greater => Judgement::Merge {
            newer_term: true,
            missed: false,
        },
        Equal if record.holder != head.holder => Judgement::Refuse(format!(
            "it names {} holder of term {}, which {} holds",
            record.holder, record.term, head.holder
        )),
        Equal if record.version < head.version => Judgement::Seen,
        Equal if record.version == head.version => {
            if head.hash.as_deref().is_some_and(|h| h != hash) {
                Judgement::Refuse(format!(
                    "it is version {} of {}, but not the version {} this node has",
                    record.version, record.holder, record.version
                ))
            } else {
                Judgement::Seen
            }
        }
        Equal => {
            // Whether records came between the head and this one: the chain says so when the
            // head's hash is known; without one (nothing merged yet) nothing is missed.
            let missed = head.version != 0
                && match &head.hash {
                    Some(hash) => record.previous.as_ref() != Some(hash),
                    None => record.version != head.version + 1,
                };
            Judgement::Merge {
                newer_term: false,
                missed,
            }
        }
    }
}

/// What [`merge`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Nodes new to this copy.
    pub added: Vec<String>,
    /// Nodes this copy now has as revoked.
    pub revoked: Vec<String>,
    /// Whether a counter moved.
    pub counters_moved: bool,
    /// Entries that contradict this copy's registry, each with why (not merged; the rest is).
    pub problems: Vec<String>,
}

impl Merged {
    /// Whether the registry changed.
    pub fn changed(&self) -> bool {
        self.counters_moved || !self.added.is_empty() || !self.revoked.is_empty()
    }
}

/// Why a record could not be merged at all (the registry is left as it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record's counters do not fit this registry: {0}")]
pub struct MergeError(String);

/// Merges `record` into `allocator`: counters up (per class, never back), the nodes it lists
/// adopted (cores first, so a spoke's core is known), revoked ones recorded as revoked. An
/// entry that contradicts the registry is skipped and named in [`Merged::problems`]; counters
/// that do not fit refuse the whole record. Pure, and idempotent: merging a record twice
/// changes nothing the second time.
pub fn merge(allocator: &mut Allocator, record: &RegistryRecord) -> Result<Merged, MergeError> {
    let mut work = allocator.clone();
    let mut merged = Merged {
        counters_moved: work
            .merge_counters(&record.counters)
            .map_err(|e| MergeError(e.to_string()))?,
        ..Merged::default()
    };
    let mut entries: Vec<&Handed> = record.nodes.iter().chain(&record.revoked).collect();
    entries.sort_by_key(|n| n.role != Role::Core);
    for entry in entries {
        let result = if entry.revoked {
            work.adopt_revoked(entry.known()).map(|changed| {
                if changed && !merged.revoked.contains(&entry.name) {
                    merged.revoked.push(entry.name.clone());
                }
            })
        } else if work.is_revoked(&entry.name)
            && work.node(&entry.name).is_none()
            && revoked_with(&work, entry)
        {
            // This copy knows of its revocation already (a record of the window is older
            // news than the list of revoked nodes).
            Ok(())
        } else {
            work.adopt_node(entry.known()).map(|adoption| {
                if adoption == Adoption::Added {
                    merged.added.push(entry.name.clone());
                }
            })
        };
        if let Err(AdoptError::Node { name, problem }) = result {
            merged.problems.push(format!("{name}: {problem}"));
        }
    }
    *allocator = work;
    Ok(merged)
}

/// Whether `allocator` has a revoked record of `entry`'s name and prefixes.
fn revoked_with(allocator: &Allocator, entry: &Handed) -> bool {
    allocator
        .nodes_since(0)
        .any(|(a, revoked)| revoked && a.name == entry.name && a.ipv4 == entry.ipv4)
}

#[cfg(test)]
mod tests;
