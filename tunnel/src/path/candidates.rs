//! The candidate paths of a peer: every local uplink address x every remote endpoint of the
//! same address family, ranked for the prober. Pure.
//!
//! Rank (the prober's `preference`, 0 = most preferred) is the remote endpoint's position in
//! the peer's list (the order it advertises: primary first) plus the local address's
//! position in ours (primary uplink first). So both primaries are the first choice, the two
//! "one primary, one backup" crossings come next and tie (the prober picks the faster one
//! between equals), and backup to backup is last: the seed's "distance 1 / distance 2".
//!
//! Without any known local address of a family (the uplink monitor is not running, or the
//! sockets are bound to one address as in tests) the family's paths have no local address
//! and the kernel chooses the source, as before multihoming.

use std::net::{IpAddr, SocketAddr};

use super::prober::{Path, PathCandidate, PathSource};

/// Candidates for `endpoints` (the peer's, in its order) from `locals` (ours, in our order).
pub fn candidates(endpoints: &[SocketAddr], locals: &[IpAddr]) -> Vec<PathCandidate> {
    let mut out = Vec::new();
    for (remote_rank, remote) in endpoints.iter().enumerate() {
        let same_family: Vec<IpAddr> = locals
            .iter()
            .copied()
            .filter(|l| l.is_ipv4() == remote.is_ipv4())
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
                preference: rank(remote_rank, 0),
                source,
            });
            continue;
        }
        for (local_rank, local) in same_family.into_iter().enumerate() {
            out.push(PathCandidate {
                path: Path {
                    local: Some(local),
                    remote: *remote,
                },
                preference: rank(remote_rank, local_rank),
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

    #[test]
    fn two_uplinks_each_side_make_four_ranked_paths() {
        let remotes = [addr("198.51.100.2:51820"), addr("203.0.113.2:51820")];
        let locals = [ip("198.51.100.1"), ip("203.0.113.1")];
        let got: Vec<_> = candidates(&remotes, &locals)
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
        let locals = [ip("198.51.100.1")];
        let got: Vec<_> = candidates(&remotes, &locals)
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
        assert!(candidates(&[], &[ip("198.51.100.1")]).is_empty());
    }
}
