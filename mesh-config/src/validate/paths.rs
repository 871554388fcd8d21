//! Checks of `[dns]` (name servers, TTL bounds) and `[paths]` (probe timers, uplink
//! distances, per-peer overrides).

use super::Checker;
use crate::dns::{DnsSection, MAX_TTL_LIMIT};
use crate::names::check_ifname;
use crate::path::KeyPath;
use crate::path_settings::{
    MAX_FAILBACK_HOLD, MAX_UPLINK_DISTANCE, PROBE_INTERVAL_RANGE_MS, PROBE_MISSES_RANGE,
    PathsSection, PeerPaths, UplinkDistance,
};

/// The probe and failback keys of `[paths]` and `[[paths.peer]]`, as optional values.
struct Timers {
    probe_interval_ms: Option<u32>,
    idle_probe_interval_ms: Option<u32>,
    standby_probe_interval_ms: Option<u32>,
    probe_misses: Option<u8>,
    failback_hold: Option<u32>,
}

impl Checker {
    pub(super) fn dns(&mut self, dns: &DnsSection, path: &KeyPath) {
        self.unique(&path.key("servers"), &dns.servers, (None, "server"), |s| s);
        for (i, server) in dns.servers.iter().enumerate() {
            if server.0.port() == 0 {
                self.report(
                    &path.key("servers").index(i),
                    format!("{server}: port 0 is not a name server's port (default 53)"),
                );
            }
        }
        if dns.min_ttl == 0 {
            self.report(
                &path.key("min_ttl"),
                "0 seconds would ask the name servers without pause; use at least 1 (default 30)",
            );
        }
        if dns.max_ttl > MAX_TTL_LIMIT {
            self.report(
                &path.key("max_ttl"),
                format!(
                    "{} seconds is more than a day ({MAX_TTL_LIMIT}); default 3600",
                    dns.max_ttl
                ),
            );
        } else if dns.max_ttl < dns.min_ttl {
            self.report(
                &path.key("max_ttl"),
                format!(
                    "{} seconds is less than min_ttl ({} seconds)",
                    dns.max_ttl, dns.min_ttl
                ),
            );
        }
    }

    pub(super) fn paths(&mut self, paths: &PathsSection, path: &KeyPath) {
        self.timers(
            &Timers {
                probe_interval_ms: Some(paths.probe_interval_ms),
                idle_probe_interval_ms: Some(paths.idle_probe_interval_ms),
                standby_probe_interval_ms: Some(paths.standby_probe_interval_ms),
                probe_misses: Some(paths.probe_misses),
                failback_hold: Some(paths.failback_hold),
            },
            path,
        );
        let uplinks = path.key("uplink");
        for (i, uplink) in paths.uplinks.iter().enumerate() {
            self.uplink(uplink, &uplinks.index(i));
        }
        let keys: Vec<UplinkKey> = paths
            .uplinks
            .iter()
            .map(|u| UplinkKey(u.interface.clone(), u.address))
            .collect();
        self.unique(&uplinks, &keys, (None, "uplink"), |k| k);
        let peers = path.key("peer");
        self.unique(&peers, &paths.peers, (Some("name"), "name"), |p| &p.name);
        for (i, peer) in paths.peers.iter().enumerate() {
            self.peer_paths(peer, &peers.index(i));
        }
    }

    fn peer_paths(&mut self, peer: &PeerPaths, path: &KeyPath) {
        self.name(&path.key("name"), &peer.name);
        self.timers(
            &Timers {
                probe_interval_ms: peer.probe_interval_ms,
                idle_probe_interval_ms: peer.idle_probe_interval_ms,
                standby_probe_interval_ms: peer.standby_probe_interval_ms,
                probe_misses: peer.probe_misses,
                failback_hold: peer.failback_hold,
            },
            path,
        );
    }

    fn uplink(&mut self, uplink: &UplinkDistance, path: &KeyPath) {
        match (&uplink.interface, uplink.address) {
            (Some(_), Some(_)) => self.report(
                path,
                "give either interface or address, not both (one [[paths.uplink]] each)",
            ),
            (None, None) => self.report(
                path,
                "an uplink needs an interface (\"wan1\") or an address (\"198.51.100.1\")",
            ),
            (Some(interface), None) => {
                if let Err(message) = check_ifname(interface) {
                    self.report(&path.key("interface"), message);
                }
            }
            (None, Some(_)) => {}
        }
        if !(1..=MAX_UPLINK_DISTANCE).contains(&uplink.distance) {
            self.report(
                &path.key("distance"),
                format!(
                    "distance {} is out of range; expected 1 (primary) to {MAX_UPLINK_DISTANCE}",
                    uplink.distance
                ),
            );
        }
    }

    fn timers(&mut self, timers: &Timers, path: &KeyPath) {
        for (key, value) in [
            ("probe_interval_ms", timers.probe_interval_ms),
            ("idle_probe_interval_ms", timers.idle_probe_interval_ms),
            (
                "standby_probe_interval_ms",
                timers.standby_probe_interval_ms,
            ),
        ] {
            if let Some(ms) = value
                && !PROBE_INTERVAL_RANGE_MS.contains(&ms)
            {
                self.report(
                    &path.key(key),
                    format!(
                        "{ms} ms is out of range; expected {} to {} milliseconds",
                        PROBE_INTERVAL_RANGE_MS.start(),
                        PROBE_INTERVAL_RANGE_MS.end()
                    ),
                );
            }
        }
        if let Some(misses) = timers.probe_misses
            && !PROBE_MISSES_RANGE.contains(&misses)
        {
            self.report(
                &path.key("probe_misses"),
                format!(
                    "{misses} is out of range; expected {} to {} lost probes (default 3)",
                    PROBE_MISSES_RANGE.start(),
                    PROBE_MISSES_RANGE.end()
                ),
            );
        }
        if let Some(hold) = timers.failback_hold
            && hold > MAX_FAILBACK_HOLD
        {
            self.report(
                &path.key("failback_hold"),
                format!("{hold} seconds is more than an hour ({MAX_FAILBACK_HOLD}); default 10"),
            );
        }
    }
}

/// What makes two `[[paths.uplink]]` entries the same uplink.
#[derive(PartialEq, Eq, Hash)]
struct UplinkKey(Option<String>, Option<std::net::IpAddr>);

impl std::fmt::Display for UplinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.0, &self.1) {
            (Some(interface), _) => write!(f, "interface {interface}"),
            (None, Some(address)) => write!(f, "address {address}"),
            (None, None) => f.write_str("(none)"),
        }
    }
}
