//! Tests of the membership state machine: nodes exchange messages through a queue, no I/O.

use std::collections::VecDeque;

use pki::{CertificateAuthority, NodeRole, RevokedEntry};
use time::Duration;

use super::membership::{Action, Membership};
use super::message::Gossip;
use super::record::tests::{NOW, node};
use super::record::{SignedRecord, sign_record};

fn ca() -> CertificateAuthority {
    CertificateAuthority::create("test", NOW, Duration::days(365)).unwrap()
}

fn core_record(ca: &CertificateAuthority, name: &str, index: u8) -> SignedRecord {
    let (key, cert) = node(
        ca,
        name,
        NodeRole::Core,
        None,
        &[&format!("10.{index}.0.0/16")],
    );
    sign_record(&key, &cert, vec![format!("203.0.113.{index}:51820")], 1).unwrap()
}

/// Delivers every Send until quiet; returns the number of messages delivered.
fn run(nodes: &mut [Membership], names: &[String], mut queue: VecDeque<(String, Action)>) -> usize {
    let mut delivered = 0;
    while let Some((from, action)) = queue.pop_front() {
        if let Action::Send { to, gossip } = action {
            delivered += 1;
            let index = names.iter().position(|n| *n == to).unwrap();
            for next in nodes[index].receive(&from, gossip, NOW) {
                queue.push_back((to.clone(), next));
            }
        }
    }
    delivered
}

/// `count` cores, all connected to each other, each knowing only itself.
fn mesh(
    ca: &CertificateAuthority,
    count: usize,
) -> (Vec<Membership>, Vec<String>, VecDeque<(String, Action)>) {
    let names: Vec<String> = (1..=count).map(|i| format!("core{i}")).collect();
    let mut queue = VecDeque::new();
    let mut nodes: Vec<Membership> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut m = Membership::new(name, ca.cert_der().to_vec(), i as u64);
            m.set_own_record(core_record(ca, name, i as u8 + 1), NOW);
            m
        })
        .collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        for (j, other) in names.iter().enumerate() {
            if i != j {
                for action in node.peer_connected(other) {
                    queue.push_back((names[i].clone(), action));
                }
            }
        }
    }
    (nodes, names, queue)
}

#[test]
fn connected_nodes_converge_on_connect() {
    let ca = ca();
    let (mut nodes, names, queue) = mesh(&ca, 4);
    run(&mut nodes, &names, queue);
    for node in &nodes {
        assert_eq!(node.members().count(), 4);
    }
}

#[test]
fn a_change_costs_linear_messages_and_reaches_everyone() {
    let ca = ca();
    let count = 30;
    let (mut nodes, names, queue) = mesh(&ca, count);
    run(&mut nodes, &names, queue);
    // core1 changes its endpoints: push gossip only.
    let (key, cert) = node(&ca, "core1", NodeRole::Core, None, &["10.1.0.0/16"]);
    let record = sign_record(&key, &cert, vec!["198.51.100.1:51820".into()], 2).unwrap();
    let queue: VecDeque<_> = nodes[0]
        .set_own_record(record, NOW)
        .into_iter()
        .map(|a| ("core1".to_owned(), a))
        .collect();
    let messages = run(&mut nodes, &names, queue);
    assert!(messages <= 3 * count, "{messages} messages for one change");
    // Anti-entropy repairs whatever push missed: a few rounds of ticks.
    for round in 0..5 {
        let mut queue = VecDeque::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            let now = NOW + Duration::seconds(11 * (round + 1));
            for action in node.tick(now) {
                queue.push_back((names[i].clone(), action));
            }
        }
        run(&mut nodes, &names, queue);
    }
    for node in &nodes {
        assert_eq!(node.member("core1").unwrap().version, 2);
    }
}

#[test]
fn records_from_another_ca_or_for_someone_elses_prefixes_are_dropped() {
    let ca = ca();
    let mut a = Membership::new("a", ca.cert_der().to_vec(), 1);
    a.peer_connected("b");
    let mine = core_record(&ca, "a", 1);
    a.set_own_record(mine, NOW);

    let evil = CertificateAuthority::create("evil", NOW, Duration::days(1)).unwrap();
    let foreign = core_record(&evil, "x", 9);
    let actions = a.receive(
        "b",
        Gossip::Records {
            records: vec![foreign],
        },
        NOW,
    );
    assert!(a.member("x").is_none());
    assert!(
        actions.iter().any(|act| matches!(act, Action::Log { warning: true, text } if text.contains("not by this mesh's CA"))),
        "{actions:?}"
    );

    // A certificate (from the right CA) whose prefix overlaps a's.
    let squatter = core_record(&ca, "squat", 1);
    let actions = a.receive(
        "b",
        Gossip::Records {
            records: vec![squatter],
        },
        NOW,
    );
    assert!(a.member("squat").is_none());
    assert!(
        actions.iter().any(|act| matches!(act, Action::Log { text, .. } if text.contains("overlaps 10.1.0.0/16 of node a"))),
        "{actions:?}"
    );
}

