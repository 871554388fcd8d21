use super::*;
use crate::alloc::AddressPlan;
use proptest::prelude::*;

fn plan() -> AddressPlan {
    AddressPlan::new(
        "10.0.0.0/8".parse().unwrap(),
        16,
        "fd00:1:2::/48".parse().unwrap(),
    )
    .unwrap()
}

/// A registry split for a standby: the holder (slot 0) and the standby's copy (slot 1).
fn split() -> (Allocator, Allocator) {
    let mut holder = Allocator::new(plan()).unwrap();
    holder
        .allocate_node("alpha", Role::Core, None, None)
        .unwrap();
    holder
        .allocate_node("beta", Role::Core, None, None)
        .unwrap();
    holder.split(2).unwrap();
    let standby = holder.with_slot(1).unwrap();
    (holder, standby)
}

fn record(holder: &Allocator, term: u64, version: u64) -> RegistryRecord {
    RegistryRecord::build(holder, "friends", term, "alpha", version, None)
}

#[test]
fn a_record_round_trips_and_the_standby_learns_names_prefixes_and_revocations() {
    let (mut holder, mut standby) = split();
    let gamma = holder
        .allocate_node("gamma", Role::Core, None, None)
        .unwrap();
    let home = holder
        .allocate_node("home", Role::Spoke, Some("beta"), None)
        .unwrap();
    holder
        .allocate_node("thrown", Role::Spoke, Some("gamma"), None)
        .unwrap();
    holder.revoke("thrown").unwrap();
    let sent = record(&holder, 1, 1);
    let back = RegistryRecord::parse(&sent.to_body()).unwrap();
    assert_eq!(back, sent);

    let merged = merge(&mut standby, &back).unwrap();
    assert_eq!(merged.added, ["gamma", "home"]);
    assert_eq!(merged.revoked, ["thrown"]);
    assert!(merged.counters_moved);
    assert!(merged.problems.is_empty(), "{:?}", merged.problems);
    assert_eq!(standby.node("gamma"), Some(&gamma));
    assert_eq!(standby.node("home"), Some(&home));
    assert!(standby.is_revoked("thrown"));
    // Merging again changes nothing.
    let again = merge(&mut standby, &back).unwrap();
    assert!(!again.changed(), "{again:?}");

    // What the standby hands out next collides with nothing the holder handed out.
    let mine = standby
        .allocate_node("delta", Role::Spoke, Some("gamma"), None)
        .unwrap();
    for theirs in holder.nodes_since(0).map(|(a, _)| a) {
        assert_ne!(mine.index, theirs.index, "{theirs:?}");
        assert_ne!(mine.ipv6, theirs.ipv6, "{theirs:?}");
    }
    assert!(matches!(
        standby.allocate_node("home", Role::Core, None, None),
        Err(crate::AllocError::DuplicateName(_))
    ));
}

#[test]
fn judgement_follows_term_holder_version_and_chain() {
    let (holder, _) = split();
    let body = record(&holder, 1, 5).to_body();
    let hash = "a".repeat(64);
    let head = Head {
        term: 2,
        holder: "beta".into(),
        version: 7,
        hash: Some(hash.clone()),
    };
    let older = record(&holder, 1, 9);
    assert!(
        matches!(judge(&head, &older, "x"), Judgement::Refuse(why) if why.contains("older than term 2 by beta"))
    );
    let mut same_term_other_holder = record(&holder, 2, 9);
    same_term_other_holder.holder = "gamma".into();
    assert!(matches!(
        judge(&head, &same_term_other_holder, "x"),
        Judgement::Refuse(_)
    ));
    let mut newer = record(&holder, 2, 8);
    newer.holder = "beta".into();
    newer.previous = Some(hash.clone());
    assert_eq!(
        judge(&head, &newer, "y"),
        Judgement::Merge {
            newer_term: false,
            missed: false
        }
    );
    newer.previous = Some("b".repeat(64));
    assert_eq!(
        judge(&head, &newer, "y"),
        Judgement::Merge {
            newer_term: false,
            missed: true
        }
    );
    newer.version = 7;
    assert_eq!(judge(&head, &newer, &hash), Judgement::Seen);
    assert!(matches!(judge(&head, &newer, "z"), Judgement::Refuse(_)));
    newer.version = 3;
    assert_eq!(judge(&head, &newer, "z"), Judgement::Seen);
    let take_over = record(&holder, 3, 1);
    assert_eq!(
        judge(&head, &take_over, "t"),
        Judgement::Merge {
            newer_term: true,
            missed: false
        }
    );
    assert!(body.len() < MAX_BODY_LEN);
}

