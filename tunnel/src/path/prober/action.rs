//! What the prober asks of the shell ([`PathAction`]) and why traffic moved ([`SwitchReason`]).

use std::fmt;
use std::net::IpAddr;

#[cfg(doc)]
use super::PathProber;
use super::path::Path;

/// Why traffic moved. `Display` is the text of the shell's log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SwitchReason {
    /// The peer had no active path before.
    FirstPath,
    /// This many probes in a row went unanswered on the active path.
    ProbesLost(u32),
    /// The active path's local address went away.
    LocalAddressGone(IpAddr),
    /// The active path is no longer a candidate (endpoints or DNS answer changed).
    Removed,
    /// A more preferred path was Up for the failback hold.
    Failback,
    /// A path of the same preference was clearly faster for the latency hold.
    LowerLatency,
    /// The active path lost this share (percent) of its recent probes.
    HighLoss(u32),
    /// Authenticated traffic of the peer came from a new address while we used a learned one.
    Roamed,
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchReason::FirstPath => f.write_str("first path"),
            SwitchReason::ProbesLost(n) => write!(f, "active path down: {n} probes lost"),
            SwitchReason::LocalAddressGone(ip) => write!(f, "local address {ip} gone"),
            SwitchReason::Removed => f.write_str("active path no longer a candidate"),
            SwitchReason::Failback => f.write_str("failback to preferred"),
            SwitchReason::LowerLatency => f.write_str("lower latency"),
            SwitchReason::HighLoss(p) => write!(f, "active path lost {p} % of probes"),
            SwitchReason::Roamed => f.write_str("peer roamed to a new address"),
        }
    }
}

/// What the shell/core must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathAction {
    /// Send a probe request on `path` with these `path_id` and `seq`
    /// ([`crate::path::probe::Probe::request`]); its reply goes to [`PathProber::probe_reply`].
    SendProbe { path: Path, path_id: u32, seq: u64 },
    /// The peer's traffic goes on `to` from now on (`None`: no candidate left).
    Switched {
        from: Option<Path>,
        to: Option<Path>,
        reason: SwitchReason,
    },
    /// No path works: re-resolve the peer's endpoint names now.
    Resolve,
}
