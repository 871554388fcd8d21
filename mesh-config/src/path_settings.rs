//! `[paths]`: how the paths to each peer (a local uplink address x a remote endpoint address)
//! are probed and which of them carries the traffic. Not to be confused with [`crate::path`],
//! the key paths of error messages.
//!
//! Preference works like the distance of a router's static routes (primary/backup, "distance
//! 1 / distance 2"): lower wins, and a path with a lower distance takes the traffic back once it
//! has been up for `failback_hold`. Two things rank a path:
//! 1. the local uplink it leaves by: `[[paths.uplink]]` gives interfaces or addresses a
//!    distance (unlisted ones have distance 1);
//! 2. the remote endpoint: the order of the peer's own `[node] endpoints` (the first is its
//!    primary), unless this node names another one as `preferred_endpoint` for that peer.
//!
//! The uplink distance is compared first, then the endpoint order; among equals the lower RTT
//! wins (with hysteresis, in the data plane).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::names::check_ifname;
use crate::serde_str::serde_via_str;

/// Milliseconds between probes of the active path while traffic flows (BFD-style checking).
pub const DEFAULT_PROBE_INTERVAL_MS: u32 = 100;
/// Milliseconds between probes of the active path while no traffic flows.
pub const DEFAULT_IDLE_PROBE_INTERVAL_MS: u32 = 2_000;
/// Milliseconds between probes of each standby path.
pub const DEFAULT_STANDBY_PROBE_INTERVAL_MS: u32 = 10_000;
/// Probes lost in a row before a path is down (BFD's detect multiplier).
pub const DEFAULT_PROBE_MISSES: u8 = 3;
/// Seconds a more preferred path must stay up before traffic moves back to it.
pub const DEFAULT_FAILBACK_HOLD: u32 = 10;
/// The distance of an uplink that `[[paths.uplink]]` does not list.
pub const DEFAULT_UPLINK_DISTANCE: u8 = 1;
/// Distances run from 1 to this; see [`path_preference`].
pub const MAX_UPLINK_DISTANCE: u8 = 15;
/// Probe intervals accepted, in milliseconds: from 10 ms to one hour.
pub const PROBE_INTERVAL_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=3_600_000;
/// Probe misses accepted before a path is declared down.
pub const PROBE_MISSES_RANGE: std::ops::RangeInclusive<u8> = 1..=50;
/// The longest failback hold-down accepted, in seconds.
pub const MAX_FAILBACK_HOLD: u32 = 3_600;

/// `[paths]` in `meshd.toml`: defaults for every peer, uplink distances and per-peer overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    #[serde(default = "default_probe_interval")]
    pub probe_interval_ms: u32,
    #[serde(default = "default_idle_probe_interval")]
    pub idle_probe_interval_ms: u32,
    #[serde(default = "default_standby_probe_interval")]
    pub standby_probe_interval_ms: u32,
    #[serde(default = "default_probe_misses")]
    pub probe_misses: u8,
    /// Seconds.
    #[serde(default = "default_failback_hold")]
    pub failback_hold: u32,
    /// `[[paths.uplink]]`: the distance of local uplinks.
    #[serde(default, rename = "uplink", skip_serializing_if = "Vec::is_empty")]
    pub uplinks: Vec<UplinkDistance>,
    /// `[[paths.peer]]`: settings for one peer (a member or a `[[peer]]`), by name.
    #[serde(default, rename = "peer", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerPaths>,
}

/// One `[[paths.uplink]]`: an interface or a local address, and its distance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkDistance {
    /// The interface (every address on it), e.g. `"wan1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// One local address, e.g. `"198.51.100.1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// 1 (primary) to 15; lower is preferred.
    pub distance: u8,
}

/// One `[[paths.peer]]`: what differs for one peer. Absent keys take the `[paths]` values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPaths {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_interval_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_probe_interval_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_probe_interval_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_misses: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_hold: Option<u32>,
    /// The local uplink (interface or address) to reach this peer by first, whatever the
    /// distances say: e.g. the ISP the peer shares with us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_uplink: Option<Uplink>,
    /// The peer's endpoint to use first instead of the first one it advertises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_endpoint: Option<Endpoint>,
}

/// A local uplink as written in `preferred_uplink`: an interface name or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Uplink {
    Interface(String),
    Address(IpAddr),
}