#[test]
fn counters_of_another_split_refuse_the_whole_record() {
    let (holder, _) = split();
    let mut sole = Allocator::new(plan()).unwrap();
    let before = sole.clone();
    assert!(merge(&mut sole, &record(&holder, 1, 1)).is_err());
    assert_eq!(sole, before);
}

#[test]
fn contradicting_entries_are_named_and_the_rest_is_merged() {
    let (mut holder, mut standby) = split();
    holder
        .allocate_node("gamma", Role::Core, None, None)
        .unwrap();
    holder
        .allocate_node("epsilon", Role::Core, None, None)
        .unwrap();
    let mut sent = record(&holder, 1, 1);
    // A name the standby has with other prefixes.
    let alpha = sent.nodes.iter_mut().find(|n| n.name == "alpha").unwrap();
    alpha.ipv4 = "10.200.0.0/16".parse().unwrap();
    let merged = merge(&mut standby, &sent).unwrap();
    assert_eq!(merged.added, ["gamma", "epsilon"]);
    assert_eq!(merged.problems.len(), 1, "{:?}", merged.problems);
    assert!(merged.problems[0].starts_with("alpha:"), "{merged:?}");
}

#[test]
fn malformed_bodies_are_refused_with_the_reason() {
    let (holder, _) = split();
    let good: serde_json::Value = serde_json::from_slice(&record(&holder, 1, 1).to_body()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[key] = value;
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "cannot be read"),
        (b"{".to_vec(), "cannot be read"),
        (b"[]".to_vec(), "cannot be read"),
        (with("format", 2.into()), "format 2"),
        (with("term", 0.into()), "start at 1"),
        (with("term", (-1).into()), "cannot be read"),
        (with("holder", "Not A Name!".into()), "holder"),
        (with("previous", "zz".into()), "SHA-256"),
        (
            with(
                "nodes",
                serde_json::json!([{"name": "x", "role": "spoke",
            "ipv4": "10.9.0.0/16", "ipv6": "fd00:1:2:1:1::/80"}]),
            ),
            "no core",
        ),
        (
            with(
                "counters",
                serde_json::json!({"node": [3, 2], "core6": 3, "spokes": {}}),
            ),
            "disagree",
        ),
        (vec![b' '; MAX_BODY_LEN + 1], "more than"),
    ];
    for (body, want) in cases {
        let error = RegistryRecord::parse(&body).unwrap_err().to_string();
        assert!(error.contains(want), "{want}: {error}");
    }
}

proptest! {
    /// A network-facing parser: any bytes give a record or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = RegistryRecord::parse(&bytes);
    }

    /// A valid body with one byte changed or cut: never a panic, and what parses still
    /// merges without panicking.
    #[test]
    fn damaged_records_never_panic(position in any::<prop::sample::Index>(), byte in any::<u8>(),
        cut in any::<bool>()) {
        let (mut holder, standby) = split();
        holder.allocate_node("gamma", Role::Core, None, None).unwrap();
        holder.allocate_node("home", Role::Spoke, Some("gamma"), None).unwrap();
        let mut body = record(&holder, 1, 1).to_body();
        let at = position.index(body.len());
        if cut { body.truncate(at) } else { body[at] = byte }
        if let Ok(parsed) = RegistryRecord::parse(&body) {
            let mut copy = standby.clone();
            let _ = merge(&mut copy, &parsed);
            let head = Head::initial("alpha");
            let _ = judge(&head, &parsed, "h");
        }
    }
}
