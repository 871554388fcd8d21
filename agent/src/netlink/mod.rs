//! The kernel side of the data plane, over rtnetlink (no shelling out to `ip`).
//!
//! meshd owns exactly one interface (the TUN device, `mesh0` by default) and the routes that send
//! overlay prefixes into it. Every route it installs carries the protocol number
//! [`MESHD_ROUTE_PROTOCOL`], so that
//! - a restarted meshd can find and flush the routes a crashed run left behind
//!   ([`Netlink::flush_routes`]), without touching routes an operator or another daemon added, and
//! - an operator can see them with `ip route show proto meshd` once
//!   `/etc/iproute2/rt_protos.d/meshd.conf` names the number.
//!
//! While the node uses the mesh's exits, meshd also owns the routes in `[exit] table` (tagged
//! the same way) and two policy rules per family ([`rule`]), found again by their tag or by
//! their table and priority.
//!
//! [`mtu`] is pure arithmetic for the tunnel MTU; [`route`] turns prefixes into rtnetlink messages
//! and back (pure, tested without root); [`rule`] does the same for policy rules; [`client`] does the requests; [`uplinks`] follows the
//! host's own usable addresses (the local ends of underlay paths) from rtnetlink notifications.
//! [`exit_nat`] is the exception to rtnetlink: an exit's masquerade rules, in meshd's own
//! nftables table, which the `nft` program applies from typed JSON.

pub mod client;
pub mod error;
pub mod exit_nat;
pub mod handshake_guard;
pub mod mtu;
pub mod nft;
pub mod route;
pub mod rule;
pub mod uplinks;

pub use client::Netlink;
pub use error::NetlinkError;
pub use exit_nat::{ExitNat, ExitNatError, Families};
pub use handshake_guard::HandshakeGuard;
pub use mtu::{ENCAPSULATION_OVERHEAD, tunnel_mtu};
pub use nft::{NftError, OwnedTable};
pub use route::KernelRoute;
pub use rule::{EXIT_LOOKUP_PRIORITY, EXIT_SUPPRESS_PRIORITY, KernelRule, PolicyRule, exit_rules};
pub use uplinks::{Uplink, UplinkChange, UplinkMonitor, Uplinks};

/// The route protocol (`rtm_protocol`) meshd tags its kernel routes with.
///
/// Numbers up to 192 are assigned in `/etc/iproute2/rt_protos` (bird 12, bgp 186, eigrp 192, ...)
/// and the kernel reserves nothing above that; 241 is not used by any routing daemon we know of.
/// `packaging/` ships `rt_protos.d/meshd.conf` with the line `241 meshd`.
pub const MESHD_ROUTE_PROTOCOL: u8 = 241;
