//! The RIB's prefix table, laid out for a full table's worth of prefixes: one hash map per
//! address family with compact keys (an IPv4 prefix is 8 bytes, not the 18 of `IpNet`), and a
//! 16-byte slot per prefix that holds its only path inline (the common case: one peer) and moves
//! to a separate list only when a second path arrives. Paths are `Arc`s, shared by all the
//! prefixes of one UPDATE. At a million IPv4 prefixes from one peer this is about 25 bytes per
//! bucket, with no allocation per prefix.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Path, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key4 {
    addr: u32,
    len: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key6 {
    addr: [u8; 16],
    len: u8,
}

/// The paths to one prefix and which of them is best.
#[derive(Debug)]
pub(super) enum Slot {
    One {
        path: Arc<Path>,
        /// Whether the path is the best (it may be unusable: next hop unreachable).
        best: bool,
    },
    Many(Box<Many>),
}

#[derive(Debug)]
pub(super) struct Many {
    paths: Vec<Arc<Path>>,
    best: Option<usize>,
}

impl Slot {
    pub(super) fn paths(&self) -> &[Arc<Path>] {
        match self {
            Slot::One { path, .. } => std::slice::from_ref(path),
            Slot::Many(many) => &many.paths,
        }
    }

    pub(super) fn best(&self) -> Option<&Arc<Path>> {
        match self {
            Slot::One { path, best } => best.then_some(path),
            Slot::Many(many) => many.paths.get(many.best?),
        }
    }

    fn set_best(&mut self, index: Option<usize>) {
        match self {
            Slot::One { best, .. } => *best = index == Some(0),
            Slot::Many(many) => many.best = index,
        }
    }

    /// Adds or replaces the path of `path.peer`.
    fn upsert(&mut self, path: Arc<Path>) -> Upsert {
        let same = |a: &Arc<Path>| Arc::ptr_eq(a, &path) || **a == *path;
        match self {
            Slot::One { path: old, best } if old.peer == path.peer => {
                if same(old) {
                    return Upsert::Unchanged;
                }
                *old = path;
                *best = false;
                Upsert::Replaced
            }
            Slot::One { path: old, .. } => {
                // Most prefixes have one or two paths: room for exactly two.
                let paths = vec![old.clone(), path];
                *self = Slot::Many(Box::new(Many { paths, best: None }));
                Upsert::Added
            }
            Slot::Many(many) => {
                let done = match many.paths.iter_mut().find(|p| p.peer == path.peer) {
                    Some(old) if same(old) => return Upsert::Unchanged,
                    Some(old) => {
                        *old = path;
                        Upsert::Replaced
                    }
                    None => {
                        many.paths.reserve_exact(1);
                        many.paths.push(path);
                        Upsert::Added
                    }
                };
                many.best = None;
                done
            }
        }
    }

    /// Removes `peer`'s path. `None` if it had none; else whether the slot is now empty.
    fn remove(&mut self, peer: PeerId) -> Option<bool> {
        match self {
            Slot::One { path, .. } => (path.peer == peer).then_some(true),
            Slot::Many(many) => {
                let at = many.paths.iter().position(|p| p.peer == peer)?;
                many.paths.swap_remove(at);
                many.best = None;
                if many.paths.len() == 1 {
                    let path = many.paths.pop()?;
                    *self = Slot::One { path, best: false };
                }
                Some(false)
            }
        }
    }
}

/// What [`Table::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upsert {
    /// Exactly this path was there.
    Unchanged,
    /// The peer's path was replaced by another.
    Replaced,
    /// The peer had no path to the prefix.
    Added,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    v4: HashMap<Key4, Slot>,
    v6: HashMap<Key6, Slot>,
}

pub(super) fn key4(net: &Ipv4Net) -> Key4 {
    Key4 {
        addr: u32::from(net.addr()),
        len: net.prefix_len(),
    }
}

pub(super) fn key6(net: &Ipv6Net) -> Key6 {
    Key6 {
        addr: net.addr().octets(),
        len: net.prefix_len(),
    }
}

pub(super) fn net4(k: &Key4) -> IpNet {
    // Keys are only made from valid prefixes.
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(k.addr), k.len).unwrap_or_default())
}

