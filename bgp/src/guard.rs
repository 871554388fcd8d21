//! A hook for checks beyond import policy that every received route must pass: the mesh uses
//! it to refuse routes a member's certificate does not authorise (the agent's `routing::authority`).
//! The speaker asks the guard after import policy and treats a refusal as a withdrawal.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Where a received route comes from, as far as the session and its attributes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSource {
    /// The neighbour's configured address (for the mesh's iBGP sessions, a member's overlay
    /// address, which only that member's tunnel may send from).
    pub neighbor: IpAddr,
    /// An iBGP session (same AS).
    pub internal: bool,
    /// RFC 4456 ORIGINATOR_ID: set when a route reflector passed the route on.
    pub originator_id: Option<Ipv4Addr>,
    /// The AS path names another AS: the route entered this AS from outside (through an
    /// eBGP session somewhere), rather than being originated inside it.
    pub external_path: bool,
}

/// Decides whether a received route may enter the RIB.
pub trait ImportGuard: Send + Sync + Debug {
    /// `Err` with the reason (for the log) when the route must be refused.
    fn check(&self, prefix: &IpNet, source: &RouteSource) -> Result<(), String>;
}
