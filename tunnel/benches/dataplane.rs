//! Microbenchmark of the data plane core: a batch of MTU-sized packets encrypted by one
//! node and decrypted by the other, without sockets — the per-packet cost meshd adds on
//! top of the kernel's.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshd_tunnel::TxBatch;
use meshd_tunnel::{DataplaneCore, PacketBatch, PeerConfig};

const BATCH: usize = 64;
const PACKET: usize = 1420;

fn public(private: [u8; 32]) -> [u8; 32] {
    let secret = boringtun::x25519::StaticSecret::from(private);
    *boringtun::x25519::PublicKey::from(&secret).as_bytes()
}

fn peer(name: &str, key: [u8; 32], endpoint: SocketAddr, allowed: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        public_key: public(key),
        endpoints: vec![endpoint],
        allowed_ips: vec![allowed.parse().unwrap()],
        ecmp_ips: Vec::new(),
        persistent_keepalive: None,
        relay: false,
    }
}

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; PACKET];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 1]);
    p[16..20].copy_from_slice(&[10, 2, 0, 1]);
    p[20..22].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Moves every datagram in `tx` into `core` as if it came from `from`.
fn deliver(tx: &mut TxBatch, core: &DataplaneCore, from: SocketAddr, out: &mut PacketBatch) {
    let mut reply = TxBatch::new(1 << 20);
    let snap = core.snapshot();
    let now = Instant::now();
    for run in tx.runs(1) {
        core.handle_inbound(&snap, run.contents, from, now, out, &mut reply);
    }
    tx.clear();
    std::mem::swap(tx, &mut reply);
}

fn encrypt_decrypt(c: &mut Criterion) {
    let (ka, kb) = ([1u8; 32], [2u8; 32]);
    let (ea, eb): (SocketAddr, SocketAddr) = (
        "198.51.100.1:51820".parse().unwrap(),
        "198.51.100.2:51820".parse().unwrap(),
    );
    let a = DataplaneCore::new(ka, &[peer("b", kb, eb, "10.2.0.0/16")]).unwrap();
    let b = DataplaneCore::new(kb, &[peer("a", ka, ea, "10.1.0.0/16")]).unwrap();
    let mut tx = TxBatch::new(4 << 20);
    let mut out = PacketBatch::new();

    // Handshake: initiation a->b, response b->a, keepalive and the queued packet a->b.
    a.handle_outbound(&a.snapshot(), &packet(0), Instant::now(), &mut tx);
    deliver(&mut tx, &b, ea, &mut out);
    deliver(&mut tx, &a, eb, &mut out);
    deliver(&mut tx, &b, ea, &mut out);
    assert_eq!(out.len(), 1, "handshake completes in the benchmark setup");
    out.clear();

    let packets: Vec<Vec<u8>> = (0..BATCH as u16).map(packet).collect();
    let mut group = c.benchmark_group("dataplane_core");
    group.throughput(Throughput::Bytes((BATCH * PACKET) as u64));
    group.bench_function("encrypt_batch_64x1420", |bench| {
        let snap = a.snapshot();
        bench.iter(|| {
            let now = Instant::now();
            for p in &packets {
                a.handle_outbound(&snap, black_box(p), now, &mut tx);
            }
            tx.clear();
        })
    });
    group.bench_function("encrypt_then_decrypt_batch_64x1420", |bench| {
        let (snap_a, snap_b) = (a.snapshot(), b.snapshot());
        let mut replies = TxBatch::new(1 << 20);
        bench.iter(|| {
            let now = Instant::now();
            for p in &packets {
                a.handle_outbound(&snap_a, black_box(p), now, &mut tx);
            }
            for run in tx.runs(1) {
                b.handle_inbound(&snap_b, run.contents, ea, now, &mut out, &mut replies);
            }
            assert_eq!(out.len(), BATCH);
            tx.clear();
            out.clear();
            replies.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, encrypt_decrypt);
criterion_main!(benches);
