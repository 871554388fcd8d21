//! Feeds arbitrary UDP datagrams to meshd's data-plane receive path.
//!
//! Node A has one peer, B. The input is split into datagrams (a length byte, then that many
//! bytes). A datagram is delivered to A as it is, or, when its first byte is odd, XORed over a
//! genuine handshake initiation from B, so that the fuzzer reaches the MAC and Noise checks and
//! not only the type/length checks. Whatever arrives, A must not panic, and every datagram must
//! end as a decrypted packet, a reply, or a counted drop.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use boringtun::x25519::{PublicKey, StaticSecret};
use libfuzzer_sys::fuzz_target;
use meshd_tunnel::TxBatch;
use meshd_tunnel::{DataplaneCore, PacketBatch, PeerConfig};

fn peer(name: &str, key: &StaticSecret, endpoint: &str, allowed: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        public_key: PublicKey::from(key).to_bytes(),
        endpoints: vec![endpoint.parse().unwrap()],
        allowed_ips: vec![allowed.parse().unwrap()],
        ecmp_ips: Vec::new(),
        persistent_keepalive: None,
        // Cores, so that reach queries and answers are handled, not refused at once.
        relay: true,
    }
}

/// A minimal IPv4 packet from B's overlay address to A's, so that B starts a handshake.
fn ipv4_packet() -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&Ipv4Addr::new(10, 2, 0, 1).octets());
    p[16..20].copy_from_slice(&Ipv4Addr::new(10, 1, 0, 1).octets());
    p
}

fuzz_target!(|data: &[u8]| {
    let a_key = StaticSecret::from([1u8; 32]);
    let b_key = StaticSecret::from([2u8; 32]);
    let a = DataplaneCore::new(
        a_key.to_bytes(),
        &[peer("b", &b_key, "127.0.0.2:51820", "10.2.0.0/16")],
    )
    .unwrap();
    let b = DataplaneCore::new(
        b_key.to_bytes(),
        &[peer("a", &a_key, "127.0.0.1:51820", "10.1.0.0/16")],
    )
    .unwrap();
    let now = Instant::now();

    // B's genuine handshake initiation, the template for mutated datagrams.
    let mut tx = TxBatch::new(1 << 16);
    b.handle_outbound(&b.snapshot(), &ipv4_packet(), now, &mut tx);
    let initiation: Vec<u8> = tx.runs(1).next().map(|r| r.contents.to_vec()).unwrap_or_default();

    let from: SocketAddr = "127.0.0.2:51820".parse().unwrap();
    let snap = a.snapshot();
    let mut to_device = PacketBatch::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let take = (len as usize).min(tail.len());
        let (chunk, tail) = tail.split_at(take);
        rest = tail;
        let datagram = match chunk.first() {
            Some(first) if first & 1 == 1 && !initiation.is_empty() => {
                let mut d = initiation.clone();
                for (i, byte) in chunk[1..].iter().enumerate() {
                    d[i % initiation.len()] ^= byte;
                }
                d
            }
            _ => chunk.to_vec(),
        };
        let mut reply = TxBatch::new(1 << 16);
        a.handle_inbound(&snap, &datagram, from, now, &mut to_device, &mut reply);
        to_device.clear();
    }
});
