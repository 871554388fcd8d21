//! meshd's BGP speaker: the tokio shell around the engine in the `meshd-bgp` crate.
//!
//! - [`session`]: one connection's reader and writer tasks.
//! - [`speaker`]: the task that owns the sessions' sockets and timers and feeds the engine.
//! - [`neighbor`]: a neighbour's `password_file` read from disk.
//!
//! The engine's modules are re-exported so that the shell's API (and its users) name one
//! `bgp` module.
pub mod neighbor;
pub mod session;
pub mod speaker;

pub use meshd_bgp::{fsm, guard, import, packet, policy, refusals, rib};
