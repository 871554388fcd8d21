//! The candidate paths of a peer: every local uplink address x every remote endpoint of the
//! same address family, ranked for the prober. Pure.
//!
//! Rank (the prober's `preference`, 0 = most preferred) comes from a [`PathPolicy`]: the
//! agent's is `[paths]` in meshd.toml (uplink distances, preferred uplink and endpoint per
//! peer, probe timers). Without one, [`DefaultPolicy`]: the remote endpoint's position in the
//! peer's list (the order it advertises: primary first) plus the local address's position in
//! ours (primary uplink first). So both primaries are the first choice, the two "one primary,
//! one backup" crossings come next and tie (the prober picks the faster one between equals),
//! and backup to backup is last: the seed's "distance 1 / distance 2".
//!
//! Without any known local address of a family (the uplink monitor is not running, or the
//! sockets are bound to one address as in tests) the family's paths have no local address
//! and the kernel chooses the source, as before multihoming.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::prober::{Path, PathCandidate, PathSource, ProberConfig};

/// A local address paths can leave from, and the interface it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUplink {
    pub address: IpAddr,
    pub interface: String,
}

/// How this node ranks the paths to a peer and times their probes.
pub trait PathPolicy: Send + Sync + fmt::Debug {
    /// The preference (0 is best; `u8::MAX` is kept for learned paths) of the path to
    /// `peer` from `local` (`None`: the kernel chooses; `local_rank`: its place in our
    /// uplinks, primary first) to `endpoints[remote]` (the peer's endpoints, in its order).
    fn preference(
        &self,
        peer: &str,
        local: Option<&LocalUplink>,
        local_rank: usize,
        endpoints: &[SocketAddr],
        remote: usize,
    ) -> u8;

    /// The probe timers and thresholds for `peer`.
    fn prober_config(&self, peer: &str) -> ProberConfig;
}

/// Endpoint order plus uplink order, default timers (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl PathPolicy for DefaultPolicy {
    fn preference(
        &self,
        _peer: &str,
        _local: Option<&LocalUplink>,
        local_rank: usize,
        _endpoints: &[SocketAddr],
        remote: usize,
    ) -> u8 {
        rank(remote, local_rank)
    }

    fn prober_config(&self, _peer: &str) -> ProberConfig {
        ProberConfig::default()
    }
}

/// Candidates for `peer`'s `endpoints` (in its order) from `locals` (ours, in our order),
/// ranked by `policy`.
pub fn candidates(
    peer: &str,
    endpoints: &[SocketAddr],
    locals: &[LocalUplink],
    policy: &dyn PathPolicy,
) -> Vec<PathCandidate> {
    let mut out = Vec::new();
    for (remote_rank, remote) in endpoints.iter().enumerate() {
        let same_family: Vec<&LocalUplink> = locals
            .iter()
            .filter(|l| l.address.is_ipv4() == remote.is_ipv4())
            .collect();
        let source = PathSource::Configured {
            name: remote.to_string(),
        };
        if same_family.is_empty() {
            out.push(PathCandidate {
                path: Path {
                    local: None,
                    remote: *remote,
                },
                preference: policy
                    .preference(peer, None, 0, endpoints, remote_rank)
                    .min(u8::MAX - 1),
                source,
            });
            continue;
        }
        for (local_rank, local) in same_family.into_iter().enumerate() {
            out.push(PathCandidate {
                path: Path {
                    local: Some(local.address),
                    remote: *remote,
                },
                preference: policy
                    .preference(peer, Some(local), local_rank, endpoints, remote_rank)
                    .min(u8::MAX - 1),
                source: source.clone(),
            });
        }
    }
    // The prober breaks ties by candidate order: most preferred first.
    out.sort_by_key(|c| c.preference);
    out
}

/// Learned paths use `u8::MAX`, so configured ones stay below it.
fn rank(remote: usize, local: usize) -> u8 {
    u8::try_from(remote + local)
        .unwrap_or(u8::MAX - 1)
        .min(u8::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn locals(addresses: &[&str]) -> Vec<LocalUplink> {
        addresses
            .iter()
            .enumerate()
            .map(|(i, a)| LocalUplink {
                address: ip(a),
                interface: format!("wan{}", i + 1),
            })
            .collect()
    }

    fn candidates(endpoints: &[SocketAddr], addresses: &[&str]) -> Vec<PathCandidate> {
        super::candidates("beta", endpoints, &locals(addresses), &DefaultPolicy)
    }

    #[test]
    fn two_uplinks_each_side_make_four_ranked_paths() {
        let remotes = [addr("198.51.100.2:51820"), addr("203.0.113.2:51820")];
        let got: Vec<_> = candidates(&remotes, &["198.51.100.1", "203.0.113.1"])
            .into_iter()
            .map(|c| (c.path.to_string(), c.preference))
            .collect();
        assert_eq!(
            got,
            vec![
                ("198.51.100.1 -> 198.51.100.2:51820".to_string(), 0),
                ("203.0.113.1 -> 198.51.100.2:51820".to_string(), 1),
                ("198.51.100.1 -> 203.0.113.2:51820".to_string(), 1),
                ("203.0.113.1 -> 203.0.113.2:51820".to_string(), 2),
            ]
        );
    }

    #[test]
    fn families_pair_only_with_their_own() {
        let remotes = [addr("[2001:db8::2]:51820"), addr("198.51.100.2:51820")];
        let got: Vec<_> = candidates(&remotes, &["198.51.100.1"])
            .into_iter()
            .map(|c| c.path.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "* -> [2001:db8::2]:51820".to_string(),
                "198.51.100.1 -> 198.51.100.2:51820".to_string(),
            ]
        );
    }

    #[test]
    fn no_endpoints_no_candidates() {
        assert!(candidates(&[], &["198.51.100.1"]).is_empty());
    }
}
