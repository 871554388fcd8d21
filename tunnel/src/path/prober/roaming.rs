//! Learned paths: where authenticated traffic of the peer comes from (roaming, NAT), when
//! traffic follows it there, and when a learned path that stopped answering is dropped.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::PathProber;
use super::action::SwitchReason;
use super::config::{MAX_FAILED_ROAMS, ROAM_HOLD};
use super::path::{Path, PathCandidate, PathSource, PathState};

impl PathProber {
    /// An authenticated packet of the peer (WireGuard message or valid probe request) came
    /// from `remote` to our `local` address. A path not seen yet becomes a learned candidate
    /// (Up). An Unknown path becomes Up; a Down one does not (only a probe reply proves our
    /// direction works: receiving alone says nothing about one-way failures).
    pub fn authenticated_from(&mut self, remote: SocketAddr, local: Option<IpAddr>, now: Instant) {
        self.last_now = Some(now);
        if local.is_some_and(|ip| self.gone_locals.contains(&ip)) {
            return;
        }
        let exact = self
            .paths
            .iter()
            .position(|e| e.path().remote == remote && e.path().local == local);
        let loose = || {
            self.paths.iter().position(|e| {
                e.path().remote == remote && (e.path().local.is_none() || local.is_none())
            })
        };
        match exact.or_else(loose) {
            Some(i) => {
                let e = &mut self.paths[i];
                if e.state == PathState::Unknown && !e.local_gone {
                    e.state = PathState::Up;
                    e.up_since = Some(now);
                }
            }
            None => {
                if self.paths.len() >= self.cfg.max_paths {
                    return;
                }
                // A remote address no path of ours goes to: the peer sends from somewhere
                // it does not advertise (it moved, or a NAT rebinds), so that is where it
                // can be answered, as WireGuard's roaming does. A known remote reached on
                // another local address is only the peer's choice of path, not a move.
                let moved = !self.paths.iter().any(|e| e.path().remote == remote);
                let mut e = self.new_entry(PathCandidate {
                    path: Path { local, remote },
                    preference: self.cfg.learned_preference,
                    source: PathSource::Learned,
                });
                e.state = PathState::Up;
                e.up_since = Some(now);
                let id = e.id;
                self.paths.push(e);
                let active_is_learned = self
                    .active
                    .and_then(|a| self.index(a))
                    .is_some_and(|a| self.paths[a].candidate.source == PathSource::Learned);
                // Roaming follows the peer at once, as WireGuard does (it restarted on
                // another address). But an address we roamed to lately and that then did not
                // answer (a multihomed peer's packet that left by the wrong uplink, with no
                // source rule) does not take a working path away again: it is a candidate,
                // probed like the others, and takes over only if the active path fails.
                // Otherwise every stray packet from it is a switch to a dead end.
                let failed_lately = self
                    .failed_roams
                    .iter()
                    .any(|(r, at)| *r == remote && now.saturating_duration_since(*at) < ROAM_HOLD);
                let active_works = self
                    .active
                    .and_then(|a| self.index(a))
                    .is_some_and(|a| self.paths[a].state == PathState::Up);
                // (An active learnt path is left for the new one regardless, below.)
                let keep_active = self.supported && failed_lately && active_works;
                if active_is_learned || (moved && self.active.is_some() && !keep_active) {
                    let from = self.active_path();
                    let to = self.index(id);
                    self.switch(from, to, SwitchReason::Roamed, now);
                }
            }
        }
        self.evaluate(now);
    }

    /// Drops the learned paths that are Down and not active (a stale NAT mapping or an old
    /// roam), remembering their addresses for [`ROAM_HOLD`].
    pub(super) fn forget_stale_learned(&mut self, now: Instant) {
        let active = self.active;
        let failed_roams = &mut self.failed_roams;
        failed_roams.retain(|(_, at)| now.saturating_duration_since(*at) < ROAM_HOLD);
        self.paths.retain(|e| {
            let stale = e.candidate.source == PathSource::Learned
                && e.state == PathState::Down
                && Some(e.id) != active;
            if stale && failed_roams.len() < MAX_FAILED_ROAMS {
                failed_roams.push((e.path().remote, now));
            }
            !stale
        });
    }
}
