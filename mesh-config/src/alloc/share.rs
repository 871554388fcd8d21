//! Splitting the number space between copies of the CA registry, so that two CA holders that
//! never hear of each other (a partition, or a standby that took over while the old holder was
//! only cut off) still never hand out one number twice (docs/architecture.md, "The CA: backup,
//! move, and a standby").
//!
//! The rule: when a registry is shared by `holders` copies, copy number `slot` hands out only
//! the numbers `k` with `k % holders == slot`, of every kind a holder counts: node indexes
//! (IPv4 prefixes), core /64s of pool6, and the /80s of each core. Each kind has one counter
//! per residue class ([`Counter`]), so a number tells by itself whose it is: learning that the
//! other copy handed out `k` moves only the counter of `k`'s class, and nothing of this copy's
//! own class is burnt by the other's progress. Two copies' counters merge by taking the larger
//! of each class, in any order, any number of times.
//!
//! Why residues rather than two ranges of the pool: a range needs a boundary fixed at the
//! split, which either wastes the half the standby never uses or makes the active holder run
//! out early; with residues both copies count from where the registry stood, and the cost is
//! that one copy alone can use only its share of what was left at the split.
//!
//! A registry from before this (one holder) has single counters and behaves as it always did.

use std::fmt;

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::{Allocator, NodeAllocation};
use crate::schema::Role;

/// Most copies a registry may be split into.
pub const MAX_HOLDERS: u32 = 8;

/// How a registry is shared: `holders` copies, this one is number `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub holders: u32,
    pub slot: u32,
}

impl Share {
    /// The registry of a single holder (what every registry was before the split).
    pub const SOLE: Share = Share {
        holders: 1,
        slot: 0,
    };

    /// Whether the registry is split at all.
    pub fn is_sole(&self) -> bool {
        self.holders == 1
    }

