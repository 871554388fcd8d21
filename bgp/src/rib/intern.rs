//! Interning of paths: equal paths (same peer, next hop and attributes) share one allocation,
//! whichever UPDATE they came in. Peers send routes with the same attributes in many UPDATEs
//! (a full table from one upstream has far fewer distinct attribute sets than prefixes), so the
//! RIB keeps one copy of each. Paths no prefix uses any more are swept out as the set grows.

use std::collections::HashSet;
use std::sync::Arc;

use super::Path;

/// Sweep no more often than after this many new entries.
const MIN_SWEEP_GROWTH: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Interner {
    paths: HashSet<Arc<Path>>,
    /// Size after the last sweep: the next one comes when the set has doubled since.
    live_after_sweep: usize,
}

impl Interner {
    /// The shared copy of `path`.
    pub(super) fn intern(&mut self, path: Path) -> Arc<Path> {
        if let Some(shared) = self.paths.get(&path) {
            return shared.clone();
        }
        if self.paths.len() >= 2 * self.live_after_sweep + MIN_SWEEP_GROWTH {
            self.sweep();
        }
        let shared = Arc::new(path);
        self.paths.insert(shared.clone());
        shared
    }

    /// Forgets paths only the interner still holds.
    fn sweep(&mut self) {
        self.paths.retain(|p| Arc::strong_count(p) > 1);
        self.live_after_sweep = self.paths.len();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(peer: u32) -> Path {
        Path {
            peer,
            next_hop: "198.51.100.2".parse().unwrap(),
            attrs: Arc::default(),
        }
    }

    #[test]
    fn equal_paths_share_and_unused_ones_go() {
        let mut i = Interner::default();
        let a = i.intern(path(1));
        let b = i.intern(path(1));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.intern(path(2))));
        drop((a, b));
        // Enough new paths to trigger a sweep: the unused ones are dropped.
        let kept: Vec<Arc<Path>> = (10..10 + MIN_SWEEP_GROWTH as u32 + 5)
            .map(|p| i.intern(path(p)))
            .collect();
        assert!(i.len() <= kept.len() + 1, "{} entries", i.len());
    }
}