impl FromStr for Uplink {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Uplink::Address(ip));
        }
        check_ifname(s).map_err(|reason| {
            format!("{s:?} is neither a local address nor an interface name: {reason}")
        })?;
        Ok(Uplink::Interface(s.to_owned()))
    }
}

impl fmt::Display for Uplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uplink::Interface(name) => f.write_str(name),
            Uplink::Address(ip) => ip.fmt(f),
        }
    }
}

serde_via_str!(
    Uplink,
    "an interface name such as \"wan1\" or a local address such as \"198.51.100.1\""
);

/// The probe timers of one peer, with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathTimers {
    pub probe_interval: Duration,
    pub idle_probe_interval: Duration,
    pub standby_probe_interval: Duration,
    pub probe_misses: u8,
    pub failback_hold: Duration,
}

/// A local address that paths leave from, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalUplink<'a> {
    pub interface: &'a str,
    pub address: IpAddr,
}

/// The data plane's preference of a path (0 is the most preferred): the uplink distance
/// first, then the endpoint's rank (its place in the peer's list, the preferred one first);
/// ranks past 15 are equal.
pub fn path_preference(distance: u8, endpoint_rank: usize) -> u8 {
    let rank = u8::try_from(endpoint_rank.min(15)).unwrap_or(15);
    distance.saturating_mul(16).saturating_add(rank)
}

impl PathsSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn peer(&self, name: &str) -> Option<&PeerPaths> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The probe timers for peer `name`.
    pub fn timers(&self, name: &str) -> PathTimers {
        let peer = self.peer(name);
        let pick = |own: Option<u32>, default: u32| u64::from(own.unwrap_or(default));
        PathTimers {
            probe_interval: Duration::from_millis(pick(
                peer.and_then(|p| p.probe_interval_ms),
                self.probe_interval_ms,
            )),
            idle_probe_interval: Duration::from_millis(pick(
                peer.and_then(|p| p.idle_probe_interval_ms),
                self.idle_probe_interval_ms,
            )),
            standby_probe_interval: Duration::from_millis(pick(
                peer.and_then(|p| p.standby_probe_interval_ms),
                self.standby_probe_interval_ms,
            )),
            probe_misses: peer
                .and_then(|p| p.probe_misses)
                .unwrap_or(self.probe_misses),
            failback_hold: Duration::from_secs(pick(
                peer.and_then(|p| p.failback_hold),
                self.failback_hold,
            )),
        }
    }

    /// The distance of a path to peer `name` leaving by `local` (`None`: the kernel chooses):
    /// 0 for the peer's `preferred_uplink`, else the `[[paths.uplink]]` entry for the address
    /// or, failing that, for the interface, else [`DEFAULT_UPLINK_DISTANCE`].
    pub fn uplink_distance(&self, name: &str, local: Option<LocalUplink<'_>>) -> u8 {
        let Some(local) = local else {
            return DEFAULT_UPLINK_DISTANCE;
        };
        let preferred = self.peer(name).and_then(|p| p.preferred_uplink.as_ref());
        let matches = |uplink: &Uplink| match uplink {
            Uplink::Interface(interface) => interface == local.interface,
            Uplink::Address(address) => *address == local.address,
        };
        if preferred.is_some_and(matches) {
            return 0;
        }
        let by_address = self
            .uplinks
            .iter()
            .find(|u| u.address == Some(local.address));
        let by_interface = || {
            self.uplinks
                .iter()
                .find(|u| u.interface.as_deref() == Some(local.interface))
        };
        by_address
            .or_else(by_interface)
            .map_or(DEFAULT_UPLINK_DISTANCE, |u| u.distance)
    }

    /// The rank of `endpoint` among peer `name`'s `advertised` endpoints (in the peer's order):
    /// its place in the list, with this node's `preferred_endpoint` for the peer moved first.
    /// An endpoint not in the list (a learned address) ranks last.
    pub fn endpoint_rank(&self, name: &str, advertised: &[Endpoint], endpoint: &Endpoint) -> usize {
        let preferred = self.peer(name).and_then(|p| p.preferred_endpoint.as_ref());
        if preferred == Some(endpoint) {
            return 0;
        }
        let Some(index) = advertised.iter().position(|e| e == endpoint) else {
            return advertised.len() + 1;
        };
        let moved_ahead = preferred.is_some_and(|p| advertised[..index].contains(p));
        if preferred.is_some() && !moved_ahead {
            index + 1
        } else {
            index
        }
    }
}