    /// `holders` in 1..=MAX_HOLDERS and `slot` below it.
    pub fn check(&self) -> Result<(), String> {
        if self.holders == 0 || self.holders > MAX_HOLDERS {
            return Err(format!(
                "{} holders is out of range 1..={MAX_HOLDERS}",
                self.holders
            ));
        }
        if self.slot >= self.holders {
            return Err(format!(
                "slot {} is not below the {} holders",
                self.slot, self.holders
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_sole() {
            f.write_str("every number")
        } else {
            write!(
                f,
                "the numbers n with n mod {} = {} (copy {} of {})",
                self.holders,
                self.slot,
                self.slot + 1,
                self.holders
            )
        }
    }
}

/// One counter per residue class: element `r` is the next number `k` with
/// `k % holders == r` that has not been handed out (by any copy this registry heard of).
/// Every number of class `r` below element `r` is handed out or burnt.
///
/// Stored as a plain number when there is one class (the format of every registry before the
/// split), as an array otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter(Vec<u32>);

impl Counter {
    /// The counter of a registry with one holder.
    pub fn single(next: u32) -> Self {
        Counter(vec![next])
    }

    /// Per class, the next number (for a registry record).
    pub fn classes(&self) -> &[u32] {
        &self.0
    }

    /// A counter from its classes, if they are consistent: each element is in its class.
    pub fn from_classes(classes: Vec<u32>) -> Result<Self, String> {
        let counter = Counter(classes);
        counter.check_classes()?;
        Ok(counter)
    }

    /// How many classes (= holders).
    pub fn holders(&self) -> u32 {
        u32::try_from(self.0.len()).expect("at most MAX_HOLDERS classes")
    }

    /// The next number copy `slot` hands out.
    pub fn next(&self, slot: u32) -> u32 {
        self.0[slot as usize]
    }

    /// The smallest next number over all classes: numbers below it are all handed out.
    pub fn low(&self) -> u32 {
        self.0.iter().copied().min().unwrap_or(0)
    }

    /// The largest: numbers at or above it are all free.
    pub fn high(&self) -> u32 {
        self.0.iter().copied().max().unwrap_or(0)
    }

    /// Copy `slot` handed out its next number.
    pub fn advance(&mut self, slot: u32) {
        let n = self.holders();
        let class = &mut self.0[slot as usize];
        *class = class.saturating_add(n);
    }

    /// Number `k` was handed out (by whichever copy `k`'s class belongs to): that class's
    /// counter moves past it, no other.
    pub fn pass(&mut self, k: u32) {
        let n = self.holders();
        let class = &mut self.0[(k % n) as usize];
        *class = (*class).max(k.saturating_add(n));
    }

    /// Whether `k` is below its class's counter: handed out or burnt as this registry knows.
    pub fn covers(&self, k: u32) -> bool {
        k < self.0[(k % self.holders()) as usize]
    }

    /// Takes the larger of each class from `other` (same number of holders).
    pub fn merge(&mut self, other: &Counter) -> Result<bool, String> {
        if other.0.len() != self.0.len() {
            return Err(format!(
                "a counter of {} classes cannot be merged into one of {}",
                other.0.len(),
                self.0.len()
            ));
        }
        let mut moved = false;
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            if theirs > mine {
                *mine = *theirs;
                moved = true;
            }
        }
        Ok(moved)
    }

    /// Every class moves `count` of its numbers on, none past `limit` (rounded up into the
    /// class): for numbers a lost copy may have handed out.
    pub fn skip(&mut self, count: u32, limit: u32) {
        let n = self.holders();
        for (r, class) in self.0.iter_mut().enumerate() {
            let cap = round_up_into(limit, r as u32, n);
            *class = class
                .saturating_add(count.saturating_mul(n))
                .min(cap)
                .max(*class);
        }
    }

    /// The same counter split into `holders` classes: each class starts at its first number
    /// at or above the single counter, so nothing below it is handed out again.
    pub fn split(&self, holders: u32) -> Result<Counter, String> {
        if self.0.len() != 1 {
            return Err("the registry is split already".into());
        }
        let next = self.0[0];
        Ok(Counter(
            (0..holders)
                .map(|r| round_up_into(next, r, holders))
                .collect(),
        ))
    }

    /// Each class's element is in its class.
    fn check_classes(&self) -> Result<(), String> {
        let n = self.0.len();
        if n == 0 || n > MAX_HOLDERS as usize {
            return Err(format!("{n} classes is out of range 1..={MAX_HOLDERS}"));
        }
        let n = n as u32;
        for (r, value) in self.0.iter().enumerate() {
            if value % n != r as u32 {
                return Err(format!(
                    "element {r} is {value}, which is not a number n with n mod {n} = {r}"
                ));
            }
        }
        Ok(())
    }

    /// The checks a stored counter passes: `holders` classes, each in its class, none zero,
    /// none past `max` by more than one step.
    pub(super) fn check_stored(&self, holders: u32, max: u64) -> Result<(), String> {
        if self.holders() != holders {
            return Err(format!(
                "{self} has {} classes, the registry {holders} holders",
                self.holders()
            ));
        }
        self.check_classes()
            .map_err(|problem| format!("{self}: {problem}"))?;
        for value in &self.0 {
            if *value == 0 || u64::from(*value) > max + u64::from(holders) - 1 {
                return Err(format!("{value} is out of range 1..={max}"));
            }
        }
        Ok(())
    }
}

/// As the file has it: `7`, or `[8, 7]`.
impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [single] = self.0.as_slice() {
            return write!(f, "{single}");
        }
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

/// The smallest number at or above `at_least` whose residue mod `n` is `r`.
fn round_up_into(at_least: u32, r: u32, n: u32) -> u32 {
    let base = at_least - at_least % n;
    let candidate = base.saturating_add(r);
    if candidate >= at_least {
        candidate
    } else {
        candidate.saturating_add(n)
    }
}

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let [single] = self.0.as_slice() {
            return s.serialize_u32(*single);
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for value in &self.0 {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CounterVisitor)
    }
}

struct CounterVisitor;

impl<'de> Visitor<'de> for CounterVisitor {
    type Value = Counter;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a counter: a number, or an array of one number per holder")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Counter, E> {
        u32::try_from(value)
            .map(Counter::single)
            .map_err(|_| E::custom(format!("counter {value} is too large")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Counter, E> {
        u64::try_from(value)
            .map_err(|_| E::custom(format!("counter {value} is negative")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counter, A::Error> {
        let mut classes = Vec::new();
        while let Some(value) = seq.next_element::<u32>()? {
            if classes.len() >= MAX_HOLDERS as usize {
                return Err(de::Error::custom(format!(
                    "a counter has at most {MAX_HOLDERS} classes"
                )));
            }
            classes.push(value);
        }
        if classes.is_empty() {
            return Err(de::Error::custom("a counter has at least one class"));
        }
        Ok(Counter(classes))
    }
}

/// Every counter of a registry, per share class: what a CA registry record carries so that
/// the other copy knows how far this one went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Node indexes (IPv4 prefixes).
    pub node: Counter,
    /// /64s of pool6 for cores.
    pub core6: Counter,
    /// The /80s of each core, by the core's node index.
    pub spokes: BTreeMap<u32, Counter>,
}

/// Why a registry could not be split or its counters merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("the registry is shared by {0} copies already; it is split only once")]
    AlreadySplit(u32),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the other copy's counters are for {theirs} holder(s), this registry is shared by {ours}"
    )]
    Holders { ours: u32, theirs: u32 },
}

impl Allocator {
    /// Which numbers this copy hands out.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Splits a registry of one holder into `holders` copies; this copy keeps slot 0 (see
    /// [`Allocator::with_slot`] for the others). Every counter starts each class at its first
    /// number at or above where it stood, so nothing handed out before is handed out again.
    pub fn split(&mut self, holders: u32) -> Result<(), ShareError> {
        if !self.share.is_sole() {
            return Err(ShareError::AlreadySplit(self.share.holders));
        }
        let share = Share { holders, slot: 0 };
        share.check().map_err(ShareError::Invalid)?;
        if holders == 1 {
            return Ok(());
        }
        let split = |c: &Counter| c.split(holders).map_err(ShareError::Invalid);
        self.next_node = split(&self.next_node)?;
        self.next_core6 = split(&self.next_core6)?;
        for record in &mut self.records {
            record.next_spoke = split(&record.next_spoke)?;
        }
        self.share = share;
        Ok(())
    }

