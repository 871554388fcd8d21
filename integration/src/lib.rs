//! Multi-node tests in one process, without root: UDP on 127.0.0.x and in-memory packet devices.
//!
//! - [`memory_device`]: a [`meshd::dataplane::PacketDevice`] backed by channels, standing in
//!   for the TUN device; the test plays the kernel on its other end.
//! - [`packets`]: valid IPv4/IPv6 echo packets to send through the mesh.
//! - [`node`]: start a data plane on a loopback address and wire nodes to each other.
//! - [`mesh`]: whole meshd nodes (commands, control plane, data plane, peer set) by name.
//! - [`admission`]: a mesh set up with `init`, `invite` and `join`, and its certificates.
//! - [`logs`]: capture the log lines of everything running in the test process.

pub mod admission;
pub mod logs;
pub mod memory_device;
pub mod mesh;
pub mod node;
pub mod packets;