impl Default for PathsSection {
    fn default() -> Self {
        PathsSection {
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            idle_probe_interval_ms: DEFAULT_IDLE_PROBE_INTERVAL_MS,
            standby_probe_interval_ms: DEFAULT_STANDBY_PROBE_INTERVAL_MS,
            probe_misses: DEFAULT_PROBE_MISSES,
            failback_hold: DEFAULT_FAILBACK_HOLD,
            uplinks: Vec::new(),
            peers: Vec::new(),
        }
    }
}

fn default_probe_interval() -> u32 {
    DEFAULT_PROBE_INTERVAL_MS
}

fn default_idle_probe_interval() -> u32 {
    DEFAULT_IDLE_PROBE_INTERVAL_MS
}

fn default_standby_probe_interval() -> u32 {
    DEFAULT_STANDBY_PROBE_INTERVAL_MS
}

fn default_probe_misses() -> u8 {
    DEFAULT_PROBE_MISSES
}

fn default_failback_hold() -> u32 {
    DEFAULT_FAILBACK_HOLD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> PathsSection {
        toml::from_str(text).unwrap()
    }

    fn endpoints(list: &[&str]) -> Vec<Endpoint> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn peers_override_the_timers_they_name() {
        let paths = section(
            "probe_interval_ms = 200\n[[peer]]\nname = \"beta\"\nfailback_hold = 30\n\
             probe_misses = 5\n",
        );
        let beta = paths.timers("beta");
        assert_eq!(beta.probe_interval, Duration::from_millis(200));
        assert_eq!(beta.failback_hold, Duration::from_secs(30));
        assert_eq!(beta.probe_misses, 5);
        let gamma = paths.timers("gamma");
        assert_eq!(gamma.failback_hold, Duration::from_secs(10));
        assert_eq!(gamma.standby_probe_interval, Duration::from_secs(10));
    }

    #[test]
    fn uplink_distance_prefers_the_peer_choice_then_address_then_interface() {
        let paths = section(
            "[[uplink]]\ninterface = \"wan2\"\ndistance = 2\n\
             [[uplink]]\naddress = \"203.0.113.9\"\ndistance = 3\n\
             [[peer]]\nname = \"beta\"\npreferred_uplink = \"wan2\"\n",
        );
        let wan1 = LocalUplink {
            interface: "wan1",
            address: "198.51.100.1".parse().unwrap(),
        };
        let wan2 = LocalUplink {
            interface: "wan2",
            address: "203.0.113.1".parse().unwrap(),
        };
        let wan2_other = LocalUplink {
            interface: "wan2",
            address: "203.0.113.9".parse().unwrap(),
        };
        assert_eq!(paths.uplink_distance("gamma", Some(wan1)), 1);
        assert_eq!(paths.uplink_distance("gamma", Some(wan2)), 2);
        assert_eq!(paths.uplink_distance("gamma", Some(wan2_other)), 3);
        assert_eq!(paths.uplink_distance("beta", Some(wan2)), 0);
        assert_eq!(paths.uplink_distance("beta", None), 1);
    }

    #[test]
    fn endpoint_rank_follows_the_peer_order_with_the_preferred_first() {
        let list = endpoints(&["a.example:1", "b.example:1", "c.example:1"]);
        let paths = section("[[peer]]\nname = \"beta\"\npreferred_endpoint = \"c.example:1\"\n");
        let rank = |peer: &str, e: &str| paths.endpoint_rank(peer, &list, &e.parse().unwrap());
        assert_eq!(rank("gamma", "a.example:1"), 0);
        assert_eq!(rank("gamma", "c.example:1"), 2);
        assert_eq!(rank("beta", "c.example:1"), 0);
        assert_eq!(rank("beta", "a.example:1"), 1);
        assert_eq!(rank("beta", "b.example:1"), 2);
        assert_eq!(rank("gamma", "learned.example:1"), 4);
    }

    #[test]
    fn preference_orders_by_distance_then_rank() {
        assert_eq!(path_preference(0, 0), 0);
        assert!(path_preference(1, 15) < path_preference(2, 0));
        assert_eq!(path_preference(1, 99), path_preference(1, 15));
        assert_eq!(path_preference(MAX_UPLINK_DISTANCE, 15), 255);
    }
}
