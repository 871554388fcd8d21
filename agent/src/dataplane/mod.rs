//! The data plane's shell: userspace WireGuard between the TUN device `mesh0` and the UDP
//! sockets. The protocol itself (peers, crypto-key routing, transit, path choice) is the
//! pure core in the `meshd-tunnel` crate; this module does the I/O around it.
//!
//! - [`shell`]: [`Dataplane::start`] binds the sockets and runs the worker threads (per
//!   device queue: device to core to UDP, and UDP to core to device) and the tokio tasks
//!   (handshakes, the timer); [`DataplaneHandle`] stops it, reads the counters and replaces
//!   the peer set (unchanged peers keep their sessions; one prefix claimed by two peers is
//!   refused).
//! - [`udp`]: the sockets (quinn-udp: GSO, GRO, batched receive; one `SO_REUSEPORT` socket
//!   per worker); [`tun`]: the TUN device with virtio-net offload and one queue per worker;
//!   [`device`]: the [`PacketDevice`] trait tests implement in memory, and [`Stop`].
//!
//! The core's types the rest of the agent uses are re-exported here.
//!
//! ```text
//! let tun = create_tun("mesh0", mtu, workers)?;   // tun.name(), tun.ifindex()
//! let handle = Dataplane::start(config, tun).await?;
//! handle.stats(); handle.update_peers(&peers)?; handle.shutdown().await;
//! ```

pub mod device;
pub mod error;
pub mod path_policy;
pub mod shell;
pub mod tun;
pub mod udp;

pub use device::{PacketDevice, Stop};
pub use error::DataplaneError;
pub use meshd_tunnel::{
    DataplaneConfig, DataplaneCore, DataplaneStats, DropCounts, DropReason, PacketBatch, PacketBuf,
    PeerConfig, PeerStats, RekeyRequest, TxBatch,
};
pub use path_policy::ConfiguredPaths;
pub use shell::{Dataplane, DataplaneHandle, UplinkSink};
pub use tun::{TunDevice, create_tun};
