//! Paths: the ways a peer can be reached (local source address x remote endpoint), how each
//! is probed, and which one carries the peer's traffic.
//!
//! - [`selector`]: the endpoint choice without probes: the address authenticated traffic
//!   last came from, else the configured endpoints in turn, moving on when a handshake goes
//!   unanswered.

pub mod selector;

pub use selector::{HANDSHAKE_TIMEOUT, PathSelector};