pub(super) fn net6(k: &Key6) -> IpNet {
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(k.addr), k.len).unwrap_or_default())
}

impl Table {
    pub(super) fn get(&self, prefix: &IpNet) -> Option<&Slot> {
        match prefix {
            IpNet::V4(n) => self.v4.get(&key4(n)),
            IpNet::V6(n) => self.v6.get(&key6(n)),
        }
    }

    fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut Slot> {
        match prefix {
            IpNet::V4(n) => self.v4.get_mut(&key4(n)),
            IpNet::V6(n) => self.v6.get_mut(&key6(n)),
        }
    }

    /// Adds or replaces `path.peer`'s path to `prefix`.
    pub(super) fn upsert(&mut self, prefix: IpNet, path: Arc<Path>) -> Upsert {
        let new = |path| Slot::One { path, best: false };
        let slot = match prefix {
            IpNet::V4(n) => match self.v4.entry(key4(&n)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(new(path));
                    return Upsert::Added;
                }
            },
            IpNet::V6(n) => match self.v6.entry(key6(&n)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(new(path));
                    return Upsert::Added;
                }
            },
        };
        slot.upsert(path)
    }

    /// Removes `peer`'s path to `prefix` (and the prefix with its last path); false if there
    /// was none.
    pub(super) fn remove(&mut self, prefix: IpNet, peer: PeerId) -> bool {
        let Some(emptied) = self.get_mut(&prefix).and_then(|slot| slot.remove(peer)) else {
            return false;
        };
        if emptied {
            match prefix {
                IpNet::V4(n) => self.v4.remove(&key4(&n)),
                IpNet::V6(n) => self.v6.remove(&key6(&n)),
            };
        }
        true
    }

    pub(super) fn set_best(&mut self, prefix: &IpNet, best: Option<usize>) {
        if let Some(slot) = self.get_mut(prefix) {
            slot.set_best(best);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (IpNet, &Slot)> {
        let v4 = self.v4.iter().map(|(k, s)| (net4(k), s));
        let v6 = self.v6.iter().map(|(k, s)| (net6(k), s));
        v4.chain(v6)
    }

    /// The prefixes whose paths satisfy `pred`.
    pub(super) fn prefixes_where(&self, pred: impl Fn(&[Arc<Path>]) -> bool) -> Vec<IpNet> {
        self.iter()
            .filter(|(_, slot)| pred(slot.paths()))
            .map(|(p, _)| p)
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(peer: PeerId) -> Arc<Path> {
        Arc::new(Path {
            peer,
            next_hop: "198.51.100.2".parse().unwrap(),
            attrs: Arc::default(),
        })
    }

    #[test]
    fn slots_stay_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(std::mem::size_of::<Key4>(), 8);
    }

    #[test]
    fn one_path_inline_then_many_then_one_again() {
        let mut t = Table::default();
        let p: IpNet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(t.upsert(p, path(1)), Upsert::Added);
        assert_eq!(
            t.upsert(p, path(1)),
            Upsert::Unchanged,
            "the same path again changes nothing"
        );
        assert!(matches!(t.get(&p), Some(Slot::One { .. })));
        assert_eq!(t.upsert(p, path(2)), Upsert::Added);
        assert!(matches!(t.get(&p), Some(Slot::Many(_))));
        t.set_best(&p, Some(1));
        assert_eq!(t.get(&p).unwrap().best().unwrap().peer, 2);
        assert!(t.remove(p, 2));
        assert!(!t.remove(p, 2));
        let slot = t.get(&p).unwrap();
        assert!(matches!(slot, Slot::One { .. }));
        assert!(slot.best().is_none(), "best is chosen again after a change");
        assert!(t.remove(p, 1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn keys_round_trip_both_families() {
        let mut t = Table::default();
        let nets: Vec<IpNet> = ["0.0.0.0/0", "10.1.0.0/16", "2001:db8::/32", "::/0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for n in &nets {
            t.upsert(*n, path(1));
        }
        let mut back: Vec<IpNet> = t.iter().map(|(n, _)| n).collect();
        back.sort();
        let mut expected = nets.clone();
        expected.sort();
        assert_eq!(back, expected);
    }
}