#[test]
fn digest_asks_for_what_is_missing_and_refused_versions_are_not_asked_again() {
    let ca = ca();
    let mut a = Membership::new("a", ca.cert_der().to_vec(), 1);
    a.set_own_record(core_record(&ca, "a", 1), NOW);
    a.peer_connected("b");
    let versions = [("a".to_owned(), 1), ("b".to_owned(), 5)]
        .into_iter()
        .collect();
    let actions = a.receive(
        "b",
        Gossip::Digest {
            versions,
            crl_number: None,
        },
        NOW,
    );
    assert!(
        actions.contains(&Action::Send {
            to: "b".into(),
            gossip: Gossip::Want {
                names: vec!["b".into()],
                crl: false
            }
        }),
        "{actions:?}"
    );
}

#[test]
fn a_revocation_removes_the_member_and_spreads() {
    let ca = ca();
    let (key, cert) = node(&ca, "b", NodeRole::Core, None, &["10.2.0.0/16"]);
    let record = sign_record(&key, &cert, vec![], 1).unwrap();
    let serial = record.verify(ca.cert_der(), None, NOW).unwrap().serial;
    let mut a = Membership::new("a", ca.cert_der().to_vec(), 1);
    a.peer_connected("b");
    a.peer_connected("c");
    a.receive(
        "c",
        Gossip::Records {
            records: vec![record.clone()],
        },
        NOW,
    );
    assert!(a.member("b").is_some());

    let crl = ca
        .issue_crl(
            &[RevokedEntry {
                serial,
                revoked_at: NOW,
            }],
            1,
            NOW,
            NOW + Duration::days(7),
        )
        .unwrap();
    let actions = a.install_crl(&crl, None);
    assert!(a.member("b").is_none());
    assert!(actions.contains(&Action::MembersChanged));
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, Action::Disconnect { peer, .. } if peer == "b"))
    );
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, Action::Send { to, gossip: Gossip::Crl { .. } } if to == "c"))
    );
    // The revoked record comes back through gossip: refused.
    a.receive(
        "c",
        Gossip::Records {
            records: vec![record],
        },
        NOW,
    );
    assert!(a.member("b").is_none());
    // An older CRL changes nothing.
    assert!(a.install_crl(&crl, Some("c")).is_empty());
    // A forged CRL is dropped with a log line.
    let evil = CertificateAuthority::create("evil", NOW, Duration::days(1)).unwrap();
    let forged = evil
        .issue_crl(&[], 9, NOW, NOW + Duration::days(1))
        .unwrap();
    let actions = a.install_crl(&forged, Some("c"));
    assert!(
        matches!(&actions[..], [Action::Log { warning: true, .. }]),
        "{actions:?}"
    );
    assert_eq!(a.crl().unwrap().crl_number(), 1);
}

#[test]
fn a_renewed_record_replaces_the_old_without_touching_tunnels() {
    let ca = ca();
    let (mut nodes, _, _) = mesh(&ca, 1);
    // core2 renews: same key, same identity, a new certificate, a newer record.
    let (key, first) = node(&ca, "core2", NodeRole::Core, None, &["10.2.0.0/16"]);
    let identity = pki::NodeCertificate::parse(&first).unwrap().identity;
    let mut renewed = Membership::new("core2", ca.cert_der().to_vec(), 9);
    let old = sign_record(&key, &first, vec!["203.0.113.2:51820".into()], 5).unwrap();
    renewed.set_own_record(old.clone(), NOW);
    let second = ca
        .issue_node_certificate(
            &key.csr("core2").unwrap(),
            &identity,
            NOW + Duration::days(20),
            Duration::days(30),
        )
        .unwrap()
        .der;
    let new = sign_record(&key, &second, vec!["203.0.113.2:51820".into()], 6).unwrap();
    let core1 = &mut nodes[0];
    let first_seen = core1.receive(
        "core2",
        Gossip::Records {
            records: vec![old.clone()],
        },
        NOW,
    );
    assert!(
        first_seen.contains(&Action::MembersChanged),
        "{first_seen:?}"
    );
    let later = NOW + Duration::days(20);
    let actions = core1.receive(
        "core2",
        Gossip::Records {
            records: vec![new.clone()],
        },
        later,
    );
    assert!(actions.contains(&Action::RecordsUpdated), "{actions:?}");
    assert!(!actions.contains(&Action::MembersChanged), "{actions:?}");
    assert_eq!(core1.member("core2").unwrap().record, new);
    // Past the first certificate's expiry the member stays.
    let after = core1.tick(NOW + Duration::days(31));
    assert!(!after.contains(&Action::MembersChanged), "{after:?}");
    assert!(core1.member("core2").is_some());

    // The renewing node itself hears its old record from a peer: harmless, no warning.
    renewed.set_own_record(new, later);
    let echoed = renewed.receive("core1", Gossip::Records { records: vec![old] }, later);
    assert!(
        !echoed
            .iter()
            .any(|a| matches!(a, Action::Log { warning: true, .. })),
        "{echoed:?}"
    );
}

