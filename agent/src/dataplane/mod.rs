//! The encrypted data plane: userspace WireGuard (boringtun) between a packet device (the
//! TUN `mesh0`) and UDP sockets, with crypto-key routing and transit between peers.
//!
//! API NOTES for other planes (kept current):
//! - `DataplaneConfig` has one field beyond the agreed shape: `bind_addresses` (empty = the
//!   wildcards `0.0.0.0` and `[::]`, what the daemon wants; tests bind `127.0.0.x`).
//! - `create_tun` must be called inside the tokio runtime (tun-rs registers the fd).
//! - `DataplaneHandle::update_peers` replaces the whole peer set; unchanged peers (same key,
//!   name and keepalive) keep their sessions. One prefix claimed by two peers is refused.
//! - Stats: `DataplaneStats { peers: Vec<PeerStats>, drops: DropCounts }`, drops by
//!   [`DropReason`] (`as_str()` gives stable snake_case names for JSON).
//!
//! API for the daemon:
//! ```text
//! let tun = create_tun("mesh0", mtu)?;            // tun.name(), tun.ifindex()
//! let handle = Dataplane::start(config, tun).await?;
//! handle.stats(); handle.update_peers(&peers)?; handle.shutdown().await;
//! ```
//!
//! Layout: the pure part — [`core`] (packets in, packets out, `now` passed in),
//! [`routing`] (longest-prefix match), [`path`] (path choice), `peer`, [`tx`], [`ip`],
//! [`stats`] — and the I/O shell: [`shell`] (tokio tasks), [`udp`], [`tun`], [`device`].

pub mod config;
pub mod core;
pub mod device;
pub mod error;
pub mod gro;
pub mod ip;
pub mod path;
mod peer;
pub mod routing;
pub mod shell;
pub mod stats;
pub mod tun;
pub mod tx;
pub mod udp;

pub use config::{DataplaneConfig, PeerConfig};
pub use core::DataplaneCore;
pub use device::{PacketBatch, PacketBuf, PacketDevice};
pub use error::DataplaneError;
pub use path::PathSelector;
pub use shell::{Dataplane, DataplaneHandle};
pub use stats::{DataplaneStats, DropCounts, DropReason, PeerStats};
pub use tun::{TunDevice, create_tun};
