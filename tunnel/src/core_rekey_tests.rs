//! Rekeys on request (`meshd rekey`) in the core: a new session while the old one keeps
//! carrying traffic, and nothing sent for a peer without a path. Uses the two-node helpers
//! of the core tests (`node`, `peer`, `pump`, ...).

use super::*;

#[test]
fn a_requested_rekey_makes_a_new_session_while_the_old_one_keeps_carrying_traffic() {
    let now = Instant::now();
    let (mut a, mut b) = pair();
    let ping = ipv4([10, 1, 0, 1], [10, 2, 0, 1], b"ping");
    send(&mut a, &ping, now);
    pump(&mut [&mut a, &mut b], now);
    assert_eq!(delivered(&mut b), vec![ping.clone()]);
    assert!(a.core.request_rekey(Some("nobody")).is_empty());

    let later = now + Duration::from_secs(1);
    assert_eq!(
        a.core.request_rekey(Some("b")),
        vec![RekeyRequest {
            peer: "b".into(),
            started: true
        }]
    );
    a.core.tick(later, &mut a.tx);
    let sent = take_tx(&mut a);
    let initiations: Vec<_> = sent.iter().filter(|(_, d)| d[0] == 1).collect();
    assert_eq!(initiations.len(), 1, "one initiation: {sent:?}");
    // While the initiation is in flight, the current session still carries data both ways.
    send(&mut a, &ping, later);
    let pong = ipv4([10, 2, 0, 1], [10, 1, 0, 1], b"pong");
    send(&mut b, &pong, later);
    for (dst, d) in sent {
        a.tx.room()[..d.len()].copy_from_slice(&d);
        a.tx.commit(d.len(), dst);
    }
    pump(&mut [&mut a, &mut b], later);
    assert_eq!(delivered(&mut b), vec![ping.clone()]);
    assert_eq!(delivered(&mut a), vec![pong.clone()]);
    assert_eq!(a.core.stats().peer("b").unwrap().handshakes, 2);
    assert_eq!(b.core.stats().peer("a").unwrap().handshakes, 2);
    // And the new session works: nothing was dropped on either side.
    send(&mut a, &ping, later);
    send(&mut b, &pong, later);
    pump(&mut [&mut a, &mut b], later);
    assert_eq!(delivered(&mut b), vec![ping]);
    assert_eq!(delivered(&mut a), vec![pong]);
    assert_eq!(a.core.stats().drops.total(), 0);
    assert_eq!(b.core.stats().drops.total(), 0);
    // The request is used up: the next tick sends no initiation.
    a.core.tick(later, &mut a.tx);
    assert!(take_tx(&mut a).iter().all(|(_, d)| d[0] != 1));
}

#[test]
fn a_rekey_for_a_peer_without_a_path_sends_nothing() {
    let now = Instant::now();
    let mut a = node(
        1,
        "127.0.0.11:51820",
        vec![peer("b", 2, &[], &["10.2.0.0/16"])],
    );
    assert_eq!(
        a.core.request_rekey(None),
        vec![RekeyRequest {
            peer: "b".into(),
            started: false
        }]
    );
    a.core.tick(now, &mut a.tx);
    assert!(take_tx(&mut a).is_empty());
}
