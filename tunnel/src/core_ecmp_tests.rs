//! Shared prefixes (ECMP groups) in the core: flows spread over the announcers and stay on
//! one, a member's flows move when it leaves, and a shared prefix is never also a peer's own.
//! Uses the two-node helpers of the core tests (`node`, `peer`, `pump`, ...).

use super::*;

/// A UDP packet from 10.1.0.1, port `sport`, to the shared address 203.0.113.53, port 53.
fn to_shared(sport: u16) -> Vec<u8> {
    let mut payload = vec![0u8; 12];
    payload[..2].copy_from_slice(&sport.to_be_bytes());
    payload[2..4].copy_from_slice(&53u16.to_be_bytes());
    ipv4([10, 1, 0, 1], [203, 0, 113, 53], &payload)
}

/// The source port of what `to_shared` built.
fn sport_of(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[20], packet[21]])
}

/// Core `a` with peers `b` (10.2/16) and `c` (10.3/16), both announcers of the shared
/// 203.0.113.53/32 when `group` says so.
fn a_with_announcers(group: [bool; 2]) -> Vec<PeerConfig> {
    let shared = |mut p: PeerConfig, yes: bool| {
        if yes {
            p.ecmp_ips = vec!["203.0.113.53/32".parse().unwrap()];
        }
        p
    };
    vec![
        shared(
            peer("b", 2, &["127.0.0.12:51820"], &["10.2.0.0/16"]),
            group[0],
        ),
        shared(
            peer("c", 3, &["127.0.0.13:51820"], &["10.3.0.0/16"]),
            group[1],
        ),
    ]
}

/// Sends one packet of each flow (source ports 2000..2000+n) from `a` and returns the source
/// ports that arrived at b and at c.
fn spread(a: &mut Node, b: &mut Node, c: &mut Node, flows: u16, now: Instant) -> [Vec<u16>; 2] {
    for sport in 2000..2000 + flows {
        send(a, &to_shared(sport), now);
        pump(&mut [&mut *a, &mut *b, &mut *c], now);
    }
    [b, c].map(|n| delivered(n).iter().map(|p| sport_of(p)).collect())
}

#[test]
fn a_shared_prefix_spreads_flows_over_its_group_and_each_flow_stays_on_one_member() {
    let now = Instant::now();
    let mut a = node(1, "127.0.0.11:51820", a_with_announcers([true, true]));
    let back = || vec![peer("a", 1, &["127.0.0.11:51820"], &["10.1.0.0/16"])];
    let mut b = node(2, "127.0.0.12:51820", back());
    let mut c = node(3, "127.0.0.13:51820", back());

    let [on_b, on_c] = spread(&mut a, &mut b, &mut c, 64, now);
    assert_eq!(on_b.len() + on_c.len(), 64, "every flow arrives once");
    assert!(
        on_b.len() >= 16 && on_c.len() >= 16,
        "64 flows spread over two: {} on b, {} on c",
        on_b.len(),
        on_c.len()
    );
    // The same flows again: each to the member it went to before.
    let again = spread(&mut a, &mut b, &mut c, 64, now);
    assert_eq!(again, [on_b.clone(), on_c.clone()]);

    // Either member may answer from the shared address.
    for n in [&mut b, &mut c] {
        send(n, &ipv4([203, 0, 113, 53], [10, 1, 0, 1], b"answer"), now);
    }
    pump(&mut [&mut a, &mut b, &mut c], now);
    assert_eq!(delivered(&mut a).len(), 2);
    assert_eq!(drops(&a, DropReason::SpoofedSource), 0);

    // c leaves the group: its flows move to b, b's stay; c may no longer use the address.
    a.core
        .update_peers(&a_with_announcers([true, false]))
        .unwrap();
    let [after_b, after_c] = spread(&mut a, &mut b, &mut c, 64, now);
    assert!(after_c.is_empty());
    assert_eq!(after_b, (2000..2064).collect::<Vec<u16>>());
    send(
        &mut c,
        &ipv4([203, 0, 113, 53], [10, 1, 0, 1], b"stale"),
        now,
    );
    pump(&mut [&mut a, &mut b, &mut c], now);
    assert!(delivered(&mut a).is_empty());
    assert_eq!(drops(&a, DropReason::SpoofedSource), 1);

    // It comes back: exactly the flows it had return to it.
    a.core
        .update_peers(&a_with_announcers([true, true]))
        .unwrap();
    assert_eq!(spread(&mut a, &mut b, &mut c, 64, now), [on_b, on_c]);
}

#[test]
fn a_shared_prefix_may_not_also_be_a_peer_s_own() {
    let mut peers = a_with_announcers([true, true]);
    peers[1]
        .allowed_ips
        .push("203.0.113.53/32".parse().unwrap());
    let error = DataplaneCore::new(key(1), &peers).unwrap_err().to_string();
    assert!(
        error.contains("203.0.113.53/32") && error.contains("equal-cost"),
        "{error}"
    );
    let mut twice = a_with_announcers([true, false]);
    twice[0].ecmp_ips.push("203.0.113.53/32".parse().unwrap());
    let error = DataplaneCore::new(key(1), &twice).unwrap_err().to_string();
    assert!(error.contains("appears twice"), "{error}");
}
