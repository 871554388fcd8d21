//! Multi-node tests in one process, without root: UDP on 127.0.0.x and in-memory packet devices.
//!
//! - [`memory_device`]: a [`meshd::dataplane::PacketDevice`] backed by channels, standing in
//!   for the TUN device; the test plays the kernel on its other end.
//! - [`packets`]: valid IPv4/IPv6 echo packets to send through the mesh.
//! - [`node`]: start a data plane on a loopback address and wire nodes to each other.

pub mod memory_device;
pub mod node;
pub mod packets;
