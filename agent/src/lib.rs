//! The meshd agent: one process per node that runs every plane.
//!
//! - [`cli`]: the command-line contract (`init`, `invite`, `join`, `run`, ...).
//! - [`state`]: the node's state directory (keys, certificates, allocations), written atomically.
//! - [`dataplane`]: userspace WireGuard (boringtun) between the TUN device and UDP sockets.
//! - [`netlink`]: kernel addresses, routes and link settings over rtnetlink.
//! - [`peerset`]: the one owner of the data plane's peers (configured, clients, members).
//! - [`service_manager`]: readiness and status for systemd (`Type=notify`).
//! - [`dns`]: endpoint names to addresses (hickory-resolver), re-resolved as TTLs run out.
//! - [`identity`]: what a node's certificate says about it (shared by commands and control).
//!
//! Modules are layered (commands on top, then cli, daemon, the planes' shells, the peer set,
//! and the modules that know nothing of the rest at the bottom); a module uses only lower ones.
//! scripts/check-layers.sh holds the order and fails on an upward `crate::` path.

pub mod api;
pub mod bgp;
pub mod cli;
pub mod commands;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod foreign;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod peerset;
pub mod reload;
pub mod routing;
pub mod service_manager;
pub mod state;
