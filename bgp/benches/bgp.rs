//! BGP speaker hot paths without sockets: decoding a full table's worth of UPDATEs, importing
//! them into the RIB with best-path selection against a second copy of the table from another
//! peer, and packing the result into UPDATEs for a third peer. This is the pure part of
//! the full-table benchmark (the BIRD-to-meshd run, agent/benches/bgp_table.rs, needs namespaces).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use meshd_bgp::import::{RibOp, import_update};
use meshd_bgp::packet::{AsPath, CodecOptions, Message, Origin, PathAttributes, Update};
use meshd_bgp::policy::Policy;
use meshd_bgp::rib::export::LocalInfo;
use meshd_bgp::rib::out::{AdjRibOut, Advertised, pack_updates};
use meshd_bgp::rib::{PeerInfo, Rib};

const PREFIXES: u32 = 100_000;

fn table(first_as: u32) -> Vec<Vec<u8>> {
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([first_as, 64_500, 64_501])),
        next_hop: Some(Ipv4Addr::new(198, 51, 100, 2)),
        communities: vec![0xFDE8_0001],
        ..PathAttributes::default()
    };
    let prefixes: Vec<Ipv4Net> = (0..PREFIXES)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0100_0000 + (i << 8)), 24).unwrap())
        .collect();
    prefixes
        .chunks(800)
        .map(|chunk| {
            Message::Update(Update {
                attributes: attrs.clone(),
                nlri: chunk.to_vec(),
                ..Update::default()
            })
            .encode(CodecOptions::default())
            .unwrap()
        })
        .collect()
}

fn peer(asn: u32, last: u8) -> PeerInfo {
    PeerInfo {
        address: Ipv4Addr::new(198, 51, 100, last).into(),
        asn,
        bgp_id: Ipv4Addr::new(198, 51, 100, last),
        internal: false,
        rr_client: false,
    }
}

fn bench(c: &mut Criterion) {
    let from_a = table(65010);
    let from_b = table(65020);
    let local = LocalInfo {
        asn: 65001,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        cluster_id: Ipv4Addr::new(198, 51, 100, 1),
    };
    let policy = Policy::accept_all();
    let mut group = c.benchmark_group("bgp");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(PREFIXES)));
    group.bench_function("decode 100k prefixes", |b| {
        b.iter(|| {
            for m in &from_a {
                black_box(Message::decode(m, CodecOptions::default()).unwrap());
            }
        })
    });
    group.throughput(Throughput::Elements(2 * u64::from(PREFIXES)));
    group.bench_function("decode, import and select best of 2 x 100k", |b| {
        b.iter(|| {
            let mut rib = Rib::new();
            let peers = [(1, peer(65010, 2), &from_a), (2, peer(65020, 3), &from_b)];
            for (id, info, _) in &peers {
                rib.add_peer(*id, info.clone());
            }
            let mut changes = 0usize;
            for (id, info, msgs) in &peers {
                for m in msgs.iter() {
                    let Message::Update(u) = Message::decode(m, CodecOptions::default()).unwrap()
                    else {
                        unreachable!()
                    };
                    for op in import_update(&local, *id, info, &policy, &u).ops {
                        if let RibOp::Announce(p, path) = op {
                            changes += usize::from(rib.announce(p, path).is_some());
                        }
                    }
                }
            }
            black_box((rib.len(), changes))
        })
    });
    group.throughput(Throughput::Elements(u64::from(PREFIXES)));
    group.bench_function("pack 100k prefixes for a peer", |b| {
        let adv = Advertised {
            next_hop: meshd_bgp::packet::NextHop::V4(Ipv4Addr::new(198, 51, 100, 1)),
            attrs: Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence([65001, 65010])),
                ..PathAttributes::default()
            }),
        };
        b.iter(|| {
            let mut out = AdjRibOut::new();
            let changes: Vec<_> = (0..PREFIXES)
                .filter_map(|i| {
                    let p = IpNet::V4(
                        Ipv4Net::new(Ipv4Addr::from(0x0100_0000 + (i << 8)), 24).unwrap(),
                    );
                    out.set(p, Some(adv.clone()))
                })
                .collect();
            black_box(pack_updates(changes).len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
