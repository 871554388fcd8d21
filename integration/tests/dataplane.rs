//! Several data planes in one process, talking real WireGuard over UDP on 127.0.0.x, with
//! in-memory packet devices. Each test uses its own loopback addresses.

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use integration::node::{Node, start_node};
use integration::packets::{echo_reply, icmp4_echo, icmp6_echo};
use meshd::dataplane::DropReason;

const WAIT: Duration = Duration::from_secs(5);

/// Two nodes that know each other's endpoints: a at 10.1/16 + fd00:1::/64, b at 10.2/16 + fd00:2::/64.
async fn pair(ip_a: &str, ip_b: &str) -> (Node, Node) {
    let mut a = start_node("a", 1, ip_a, vec![]).await;
    let b = start_node("b", 2, ip_b, vec![]).await;
    wire(&mut a, &b);
    (a, b)
}

fn wire(a: &mut Node, b: &Node) {
    a.dataplane
        .update_peers(&[b.as_peer(&["10.2.0.0/16", "fd00:2::/64"], true)])
        .unwrap();
    b.dataplane
        .update_peers(&[a.as_peer(&["10.1.0.0/16", "fd00:1::/64"], true)])
        .unwrap();
}

async fn wait_for<F: Fn() -> bool>(what: &str, cond: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_both_ways_over_ipv4_and_ipv6() {
    let (mut a, mut b) = pair("127.0.0.11", "127.0.0.12").await;
    let a4: Ipv4Addr = "10.1.0.1".parse().unwrap();
    let b4: Ipv4Addr = "10.2.0.1".parse().unwrap();
    for seq in 0..3 {
        let request = icmp4_echo(a4, b4, 1, seq, b"meshd ping");
        a.device.inject(request.clone()).await;
        assert_eq!(
            b.receive().await.as_deref(),
            Some(&request[..]),
            "seq {seq}"
        );
        let reply = echo_reply(&request);
        b.device.inject(reply.clone()).await;
        assert_eq!(a.receive().await.as_deref(), Some(&reply[..]));
    }
    let a6: Ipv6Addr = "fd00:1::1".parse().unwrap();
    let b6: Ipv6Addr = "fd00:2::1".parse().unwrap();
    let request = icmp6_echo(a6, b6, 2, 1, &[0x5a; 1200]);
    a.device.inject(request.clone()).await;
    assert_eq!(b.receive().await.as_deref(), Some(&request[..]));
    b.device.inject(echo_reply(&request)).await;
    assert_eq!(a.receive().await, Some(echo_reply(&request)));

    let stats = a.dataplane.stats();
    let peer = stats.peer("b").unwrap();
    // Both nodes dial each other on their first tick (fast recovery after a restart), so
    // the two initiations may cross: one handshake, or two when they do.
    assert!(
        (1..=2).contains(&peer.handshakes),
        "{} handshakes",
        peer.handshakes
    );
    assert_eq!(peer.tx_packets, 4);
    assert_eq!(peer.rx_packets, 4);
    assert_eq!(peer.endpoint, Some(b.endpoint()));
    // Crossed initiations may leave one of them rejected (the other side had already
    // answered the first); nothing else may be dropped.
    let crossed = stats.drops.get(DropReason::HandshakeRejected);
    assert!(crossed <= 1, "{:?}", stats.drops);
    assert_eq!(stats.drops.total() - crossed, 0, "{:?}", stats.drops);
    a.dataplane.shutdown().await;
    b.dataplane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_arrives_complete_and_in_order() {
    let (a, mut b) = pair("127.0.0.21", "127.0.0.22").await;
    let src: Ipv4Addr = "10.1.0.1".parse().unwrap();
    let dst: Ipv4Addr = "10.2.0.1".parse().unwrap();
    // Complete the handshake first so the burst is not capped by the pre-handshake queue.
    a.device.inject(icmp4_echo(src, dst, 1, 0, b"hello")).await;
    assert!(b.receive().await.is_some());
    let burst: Vec<_> = (1..=500u16)
        .map(|seq| icmp4_echo(src, dst, 1, seq, &[seq as u8; 1300]))
        .collect();
    for p in &burst {
        a.device.inject(p.clone()).await;
    }
    for (i, expected) in burst.iter().enumerate() {
        let got = b
            .receive()
            .await
            .unwrap_or_else(|| panic!("packet {i} lost"));
        assert_eq!(&got, expected, "packet {i}");
    }
    a.dataplane.shutdown().await;
    b.dataplane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoke_to_spoke_is_relayed_inside_the_core() {
    let mut core = start_node("core", 1, "127.0.0.31", vec![]).await;
    let mut s1 = start_node("s1", 2, "127.0.0.32", vec![]).await;
    let mut s2 = start_node("s2", 3, "127.0.0.33", vec![]).await;
    // Spokes know the core's endpoint; the core learns theirs from their packets.
    core.dataplane
        .update_peers(&[
            s1.as_peer(&["10.2.0.0/16"], false),
            s2.as_peer(&["10.3.0.0/16"], false),
        ])
        .unwrap();
    for spoke in [&s1, &s2] {
        let mut to_core = core.as_peer(&["10.0.0.0/8"], true);
        to_core.persistent_keepalive = Some(Duration::from_secs(1));
        spoke.dataplane.update_peers(&[to_core]).unwrap();
    }
    // The persistent keepalive makes each spoke handshake with the core on its own.
    wait_for("both spokes to reach the core", || {
        let stats = core.dataplane.stats();
        ["s1", "s2"]
            .iter()
            .all(|s| stats.peer(s).unwrap().endpoint.is_some())
    })
    .await;

    let request = icmp4_echo(
        [10, 2, 0, 1].into(),
        [10, 3, 0, 1].into(),
        9,
        1,
        b"via core",
    );
    s1.device.inject(request.clone()).await;
    assert_eq!(s2.receive().await.as_deref(), Some(&request[..]));
    s2.device.inject(echo_reply(&request)).await;
    assert_eq!(s1.receive().await, Some(echo_reply(&request)));
    assert!(
        core.device.drain().is_empty(),
        "transit must not go through the core's kernel"
    );
    let stats = core.dataplane.stats();
    assert_eq!(stats.peer("s1").unwrap().transit_packets, 1);
    assert_eq!(stats.peer("s2").unwrap().transit_packets, 1);

    // s1 pretending to be s2 is stopped at the core.
    let spoofed = icmp4_echo([10, 3, 0, 9].into(), [10, 3, 0, 1].into(), 9, 2, b"spoof");
    s1.device.inject(spoofed).await;
    wait_for("the spoofed packet to be counted", || {
        core.dataplane.stats().drops.get(DropReason::SpoofedSource) == 1
    })
    .await;
    assert_eq!(
        s2.device.next_packet(Duration::from_millis(300)).await,
        None
    );

    for n in [core, s1, s2] {
        n.dataplane.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_peer_gets_replies_at_its_new_address() {
    let (mut a, b) = pair("127.0.0.41", "127.0.0.42").await;
    let a4: Ipv4Addr = "10.1.0.1".parse().unwrap();
    let b4: Ipv4Addr = "10.2.0.1".parse().unwrap();
    a.device.inject(icmp4_echo(a4, b4, 1, 1, b"before")).await;
    let mut b = b;
    assert!(b.receive().await.is_some());
    b.dataplane.shutdown().await;

    // b comes back with the same key on another address; a still has the old endpoint.
    let mut b2 = start_node("b", 2, "127.0.0.43", vec![]).await;
    b2.dataplane
        .update_peers(&[a.as_peer(&["10.1.0.0/16"], true)])
        .unwrap();
    let request = icmp4_echo(b4, a4, 3, 1, b"I moved");
    b2.device.inject(request.clone()).await;
    assert_eq!(a.receive().await.as_deref(), Some(&request[..]));
    a.device.inject(echo_reply(&request)).await;
    assert_eq!(b2.receive().await, Some(echo_reply(&request)));
    assert_eq!(
        a.dataplane.stats().peer("b").unwrap().endpoint,
        Some(b2.endpoint())
    );
    a.dataplane.shutdown().await;
    b2.dataplane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_and_harmless() {
    let (a, mut b) = pair("127.0.0.51", "127.0.0.52").await;
    // Path probes that a sent before b knew it count as unknown-peer drops at b; let the
    // two learn of each other (a tick) before counting the garbage.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.dataplane.stats().drops.total();
    let attacker = UdpSocket::bind("127.0.0.53:0").unwrap();
    let target = b.endpoint();
    let mut sent = 0;
    for len in [0usize, 1, 3, 4, 31, 32, 64, 92, 148, 500] {
        let mut junk = vec![0xa5u8; len];
        if len >= 4 {
            // Also dress some as each message type so they get past the type check.
            junk[..4].copy_from_slice(&((len % 5) as u32).to_le_bytes());
        }
        attacker.send_to(&junk, target).unwrap();
        sent += 1;
    }
    // A truncated handshake initiation.
    let mut truncated = vec![0u8; 100];
    truncated[0] = 1;
    attacker.send_to(&truncated, target).unwrap();
    sent += 1;
    wait_for("all garbage to be counted", || {
        b.dataplane.stats().drops.total() == before + sent
    })
    .await;
    let drops = b.dataplane.stats().drops;
    assert!(drops.get(DropReason::Malformed) > 0, "{drops:?}");
    // The node still works.
    let request = icmp4_echo([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 1, 1, b"ok");
    a.device.inject(request.clone()).await;
    assert_eq!(b.receive().await, Some(request));
    a.dataplane.shutdown().await;
    b.dataplane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_and_releases_the_port() {
    let (a, b) = pair("127.0.0.61", "127.0.0.62").await;
    let endpoint = a.endpoint();
    tokio::time::timeout(Duration::from_secs(2), a.dataplane.shutdown())
        .await
        .expect("shutdown finishes quickly");
    UdpSocket::bind(endpoint).expect("the port is free after shutdown");
    b.dataplane.shutdown().await;
}
