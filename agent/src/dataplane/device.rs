//! The packet device: where inner IP packets enter and leave the data plane.
//!
//! The real one is the TUN device ([`super::tun::TunDevice`]); tests use an in-memory one.
//! Packets move in [`PacketBatch`]es (the core's reusable buffers).

use std::future::Future;
use std::io;

use meshd_tunnel::PacketBatch;

/// A packet device that reads and writes IP packets in batches.
///
/// Implementations must be safe to use from two tasks at once: one reads, one writes.
pub trait PacketDevice: Send + Sync + 'static {
    /// Waits for at least one packet and fills `batch` with as many as are ready
    /// (`batch` is cleared first).
    fn recv_batch(&self, batch: &mut PacketBatch) -> impl Future<Output = io::Result<()>> + Send;

    /// Writes every packet in `batch`. May modify the buffers (coalescing); the caller
    /// clears the batch afterwards.
    fn send_batch(&self, batch: &mut PacketBatch) -> impl Future<Output = io::Result<()>> + Send;
}
