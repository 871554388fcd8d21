//! The WireGuard and path core of meshd: peers and their tunnels, crypto-key routing, and
//! which path each peer's packets take. Pure: packets, events and `now` in, packets and
//! actions out. No sockets, no tokio, no netlink (this crate's Cargo.toml has none of them,
//! so the compiler keeps it that way); the agent's `dataplane` module is the shell.
//!
//! - [`core`]: [`DataplaneCore`], the entry points (`handle_outbound`, `handle_inbound`,
//!   `tick`, `update_peers`, `stats`), `now` passed in, output written into caller batches.
//! - `peer`: one peer's `Tunn` and path state, and the table that finds peers by receiver
//!   index, key and address; [`routing`]: the longest-prefix match behind it.
//! - [`path`]: which path a peer's packets take; [`exit_source`]: which exit a pinned
//!   source's Internet traffic takes.
//! - [`batch`] (inner packets, for the device) and [`tx`] (encrypted datagrams, for the
//!   sockets): the reusable buffers the shell hands in; [`gro`]: coalescing decrypted TCP
//!   segments for one device write.
//! - [`config`], [`stats`], [`error`], [`ip`]: configuration and its checks, counters,
//!   typed errors, IP header reading.

pub mod batch;
pub mod config;
pub mod core;
pub mod ecmp;
pub mod error;
pub mod exit_source;
pub mod gro;
pub mod ip;
pub mod path;
mod peer;
pub mod routing;
mod source_limit;
pub mod stats;
pub mod tx;

pub use batch::{PacketBatch, PacketBuf};
pub use config::{DataplaneConfig, PeerConfig};
pub use core::{DataplaneCore, RekeyRequest};
pub use error::ConfigError;
pub use exit_source::{ExitSources, SourceExit, SourceRule};
pub use path::PathSelector;
pub use stats::{DataplaneStats, DropCounts, DropReason, PeerStats};
pub use tx::TxBatch;
