//! `[paths]` of meshd.toml as the data plane's path policy: uplink distances, each peer's
//! preferred uplink and endpoint, and probe timers. The ranking rules themselves live with the
//! configuration (mesh_config::path_settings), so the data plane and the documentation of the
//! keys cannot drift apart; this file only translates between the two crates' types.

use std::net::SocketAddr;

use mesh_config::path_settings::{self, PathsSection};
use mesh_config::{Endpoint, Host};
use meshd_tunnel::path::{LocalUplink, PathPolicy, ProberConfig};

/// The data plane's view of `[paths]`.
#[derive(Debug, Clone)]
pub struct ConfiguredPaths(PathsSection);

impl ConfiguredPaths {
    pub fn new(section: PathsSection) -> Self {
        ConfiguredPaths(section)
    }
}

fn endpoint(addr: &SocketAddr) -> Endpoint {
    Endpoint::new(Host::Ip(addr.ip()), addr.port())
}

impl PathPolicy for ConfiguredPaths {
    /// Uplink distance first, then the endpoint's rank; a peer's `preferred_endpoint` given
    /// as an address counts (one given as a name is compared with the addresses it was
    /// resolved to only by the peer's own order).
    fn preference(
        &self,
        peer: &str,
        local: Option<&LocalUplink>,
        _local_rank: usize,
        endpoints: &[SocketAddr],
        remote: usize,
    ) -> u8 {
        let local = local.map(|l| path_settings::LocalUplink {
            interface: &l.interface,
            address: l.address,
        });
        let distance = self.0.uplink_distance(peer, local);
        let advertised: Vec<Endpoint> = endpoints.iter().map(endpoint).collect();
        let rank = endpoints.get(remote).map_or(remote, |e| {
            self.0.endpoint_rank(peer, &advertised, &endpoint(e))
        });
        path_settings::path_preference(distance, rank)
    }

    fn prober_config(&self, peer: &str) -> ProberConfig {
        let timers = self.0.timers(peer);
        ProberConfig {
            fast_interval: timers.probe_interval,
            idle_interval: timers.idle_probe_interval,
            standby_interval: timers.standby_probe_interval,
            miss_limit: u32::from(timers.probe_misses),
            failback_hold: timers.failback_hold,
            ..ProberConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> PathsSection {
        let config = mesh_config::parse(
            &format!("[node]\nname = \"alpha\"\nrole = \"core\"\n\n{text}"),
            std::path::Path::new("meshd.toml"),
        )
        .unwrap();
        config.paths
    }

    fn wan(n: u8, address: &str) -> LocalUplink {
        LocalUplink {
            address: address.parse().unwrap(),
            interface: format!("wan{n}"),
        }
    }

    #[test]
    fn uplink_distance_comes_before_the_endpoint_order() {
        let policy = ConfiguredPaths::new(section(
            "[paths]\n[[paths.uplink]]\ninterface = \"wan1\"\ndistance = 2\n",
        ));
        let endpoints: Vec<SocketAddr> = vec![
            "198.51.100.2:51820".parse().unwrap(),
            "203.0.113.2:51820".parse().unwrap(),
        ];
        let backup = wan(1, "198.51.100.1");
        let primary = wan(2, "203.0.113.1");
        let pref = |l: &LocalUplink, r| policy.preference("beta", Some(l), 0, &endpoints, r);
        assert!(pref(&primary, 1) < pref(&backup, 0), "distance first");
        assert!(
            pref(&primary, 0) < pref(&primary, 1),
            "then the peer's order"
        );
    }

    #[test]
    fn a_peer_can_prefer_an_uplink_and_have_its_own_timers() {
        let policy = ConfiguredPaths::new(section(
            "[paths]\nprobe_interval_ms = 200\n\n[[paths.peer]]\nname = \"beta\"\n\
             preferred_uplink = \"wan2\"\nprobe_misses = 5\nfailback_hold = 30\n",
        ));
        let endpoints: Vec<SocketAddr> = vec!["198.51.100.2:51820".parse().unwrap()];
        let (one, two) = (wan(1, "198.51.100.1"), wan(2, "203.0.113.1"));
        assert!(
            policy.preference("beta", Some(&two), 1, &endpoints, 0)
                < policy.preference("beta", Some(&one), 0, &endpoints, 0)
        );
        let beta = policy.prober_config("beta");
        assert_eq!(beta.fast_interval, std::time::Duration::from_millis(200));
        assert_eq!(beta.miss_limit, 5);
        assert_eq!(beta.failback_hold, std::time::Duration::from_secs(30));
        assert_eq!(policy.prober_config("gamma").miss_limit, 3);
    }
}