#[test]
fn anti_entropy_sends_a_fixed_size_summary_and_the_digest_only_on_a_difference() {
    let ca = ca();
    let names = vec!["a".to_owned(), "b".to_owned()];
    let mut nodes: Vec<Membership> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut m = Membership::new(name, ca.cert_der().to_vec(), i as u64);
            m.set_own_record(core_record(&ca, name, i as u8 + 1), NOW);
            m
        })
        .collect();
    // Connected, but the digests of the connection are lost: they differ.
    nodes[0].peer_connected("b");
    nodes[1].peer_connected("a");
    let summary = |node: &mut Membership, at| -> VecDeque<(String, Action)> {
        let actions = node.tick(at);
        assert!(
            matches!(
                &actions[..],
                [Action::Send {
                    gossip: Gossip::Summary { .. },
                    ..
                }]
            ),
            "{actions:?}"
        );
        actions.into_iter().map(|a| ("a".to_owned(), a)).collect()
    };
    let queue = summary(&mut nodes[0], NOW);
    // a's summary; b's digest; a's record and a want for b's; b's record.
    assert_eq!(run(&mut nodes, &names, queue), 5);
    assert_eq!(nodes[0].members().count(), 2);
    assert_eq!(nodes[1].members().count(), 2);
    assert_eq!(nodes[0].summary_hash(), nodes[1].summary_hash());
    // In sync: the next round is the summary alone.
    let queue = summary(&mut nodes[0], NOW + Duration::seconds(10));
    assert_eq!(run(&mut nodes, &names, queue), 1);

    // The summary is the same size whatever the membership; the digest grows with it.
    let mut big = Membership::new("a", ca.cert_der().to_vec(), 1);
    let records: Vec<SignedRecord> = (1..=60u8)
        .map(|i| core_record(&ca, &format!("core{i}"), i))
        .collect();
    big.receive("b", Gossip::Records { records }, NOW);
    big.peer_connected("b");
    let size = |m: &mut Membership, at| {
        let Some(Action::Send { gossip, .. }) = m.tick(at).pop() else {
            panic!("no anti-entropy message");
        };
        let frame =
            crate::control::frame::encode(&crate::control::message::Message::Gossip(gossip));
        frame.unwrap().len()
    };
    let small_summary = size(&mut nodes[0], NOW + Duration::seconds(20));
    let big_summary = size(&mut big, NOW);
    assert_eq!(small_summary, big_summary);
    assert!(big_summary < 100, "{big_summary} bytes");
    let digest = crate::control::frame::encode(&crate::control::message::Message::Gossip(
        match big.peer_connected("b").pop() {
            Some(Action::Send { gossip, .. }) => gossip,
            other => panic!("{other:?}"),
        },
    ))
    .unwrap();
    assert!(digest.len() > 60 * 10, "{} bytes", digest.len());
}

#[test]
fn summaries_differ_when_a_version_or_the_crl_differs() {
    let ca = ca();
    let mut a = Membership::new("a", ca.cert_der().to_vec(), 1);
    a.set_own_record(core_record(&ca, "a", 1), NOW);
    let mut b = Membership::new("b", ca.cert_der().to_vec(), 2);
    b.set_own_record(core_record(&ca, "b", 2), NOW);
    let empty = a.summary_hash();
    let (key, cert) = node(&ca, "c", NodeRole::Core, None, &["10.3.0.0/16"]);
    let c1 = sign_record(&key, &cert, vec![], 1).unwrap();
    let c2 = sign_record(&key, &cert, vec![], 2).unwrap();
    a.receive("x", Gossip::Records { records: vec![c1] }, NOW);
    let with_c1 = a.summary_hash();
    assert_ne!(with_c1, empty);
    a.receive("x", Gossip::Records { records: vec![c2] }, NOW);
    assert_ne!(a.summary_hash(), with_c1);
    let before_crl = a.summary_hash();
    let crl = ca.issue_crl(&[], 1, NOW, NOW + Duration::days(7)).unwrap();
    a.install_crl(&crl, None);
    assert_ne!(a.summary_hash(), before_crl);
    assert_ne!(a.summary_hash(), b.summary_hash());
}
