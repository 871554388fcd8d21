//! A pure, in-process simulation of the membership protocol at scale: many [`Membership`]
//! machines, a virtual clock, control connections with latency, no sockets and no threads.
//! It answers "how long until every node knows, and what did it cost on the wire" for a mesh
//! of hundreds of nodes in seconds of real time (`examples/membership_scale.rs`), and lets
//! tests check that a change costs O(N) messages, not O(N²). Compiled only for tests and with
//! the `sim` feature (the example): it is not in the shipped binary.
//!
//! - [`fleet`]: a real CA, the real address allocator and real signed records;
//! - [`network`]: the simulator (event queue, links, counts per cause and message kind);
//! - [`scenario`]: a mesh that has been running for a while, and the changes we measure.
//!
//! [`Membership`]: super::membership::Membership

pub mod fleet;
pub mod network;
pub mod scenario;

#[cfg(test)]
mod tests;

pub use fleet::Fleet;
pub use network::{Cause, Convergence, Network, NodeId, Stats, Traffic};
pub use scenario::{ChangeOutcome, Mesh, MeshShape};

use time::Duration;

/// Why a simulation could not be set up or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("certificate authority: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("address plan: {0}")]
    Plan(#[from] mesh_config::PlanError),
    #[error("address allocation: {0}")]
    Alloc(#[from] mesh_config::AllocError),
    #[error("membership record: {0}")]
    Record(#[from] crate::control::record::RecordError),
    #[error("no simulated node is called {0:?}")]
    UnknownNode(String),
    #[error("a simulated node is already called {0:?}")]
    DuplicateNode(String),
    #[error("there is no simulated node number {0}")]
    NoSuchNode(usize),
    #[error("node {0:?} cannot be connected to itself")]
    SelfLink(String),
    #[error("{0} cores are more than the documentation address ranges hold")]
    TooManyCores(usize),
    #[error("a mesh needs at least one core")]
    NoCore,
    #[error("a simulated node refused a record: {0}")]
    Refused(String),
    #[error("{change:?} had not reached every node after {after}")]
    NotConverged { change: String, after: Duration },
}
