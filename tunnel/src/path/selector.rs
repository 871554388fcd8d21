//! Which path a peer's packets take: a pure decision, separate from the tunnel.
//!
//! A path today is a remote endpoint (the local socket follows from its address family).
//! The policy for now: use the address we last received authenticated traffic from
//! (roaming, NAT rebinding); before that, the configured endpoints in order; when a
//! handshake goes unanswered, move on to the next configured endpoint. The multihoming work
//! replaces the policy (probes, latency, local uplinks) behind the same events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a handshake may go unanswered before we try the next endpoint (WireGuard's
/// REKEY_TIMEOUT: boringtun retransmits the initiation on the same schedule).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The path decision for one peer.
#[derive(Debug, Clone)]
pub struct PathSelector {
    configured: Vec<SocketAddr>,
    /// Position in `configured` to use while nothing was learned.
    next_configured: usize,
    /// Where authenticated traffic last came from, and when.
    learned: Option<(SocketAddr, Instant)>,
}

impl PathSelector {
    /// A selector over the configured endpoints (which may be empty for a peer that calls us).
    pub fn new(configured: Vec<SocketAddr>) -> Self {
        PathSelector {
            configured,
            next_configured: 0,
            learned: None,
        }
    }

    /// The path to send on now, if any is known.
    pub fn current(&self) -> Option<SocketAddr> {
        self.learned
            .map(|(addr, _)| addr)
            .or_else(|| self.configured.get(self.next_configured).copied())
    }

    /// An authenticated packet of this peer arrived from `from`: reply there.
    pub fn on_authenticated(&mut self, from: SocketAddr, now: Instant) {
        self.learned = Some((from, now));
    }

    /// A handshake went unanswered for [`HANDSHAKE_TIMEOUT`]: the current path looks dead.
    pub fn on_handshake_timeout(&mut self, _now: Instant) {
        if self.configured.is_empty() {
            // The learned address is the only way to reach this peer; keep it.
            return;
        }
        if self.learned.take().is_none() {
            self.next_configured = (self.next_configured + 1) % self.configured.len();
        }
    }

    /// The path `addr` is known to be down (e.g. the local uplink went away).
    pub fn on_path_down(&mut self, addr: SocketAddr, now: Instant) {
        if self.learned.map(|(a, _)| a) == Some(addr) {
            self.learned = None;
        }
        if self.configured.get(self.next_configured) == Some(&addr) {
            self.on_handshake_timeout(now);
        }
    }

    /// New configured endpoints (membership update, a DNS name that moved). What was learned
    /// stays, unless it was one of the old configured endpoints and is not among the new
    /// ones: then the peer has left it (its name resolves elsewhere now).
    pub fn set_configured(&mut self, configured: Vec<SocketAddr>) {
        if configured != self.configured {
            if let Some((learned, _)) = self.learned
                && self.configured.contains(&learned)
                && !configured.contains(&learned)
            {
                self.learned = None;
            }
            self.configured = configured;
            self.next_configured = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_learned_endpoint_that_is_no_longer_configured_is_left() {
        let now = Instant::now();
        let (old, new) = (addr("198.51.100.2:51820"), addr("198.51.100.22:51820"));
        let mut p = PathSelector::new(vec![old]);
        p.on_authenticated(old, now);
        p.set_configured(vec![new]);
        assert_eq!(p.current(), Some(new));
        // A learned address that was never configured (NAT) stays.
        let nat = addr("192.0.2.7:40000");
        p.on_authenticated(nat, now);
        p.set_configured(vec![old]);
        assert_eq!(p.current(), Some(nat));
    }

    #[test]
    fn starts_with_first_configured_endpoint() {
        let p = PathSelector::new(vec![addr("198.51.100.1:51820"), addr("203.0.113.1:51820")]);
        assert_eq!(p.current(), Some(addr("198.51.100.1:51820")));
        assert_eq!(PathSelector::new(vec![]).current(), None);
    }

    #[test]
    fn follows_authenticated_traffic() {
        let now = Instant::now();
        let mut p = PathSelector::new(vec![addr("198.51.100.1:51820")]);
        p.on_authenticated(addr("198.51.100.9:40000"), now);
        assert_eq!(p.current(), Some(addr("198.51.100.9:40000")));
        p.on_authenticated(addr("[2001:db8::9]:40001"), now + Duration::from_secs(1));
        assert_eq!(p.current(), Some(addr("[2001:db8::9]:40001")));
    }

    #[test]
    fn handshake_timeout_rotates_endpoints() {
        let now = Instant::now();
        let a = addr("198.51.100.1:51820");
        let b = addr("203.0.113.1:51820");
        let mut p = PathSelector::new(vec![a, b]);
        p.on_handshake_timeout(now);
        assert_eq!(p.current(), Some(b));
        p.on_handshake_timeout(now);
        assert_eq!(p.current(), Some(a));
        // A learned address that stops answering is dropped first.
        p.on_authenticated(addr("198.51.100.7:1"), now);
        p.on_handshake_timeout(now);
        assert_eq!(p.current(), Some(a));
    }

    #[test]
    fn learned_address_kept_when_nothing_configured() {
        let now = Instant::now();
        let mut p = PathSelector::new(vec![]);
        p.on_authenticated(addr("198.51.100.7:1"), now);
        p.on_handshake_timeout(now);
        assert_eq!(p.current(), Some(addr("198.51.100.7:1")));
    }

    #[test]
    fn path_down_moves_away() {
        let now = Instant::now();
        let a = addr("198.51.100.1:51820");
        let b = addr("203.0.113.1:51820");
        let mut p = PathSelector::new(vec![a, b]);
        p.on_path_down(a, now);
        assert_eq!(p.current(), Some(b));
        p.on_authenticated(a, now);
        p.on_path_down(a, now);
        assert_eq!(p.current(), Some(b));
    }
}
