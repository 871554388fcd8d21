//! meshd's BGP speaker (issue #5).
//!
//! - [`packet`]: the message codec (pure).
//! - [`fsm`]: the RFC 4271 session state machine (pure: events and `now` in, actions out).
//! - [`rib`]: Adj-RIB-In, Loc-RIB with best-path selection, Adj-RIB-Out (pure).
//! - [`policy`]: import and export policy for external neighbours (pure).
//! - [`import`]: a received UPDATE turned into RIB operations (RFC 7606, loop checks, policy).
//! - [`guard`]: the hook through which the mesh refuses routes a certificate does not allow.
//! - [`neighbor`]: a `[[bgp.neighbor]]` from meshd.toml as the speaker's neighbour config.
//! - [`session`], [`speaker`]: the tokio shell that owns sockets and timers.
pub mod fsm;
pub mod guard;
pub mod import;
pub mod neighbor;
pub mod packet;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
