//! What the prober works on and reports: a path, where it came from, its rank as offered,
//! its state, and the measurements `meshd peers` shows.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[cfg(doc)]
use super::LOSS_WINDOW;

/// A way to reach a peer: from a local address (`None`: the kernel chooses) to a remote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    pub local: Option<IpAddr>,
    pub remote: SocketAddr,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            Some(local) => write!(f, "{local} -> {}", self.remote),
            None => write!(f, "* -> {}", self.remote),
        }
    }
}

/// Where a candidate path came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSource {
    /// From a configured or advertised endpoint; `name` is the endpoint as written
    /// (`vpn.example.net:51820` or an address).
    Configured { name: String },
    /// Where authenticated traffic of the peer came from (roaming, NAT).
    Learned,
}

/// A path the shell offers, with its rank: `preference` 0 is the most preferred (primary),
/// larger numbers are backups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathCandidate {
    pub path: Path,
    pub preference: u8,
    pub source: PathSource,
}

/// What probing says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathState {
    /// Not answered yet (new path, or probing suspended for this peer).
    Unknown,
    Up,
    /// Probes lost in a row, or its local address is gone.
    Down,
}

impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathState::Unknown => "unknown",
            PathState::Up => "up",
            PathState::Down => "down",
        })
    }
}

/// One path as `meshd peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStats {
    pub path: Path,
    pub path_id: u32,
    pub source: PathSource,
    pub preference: u8,
    pub state: PathState,
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    /// Probes lost among the last `sampled` (at most [`LOSS_WINDOW`]).
    pub lost: u32,
    pub sampled: u32,
    pub consecutive_misses: u32,
    pub up_since: Option<Instant>,
    pub active: bool,
}

impl PathStats {
    /// Lost share of the recent probes, 0.0 ..= 1.0 (0 before any probe).
    pub fn loss(&self) -> f64 {
        if self.sampled == 0 {
            0.0
        } else {
            f64::from(self.lost) / f64::from(self.sampled)
        }
    }
}
