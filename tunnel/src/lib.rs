//! The WireGuard and path core of meshd: peers and their tunnels, crypto-key routing, and
//! which path each peer's packets take. Pure: packets, events and `now` in, packets and
//! actions out. No sockets, no tokio, no netlink (this crate's Cargo.toml has none of them,
//! so the compiler keeps it that way); the agent's `dataplane` module is the shell.

pub mod path;