    /// The same registry as copy number `slot` of the split: what another CA copy (a standby)
    /// starts from.
    pub fn with_slot(&self, slot: u32) -> Result<Allocator, ShareError> {
        let share = Share {
            holders: self.share.holders,
            slot,
        };
        share.check().map_err(ShareError::Invalid)?;
        let mut copy = self.clone();
        copy.share = share;
        Ok(copy)
    }

    /// Every counter, for a registry record.
    pub fn counters(&self) -> Counters {
        Counters {
            node: self.next_node.clone(),
            core6: self.next_core6.clone(),
            spokes: self
                .records
                .iter()
                .filter(|r| r.allocation.role == Role::Core)
                .map(|r| (r.allocation.index, r.next_spoke.clone()))
                .collect(),
        }
    }

    /// Moves this registry's counters up to another copy's (per class, never back). The /80
    /// counters of a core this registry does not know yet are left out: they come again with
    /// the next record, and the other copy's numbers are never this copy's anyway. True if a
    /// counter moved.
    pub fn merge_counters(&mut self, theirs: &Counters) -> Result<bool, ShareError> {
        let ours = self.share.holders;
        let holders_of = |c: &Counter| c.holders();
        let mismatched = std::iter::once(&theirs.node)
            .chain(std::iter::once(&theirs.core6))
            .chain(theirs.spokes.values())
            .find(|c| holders_of(c) != ours);
        if let Some(c) = mismatched {
            return Err(ShareError::Holders {
                ours,
                theirs: c.holders(),
            });
        }
        let limit4 = u32::try_from(self.plan.node_prefix_count4()).unwrap_or(u32::MAX);
        let limit6 = u32::try_from(self.plan.core_prefix_count6()).unwrap_or(u32::MAX);
        let spokes = u32::try_from(super::SPOKES_PER_CORE).unwrap_or(u32::MAX);
        let mut moved = merge_within(&mut self.next_node, &theirs.node, limit4)?;
        moved |= merge_within(&mut self.next_core6, &theirs.core6, limit6)?;
        for record in &mut self.records {
            if record.allocation.role != Role::Core {
                continue;
            }
            if let Some(counter) = theirs.spokes.get(&record.allocation.index) {
                moved |= merge_within(&mut record.next_spoke, counter, spokes)?;
            }
        }
        Ok(moved)
    }

