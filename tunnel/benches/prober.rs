//! CPU cost of path probing: 50 peers with 3 paths each (10 of them with traffic flowing,
//! so their active path is probed every 100 ms), every probe answered after 10-30 ms. One
//! iteration is one second of virtual time: traffic notes, `next_deadline`, `poll_into` at
//! the deadlines (the core's tick granularity here is 5 ms) and reply handling. Issue #12's
//! "CPU cost of probing 50 peers".

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use meshd_tunnel::path::{Path, PathAction, PathCandidate, PathProber, PathSource, ProberConfig};

const PEERS: usize = 50;
const BUSY_PEERS: usize = 10;
const TICK: Duration = Duration::from_millis(5);

struct World {
    t0: Instant,
    t: Duration,
    peers: Vec<PathProber>,
    /// (arrival, peer, path id, seq)
    replies: Vec<(Duration, usize, u32, u64)>,
    actions: Vec<PathAction>,
    probes: u64,
}

impl World {
    fn new() -> Self {
        let t0 = Instant::now();
        let peers = (0..PEERS)
            .map(|p| {
                let mut prober = PathProber::new(ProberConfig::default(), p as u64 * 1_000_000);
                let candidates = (0..3u8)
                    .map(|k| {
                        let remote: SocketAddr =
                            format!("203.0.113.{}:{}", p + 1, 51820 + u16::from(k))
                                .parse()
                                .unwrap();
                        PathCandidate {
                            path: Path {
                                local: Some(format!("198.51.100.{}", k + 1).parse().unwrap()),
                                remote,
                            },
                            preference: k.min(1),
                            source: PathSource::Configured {
                                name: remote.to_string(),
                            },
                        }
                    })
                    .collect();
                prober.set_candidates(candidates, t0);
                prober
            })
            .collect();
        World {
            t0,
            t: Duration::ZERO,
            peers,
            replies: Vec::new(),
            actions: Vec::with_capacity(16),
            probes: 0,
        }
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.t + span;
        while self.t < end {
            let now = self.t0 + self.t;
            let t = self.t;
            let mut i = 0;
            while i < self.replies.len() {
                if self.replies[i].0 <= t {
                    let (_, peer, id, seq) = self.replies.swap_remove(i);
                    self.peers[peer].probe_reply(id, seq, now);
                } else {
                    i += 1;
                }
            }
            for (p, prober) in self.peers.iter_mut().enumerate() {
                if p < BUSY_PEERS {
                    prober.traffic_sent(now);
                }
                if prober.next_deadline().is_some_and(|d| d <= now) {
                    prober.poll_into(now, &mut self.actions);
                    for action in self.actions.drain(..) {
                        if let PathAction::SendProbe { path_id, seq, .. } = action {
                            self.probes += 1;
                            let rtt = Duration::from_millis(10 + (path_id as u64 % 3) * 10);
                            self.replies.push((t + rtt, p, path_id, seq));
                        }
                    }
                }
            }
            self.t += TICK;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut world = World::new();
    world.run_for(Duration::from_secs(30));
    let before = world.probes;
    world.run_for(Duration::from_secs(60));
    println!(
        "steady state: {:.1} probes per virtual second for {PEERS} peers ({BUSY_PEERS} busy)",
        (world.probes - before) as f64 / 60.0
    );
    c.bench_function("prober: 50 peers, 1 s of virtual time", |b| {
        b.iter(|| {
            world.run_for(Duration::from_secs(1));
            black_box(world.probes)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
