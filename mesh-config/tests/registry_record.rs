//! CA registry records from data files (`tests/data/registry/`): a record as this version's
//! active holder writes it, merged into a standby's registry, and damaged or hostile records,
//! each refused with its reason (records arrive from the network).

use std::path::Path;

use mesh_config::registry::{Head, Judgement, RegistryRecord, judge, merge};
use mesh_config::{AddressPlan, Allocator, Role};

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/registry")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The standby's registry: alpha and beta admitted, then split; the standby keeps slot 1.
fn standby() -> Allocator {
    let plan = AddressPlan::new(
        "10.0.0.0/8".parse().unwrap(),
        16,
        "fd00:1:2::/48".parse().unwrap(),
    )
    .unwrap();
    let mut holder = Allocator::new(plan).unwrap();
    holder
        .allocate_node("alpha", Role::Core, None, None)
        .unwrap();
    holder
        .allocate_node("beta", Role::Core, None, None)
        .unwrap();
    holder.split(2).unwrap();
    holder.with_slot(1).unwrap()
}

#[test]
fn a_holders_record_is_read_and_merged_into_the_standby() {
    let record = RegistryRecord::parse(&data("record-v1.json")).unwrap();
    assert_eq!((record.term, record.version), (1, 3));
    assert_eq!(record.holder, "alpha");
    let head = Head::initial("alpha");
    assert_eq!(
        judge(&head, &record, "any"),
        Judgement::Merge {
            newer_term: false,
            missed: false
        }
    );
    let mut copy = standby();
    let merged = merge(&mut copy, &record).unwrap();
    assert_eq!(merged.added, ["gamma", "home"]);
    assert_eq!(merged.revoked, ["thrown"]);
    assert!(merged.problems.is_empty(), "{:?}", merged.problems);
    assert!(copy.is_revoked("thrown"));
    // The standby's next numbers are its own class, after everything the record lists.
    let next = copy.allocate_node("delta", Role::Core, None, None).unwrap();
    assert_eq!(next.index % 2, 1);
    assert!(record.nodes.iter().all(|n| n.ipv4 != next.ipv4));
}

#[test]
fn damaged_and_hostile_records_are_refused_with_their_reason() {
    for (file, want) in [
        ("cut.json", "cannot be read"),
        ("format-2.json", "format 2"),
        ("spoke-without-core.json", "has no core"),
        ("bad-holder.json", "holder"),
        ("term-zero.json", "start at 1"),
        ("counters-disagree.json", "disagree"),
        ("not-an-object.json", "cannot be read"),
    ] {
        let error = RegistryRecord::parse(&data(file))
            .map(|_| ())
            .expect_err(file)
            .to_string();
        assert!(error.contains(want), "{file}: {error}");
    }
}
