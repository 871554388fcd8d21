//! The simulator on small meshes, and the scaling rule: a change costs O(N) messages.

use time::Duration;

use super::*;
use crate::control::record::tests::NOW;

#[test]
fn a_joining_core_and_spoke_reach_everyone_without_warnings() {
    let mut mesh = Mesh::build(MeshShape::with_nodes(10), 1, NOW).unwrap();
    assert_eq!((mesh.cores.len(), mesh.spokes.len()), (2, 8));
    let core = mesh.join_core().unwrap();
    assert_eq!(core.nodes_before, 10);
    assert!(core.warnings.is_empty(), "{:?}", core.warnings);
    let all = core.all_done().unwrap();
    assert!(all <= Duration::seconds(25), "{all}");
    let spoke = mesh.join_spoke().unwrap();
    assert!(spoke.warnings.is_empty(), "{:?}", spoke.warnings);
    for node in 0..mesh.net.len() {
        assert_eq!(mesh.net.membership(node).members().count(), 12);
    }
    assert_eq!(mesh.net.stats().dropped, 0);
}

/// Messages caused by a core joining, a spoke joining and a core moving, summed.
fn messages_for_three_changes(nodes: usize) -> u64 {
    let mut mesh = Mesh::build(MeshShape::with_nodes(nodes), 7, NOW).unwrap();
    let outcomes = [
        mesh.join_core().unwrap(),
        mesh.join_spoke().unwrap(),
        mesh.move_core(1).unwrap(),
    ];
    for outcome in &outcomes {
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        assert!(outcome.all_done().is_some());
    }
    outcomes.iter().map(|o| o.change.messages).sum()
}

#[test]
fn messages_per_change_grow_linearly_with_the_mesh() {
    // 4x the nodes: linear spreading costs about 4x the messages, O(N^2) would cost 16x.
    let small = messages_for_three_changes(10);
    let large = messages_for_three_changes(40);
    let ratio = large as f64 / small as f64;
    assert!(
        ratio < 6.0,
        "{small} messages at 10 nodes, {large} at 40: {ratio:.1}x for 4x the nodes"
    );
    // And in absolute terms: a few messages per node, not one per pair of nodes.
    assert!(
        large < 10 * 41,
        "{large} messages for three changes at 40 nodes"
    );
}

#[test]
fn a_connection_comes_up_after_the_handshakes_and_both_ends_reconcile() {
    let mut fleet = Fleet::new(NOW).unwrap();
    let records = [
        fleet.admit_core("a").unwrap(),
        fleet.admit_core("b").unwrap(),
    ];
    let mut net = Network::new(NOW);
    for (name, record) in ["a", "b"].into_iter().zip(&records) {
        let mut m = crate::control::membership::Membership::new(name, fleet.ca_der().to_vec(), 1);
        m.set_own_record(record.clone(), NOW);
        net.add_node(name, m, NOW).unwrap();
    }
    assert!(matches!(
        net.connect(0, 0, Duration::milliseconds(5)),
        Err(SimError::SelfLink(_))
    ));
    net.connect(0, 1, Duration::milliseconds(10)).unwrap();
    // Not up before the two handshake round trips.
    net.run_until(NOW + Duration::milliseconds(39));
    assert_eq!(net.membership(0).members().count(), 1);
    // Up at 40 ms; digests arrive at 50 ms, the records each side lacked at 60 ms.
    net.run_until(NOW + Duration::milliseconds(59));
    assert_eq!(net.membership(0).members().count(), 1);
    net.run_until(NOW + Duration::milliseconds(100));
    assert_eq!(net.membership(0).members().count(), 2);
    assert_eq!(net.membership(1).members().count(), 2);
    // Per side: a digest, the own record in answer to the peer's digest, a want for the
    // peer's record, and the own record again in answer to the want.
    let kinds: Vec<(&str, u64)> = net
        .stats()
        .sent
        .iter()
        .map(|((_, kind), t)| (*kind, t.messages))
        .collect();
    assert_eq!(kinds, [("digest", 2), ("records", 4), ("want", 2)]);
    assert_eq!(net.stats().dropped, 0);
    assert!(net.stats().warnings.is_empty());
}
