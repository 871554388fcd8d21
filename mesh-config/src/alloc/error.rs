//! Why an allocation was refused, and why a persisted allocator was not accepted.

use ipnet::{Ipv4Net, Ipv6Net};

use super::plan::PlanError;
use super::share::Share;

/// A refused allocation or revocation. The allocator is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("a node named {0:?} already exists")]
    DuplicateName(String),
    #[error("there is no node named {0:?}")]
    UnknownNode(String),
    #[error("spoke {0:?} needs a core to attach to")]
    CoreRequired(String),
    #[error("core {0:?} cannot attach to another core; only spokes name a core")]
    CoreForCore(String),
    #[error("there is no core named {0:?} to attach the spoke to")]
    UnknownCore(String),
    #[error("{0:?} is a spoke; a spoke can only attach to a core")]
    NotACore(String),
    #[error("spoke {0:?} cannot have a native IPv6 prefix; its /80 comes from its core")]
    NativeForSpoke(String),
    #[error("native IPv6 prefix {0} must be a /64 with no host bits set")]
    NativeNotA64(Ipv6Net),
    #[error("native IPv6 prefix {native} lies inside the mesh pool {pool6}")]
    NativeInsidePool { native: Ipv6Net, pool6: Ipv6Net },
    #[error("native IPv6 prefix {native} is already used by node {owner:?}")]
    NativeInUse { native: Ipv6Net, owner: String },
    #[error(
        "IPv4 pool {pool4} has no /{prefix_len} left for another node{}",
        of_share(share)
    )]
    Ipv4Exhausted {
        pool4: Ipv4Net,
        prefix_len: u8,
        share: Share,
    },
    #[error(
        "IPv6 pool {pool6} has no /64 left for another core{}",
        of_share(share)
    )]
    Ipv6Exhausted { pool6: Ipv6Net, share: Share },
    #[error(
        "core {core:?} has no /80 left in {prefix} for another spoke{}",
        of_share(share)
    )]
    SpokesExhausted {
        core: String,
        prefix: Ipv6Net,
        share: Share,
    },
    #[error("node {node:?} already has a client named {client:?}")]
    DuplicateClient { node: String, client: String },
    #[error("node {node:?} has no client address left in {pool}")]
    ClientsExhausted { node: String, pool: Ipv4Net },
}

/// A persisted allocator that is not self-consistent: the file was damaged or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("allocator state version {0} is not supported (this meshd reads version 1)")]
    UnsupportedVersion(u32),
    #[error("allocator address plan is invalid: {0}")]
    Plan(#[from] PlanError),
    #[error("allocator counter {name} = {problem}")]
    Counter { name: &'static str, problem: String },
    #[error("allocator share: {0}")]
    Share(String),
    #[error("node {node:?}: {problem}")]
    Node { node: String, problem: String },
    #[error("{first} and {second} overlap")]
    Overlap { first: String, second: String },
}

/// What an exhaustion says about a split registry: only this copy's share is used up.
fn of_share(share: &Share) -> String {
    if share.is_sole() {
        String::new()
    } else {
        format!(" in this CA copy's share ({share})")
    }
}

impl StateError {
    pub(crate) fn node(node: &str, problem: impl Into<String>) -> Self {
        StateError::Node {
            node: node.to_owned(),
            problem: problem.into(),
        }
    }
}
