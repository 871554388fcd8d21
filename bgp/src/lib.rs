//! meshd's BGP engine, with no I/O: bytes, events and `now` go in, bytes to send and decisions
//! come out. The agent's shell (agent/src/bgp) owns the sockets, tasks and timers and feeds it.
//! That no tokio, socket or netlink crate is a dependency is what keeps it so.
//!
//! - [`packet`]: the message codec.
//! - [`fsm`]: the RFC 4271 session state machine.
//! - [`rib`]: Adj-RIB-In, Loc-RIB with best-path selection, Adj-RIB-Out.
//! - [`policy`]: import and export policy for external neighbours.
//! - [`import`]: a received UPDATE turned into RIB operations (RFC 7606, loop checks, policy).
//! - [`refusals`]: which received routes a session refused and why, logged once each.
//! - [`guard`]: the hook through which the mesh refuses routes a certificate does not allow.
//! - [`neighbor`]: a neighbour's configuration, and its translation from meshd.toml.
//! - [`speaker`]: the speaker's decisions (sessions, collisions, UPDATEs, exports) as a core the
//!   shell feeds events and `now`.
pub mod fsm;
pub mod guard;
pub mod import;
pub mod neighbor;
pub mod packet;
pub mod policy;
pub mod refusals;
pub mod rib;
pub mod speaker;