    /// How many nodes the registry ever recorded (live and revoked): a position for
    /// [`Allocator::nodes_since`].
    pub fn node_count(&self) -> usize {
        self.records.len()
    }

    /// The nodes recorded after position `from`, in order, with whether each is revoked.
    pub fn nodes_since(&self, from: usize) -> impl Iterator<Item = (&NodeAllocation, bool)> {
        self.records
            .iter()
            .skip(from)
            .map(|r| (&r.allocation, r.revoked))
    }

    /// Names of revoked nodes, each once.
    pub fn revoked_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .records
            .iter()
            .filter(|r| r.revoked && self.live(&r.allocation.name).is_none())
            .map(|r| r.allocation.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Merges a counter that must stay a valid stored counter (each class in its class, within
/// the pool): a counter from a record is checked first.
fn merge_within(ours: &mut Counter, theirs: &Counter, max: u32) -> Result<bool, ShareError> {
    theirs
        .check_stored(ours.holders(), u64::from(max))
        .map_err(|problem| {
            ShareError::Invalid(format!("a counter of the other copy: {problem}"))
        })?;
    ours.merge(theirs).map_err(ShareError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_counter_starts_each_class_at_or_above_the_single_one() {
        let split = Counter::single(5).split(2).unwrap();
        assert_eq!(split.classes(), [6, 5]);
        let split = Counter::single(6).split(2).unwrap();
        assert_eq!(split.classes(), [6, 7]);
        let split = Counter::single(1).split(3).unwrap();
        assert_eq!(split.classes(), [3, 1, 2]);
        assert!(split.split(2).is_err());
        for k in 0..5 {
            assert!(Counter::single(5).split(2).unwrap().covers(k), "{k}");
        }
        assert!(!Counter::single(5).split(2).unwrap().covers(5));
    }

    #[test]
    fn passing_a_number_moves_only_its_class() {
        let mut c = Counter::from_classes(vec![6, 5]).unwrap();
        c.pass(11);
        assert_eq!(c.classes(), [6, 13]);
        c.pass(3);
        assert_eq!(c.classes(), [6, 13], "already below the counter");
        c.advance(0);
        assert_eq!(c.classes(), [8, 13]);
        let mut single = Counter::single(4);
        single.pass(9);
        assert_eq!(single.classes(), [10]);
    }

    #[test]
    fn merging_takes_the_larger_of_each_class_in_any_order() {
        let a = Counter::from_classes(vec![10, 5]).unwrap();
        let b = Counter::from_classes(vec![6, 9]).unwrap();
        let mut ab = a.clone();
        assert!(ab.merge(&b).unwrap());
        let mut ba = b.clone();
        assert!(ba.merge(&a).unwrap());
        assert_eq!(ab, ba);
        assert_eq!(ab.classes(), [10, 9]);
        assert!(!ab.merge(&a).unwrap(), "idempotent");
        assert!(ab.merge(&Counter::single(3)).is_err());
    }

    #[test]
    fn skipping_stays_in_the_class_and_below_the_limit() {
        let mut c = Counter::from_classes(vec![6, 5]).unwrap();
        c.skip(2, 100);
        assert_eq!(c.classes(), [10, 9]);
        c.skip(1000, 100);
        assert_eq!(c.classes(), [100, 101]);
        assert!(Counter::from_classes(c.classes().to_vec()).is_ok());
    }

    #[test]
    fn stored_counters_read_old_and_new_forms_and_bad_ones_are_refused() {
        let old: Counter = serde_json::from_str("7").unwrap();
        assert_eq!(old, Counter::single(7));
        assert_eq!(serde_json::to_string(&old).unwrap(), "7");
        let split: Counter = serde_json::from_str("[8,7]").unwrap();
        assert_eq!(serde_json::to_string(&split).unwrap(), "[8,7]");
        assert!(split.check_stored(2, 255).is_ok());
        assert!(split.check_stored(1, 255).is_err());
        let wrong: Counter = serde_json::from_str("[7,8]").unwrap();
        assert!(wrong.check_stored(2, 255).is_err());
        assert!(serde_json::from_str::<Counter>("[]").is_err());
        assert!(serde_json::from_str::<Counter>("-1").is_err());
        assert!(serde_json::from_str::<Counter>("[1,2,3,4,5,6,7,8,9]").is_err());
        assert!(Counter::single(0).check_stored(1, 255).is_err());
        assert!(Counter::single(256).check_stored(1, 255).is_err());
        assert!(Counter::single(255).check_stored(1, 255).is_ok());
    }

    mod registry {
        use std::collections::HashSet;

        use super::super::super::adopt::tests::{known, plan};
        use super::super::super::{Allocator, NodeAllocation};
        use super::*;
        use proptest::prelude::*;

        /// A registry with two cores and a spoke, split: the holder's copy and the standby's.
        fn split_pair() -> (Allocator, Allocator) {
            let mut holder = Allocator::new(plan()).unwrap();
            holder
                .allocate_node("alpha", Role::Core, None, None)
                .unwrap();
            holder
                .allocate_node("beta", Role::Core, None, None)
                .unwrap();
            holder
                .allocate_node("s1", Role::Spoke, Some("alpha"), None)
                .unwrap();
            holder.split(2).unwrap();
            let standby = holder.with_slot(1).unwrap();
            (holder, standby)
        }

        #[test]
        fn a_registry_without_a_share_is_read_and_written_as_before() {
            let mut a = Allocator::new(plan()).unwrap();
            a.allocate_node("alpha", Role::Core, None, None).unwrap();
            a.allocate_node("s", Role::Spoke, Some("alpha"), None)
                .unwrap();
            let text = serde_json::to_string(&a).unwrap();
            assert!(!text.contains("share"), "{text}");
            assert!(text.contains(r#""next_node_index":3"#), "{text}");
            assert!(text.contains(r#""next_spoke":2"#), "{text}");
            let back: Allocator = serde_json::from_str(&text).unwrap();
            assert_eq!(back, a);
            assert_eq!(back.share(), Share::SOLE);
            // And it hands out what it always did.
            let mut back = back;
            assert_eq!(
                back.allocate_node("c", Role::Core, None, None)
                    .unwrap()
                    .index,
                3
            );
        }

        #[test]
        fn split_copies_hand_out_their_own_classes_only_and_survive_a_reload() {
            let (mut holder, mut standby) = split_pair();
            assert_eq!(
                holder.share(),
                Share {
                    holders: 2,
                    slot: 0
                }
            );
            assert_eq!(
                standby.share(),
                Share {
                    holders: 2,
                    slot: 1
                }
            );
            let h = holder.allocate_node("h1", Role::Core, None, None).unwrap();
            let s = standby
                .allocate_node("s-1", Role::Core, None, None)
                .unwrap();
            // Counter 4 before the split: class 0 goes on at 4, class 1 at 5.
            assert_eq!((h.index, s.index), (4, 5));
            assert_ne!(h.ipv6, s.ipv6);
            let hs = holder
                .allocate_node("hs", Role::Spoke, Some("alpha"), None)
                .unwrap();
            let ss = standby
                .allocate_node("ss", Role::Spoke, Some("alpha"), None)
                .unwrap();
            assert_ne!(hs.ipv6, ss.ipv6);
            assert_eq!((hs.index, ss.index), (6, 7));
            for copy in [&holder, &standby] {
                let text = serde_json::to_string(copy).unwrap();
                assert!(text.contains(r#""share":{"holders":2"#), "{text}");
                let back: Allocator = serde_json::from_str(&text).unwrap();
                assert_eq!(&back, copy);
            }
            assert_eq!(
                holder.split(2),
                Err(ShareError::AlreadySplit(2)),
                "split only once"
            );
        }

        #[test]
        fn merging_counters_never_moves_one_back_and_keeps_each_copys_class() {
            let (mut holder, mut standby) = split_pair();
            for i in 0..3 {
                holder
                    .allocate_node(&format!("h{i}"), Role::Core, None, None)
                    .unwrap();
            }
            let before = standby.counters();
            assert!(standby.merge_counters(&holder.counters()).unwrap());
            let after = standby.counters();
            assert_eq!(after.node.classes(), [10, before.node.classes()[1]]);
            // The standby's own next number is unchanged: the holder's progress burns
            // none of it.
            let next = standby.allocate_node("s", Role::Core, None, None).unwrap();
            assert_eq!(next.index, 5);
            // Merging an older record does nothing.
            assert!(!standby.merge_counters(&before).unwrap());
            // A record of another split is refused.
            let mut sole = Allocator::new(plan()).unwrap();
            sole.allocate_node("x", Role::Core, None, None).unwrap();
            assert!(matches!(
                standby.merge_counters(&sole.counters()),
                Err(ShareError::Holders { ours: 2, theirs: 1 })
            ));
            // A counter out of its class is refused, and changes nothing.
            let mut bad = holder.counters();
            bad.node = Counter(vec![11, 13]);
            let kept = standby.clone();
            assert!(standby.merge_counters(&bad).is_err());
            assert_eq!(standby, kept);
        }

        #[test]
        fn a_stored_record_outside_its_class_counter_is_refused() {
            let (holder, _) = split_pair();
            let text = serde_json::to_string(&holder).unwrap();
            let edited = text.replace(r#""next_node_index":[4,5]"#, r#""next_node_index":[4,3]"#);
            assert_ne!(edited, text);
            let err = serde_json::from_str::<Allocator>(&edited).unwrap_err();
            assert!(err.to_string().contains("next_node_index"), "{err}");
            let wrong_slot = text.replace(r#""slot":0"#, r#""slot":2"#);
            assert!(serde_json::from_str::<Allocator>(&wrong_slot).is_err());
        }

        #[derive(Debug, Clone)]
        enum Step {
            /// Copy 0 or 1 admits a core, or a spoke of the n-th live core it knows.
            Core(u8),
            Spoke(u8, u8),
            /// Copy 0 or 1 hears of the other: counters and nodes.
            Merge(u8),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u8..2).prop_map(Step::Core),
                (0u8..2, any::<u8>()).prop_map(|(c, n)| Step::Spoke(c, n)),
                (0u8..2).prop_map(Step::Merge),
            ]
        }

        proptest! {
            /// Two copies admit in any interleaving, hearing of each other sometimes or never
            /// (a partition): no node index, /64 or /80 is ever given twice, and each copy
            /// stays loadable.
            #[test]
            fn two_copies_never_hand_out_one_number_twice(steps in proptest::collection::vec(step(), 1..60)) {
                let (holder, standby) = split_pair();
                let mut copies = [holder, standby];
                let mut given: Vec<NodeAllocation> = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    match step {
                        Step::Core(c) => {
                            let copy = &mut copies[usize::from(*c)];
                            if let Ok(a) = copy.allocate_node(&format!("n{i}"), Role::Core, None, None) {
                                given.push(a);
                            }
                        }
                        Step::Spoke(c, n) => {
                            let copy = &mut copies[usize::from(*c)];
                            let cores: Vec<String> = copy
                                .nodes()
                                .filter(|a| a.role == Role::Core)
                                .map(|a| a.name.clone())
                                .collect();
                            let core = &cores[usize::from(*n) % cores.len()];
                            if let Ok(a) = copy.allocate_node(&format!("n{i}"), Role::Spoke, Some(core), None) {
                                given.push(a);
                            }
                        }
                        Step::Merge(c) => {
                            let (to, from) = if *c == 0 { (0, 1) } else { (1, 0) };
                            let theirs = copies[from].clone();
                            let mine = &mut copies[to];
                            // Cores first, as the merge of a registry record does.
                            let mut nodes: Vec<&NodeAllocation> = theirs.nodes().collect();
                            nodes.sort_by_key(|a| a.role != Role::Core);
                            for a in nodes {
                                mine.adopt_node(known(a)).unwrap();
                            }
                            mine.merge_counters(&theirs.counters()).unwrap();
                        }
                    }
                }
                let mut index = HashSet::new();
                let mut ipv6 = HashSet::new();
                for a in &given {
                    prop_assert!(index.insert(a.index), "index {} twice", a.index);
                    prop_assert!(ipv6.insert(a.ipv6), "{} twice", a.ipv6);
                }
                for copy in &copies {
                    let text = serde_json::to_string(copy).unwrap();
                    let back: Allocator = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(&back, copy);
                }
            }
        }
    }
}
