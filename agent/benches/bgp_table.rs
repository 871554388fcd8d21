//! Full-table benchmark (docs/benchmarks.md): one BIRD 2 feeds the same table of IPv4 prefixes to meshd's
//! speaker and to a second BIRD 2, each in its own network namespace, in the same run. Reports,
//! for both receivers, the time from the session coming up (meshd: its first route; BIRD: polled
//! every 10 ms) until every prefix is in the Loc-RIB with a best path, and the peak memory (meshd: this process's peak RSS above its starting RSS; BIRD: its
//! process's peak RSS).
//!
//! Needs root and the bird2 package. `cargo bench --bench bgp_table`; the table size comes from
//! `MESHD_BGP_BENCH_PREFIXES` (default 100000; the issue also asks for 1000000).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use meshd::bgp::packet::Family;
use meshd::bgp::speaker::{Speaker, SpeakerConfig};
use netns_tests::{Namespace, connect_veth};
use tokio::sync::mpsc;

fn status_kib(pid: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn feeder_config(prefixes: u32, log: &str) -> String {
    let mut routes = String::with_capacity(prefixes as usize * 40);
    for i in 0..prefixes {
        let a = Ipv4Addr::from(0x0100_0000 + (i << 8));
        routes.push_str(&format!("route {a}/24 blackhole;\n"));
    }
    format!(
        r#"log "{log}" all;
router id 198.51.100.2;
protocol device {{ }}
protocol static feed {{ ipv4; {routes} }}
protocol bgp to_meshd {{ local 198.51.100.2 as 65010; neighbor 198.51.100.1 as 65001;
    passive on; ipv4 {{ import none; export all; }}; }}
protocol bgp to_receiver {{ local 203.0.113.2 as 65010; neighbor 203.0.113.1 as 65002;
    passive on; ipv4 {{ import none; export all; }}; }}
"#
    )
}

const RECEIVER: &str = r#"router id 203.0.113.1;
protocol device { }
protocol bgp feeder { local 203.0.113.1 as 65002; neighbor 203.0.113.2 as 65010;
    connect delay time 1;
    ipv4 { import all; export none; }; }
"#;

/// birdc's answer (its exit status is not meaningful for `show` commands).
fn birdc(ns: &str, socket: &str, args: &[&str]) -> String {
    let mut full = vec!["netns", "exec", ns, "birdc", "-s", socket];
    full.extend_from_slice(args);
    std::process::Command::new("ip")
        .args(&full)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn main() {
    // `cargo test --benches` runs this too: only benchmark under `cargo bench`, as root.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !nix_is_root() {
        eprintln!("bgp_table: skipped, needs root (network namespaces)");
        return;
    }
    let prefixes: u32 = std::env::var("MESHD_BGP_BENCH_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let feeder = Namespace::new("bgpfeed");
    let meshd_ns = Namespace::new("bgpmeshd");
    let receiver = Namespace::new("bgprecv");
    connect_veth(
        &feeder,
        "m0",
        &["198.51.100.2/24"],
        &meshd_ns,
        "f0",
        &["198.51.100.1/24"],
    );
    connect_veth(
        &feeder,
        "b0",
        &["203.0.113.2/24"],
        &receiver,
        "f0",
        &["203.0.113.1/24"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        path("feeder.conf"),
        feeder_config(prefixes, &path("feeder.log")),
    )
    .unwrap();
    std::fs::write(path("receiver.conf"), RECEIVER).unwrap();
    let feeder_sock = path("feeder.ctl");
    let feeder_bird = feeder.spawn(
        "bird",
        "bird",
        &["-f", "-c", &path("feeder.conf"), "-s", &feeder_sock],
        &[],
    );
    // Let the feeder load its table before the receivers connect.
    let mut last = String::new();
    let loaded = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        last = birdc(feeder.name(), &feeder_sock, &["show", "route", "count"]);
        last.contains(&format!("{prefixes} of"))
    });
    assert!(
        loaded,
        "feeder BIRD did not load {prefixes} routes: {last}\n{}\n{}",
        std::fs::read_to_string(path("feeder.log")).unwrap_or_default(),
        feeder_bird.log().contents()
    );

    let receiver_sock = path("receiver.ctl");
    let start = Instant::now();
    let bird = receiver.spawn(
        "bird",
        "bird",
        &["-f", "-c", &path("receiver.conf"), "-s", &receiver_sock],
        &[],
    );
    let bird_pid = bird.pid().to_string();
    let bird_thread = std::thread::spawn({
        let receiver_sock = receiver_sock.clone();
        let name = receiver.name().to_owned();
        move || {
            // Timed from the session's Established (BIRD does not answer its CLI while busy
            // with a burst of UPDATEs, so its first route cannot be observed), polled every 10 ms.
            let target = format!("{prefixes} of {prefixes} routes");
            let mut established: Option<Instant> = None;
            loop {
                if established.is_none() {
                    let state = birdc(&name, &receiver_sock, &["show", "protocols", "feeder"]);
                    if state.contains("Established") {
                        established = Some(Instant::now());
                    }
                }
                let out = birdc(&name, &receiver_sock, &["show", "route", "count"]);
                if out.contains(&target) {
                    return established.map_or(Duration::ZERO, |f| f.elapsed());
                }
                if start.elapsed() > Duration::from_secs(600) {
                    panic!("receiving BIRD did not reach {prefixes} routes: {out}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });

    let (meshd_time, meshd_peak_kib) = meshd_ns.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let before = status_kib("self", "VmRSS:");
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut config = mesh_config::Config::new("meshd", mesh_config::Role::Core);
            config.routing.asn = 65001;
            let mut feeder = mesh_config::BgpNeighbor::new(
                "feeder",
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
                65010,
            );
            feeder.import = mesh_config::PolicySpec::Inline(mesh_config::Policy {
                default: Some(mesh_config::PolicyAction::Accept),
                ..mesh_config::Policy::default()
            });
            let mut neighbor = meshd::bgp::neighbor::load(&feeder, &config).unwrap();
            neighbor.connect_retry = Duration::from_millis(200);
            neighbor.families = vec![Family::Ipv4Unicast];
            let speaker = Speaker::start(
                SpeakerConfig {
                    asn: 65001,
                    router_id: Ipv4Addr::new(198, 51, 100, 1),
                    listen: vec![],
                    neighbors: vec![neighbor],
                },
                tx,
            )
            .await
            .unwrap();
            let mut seen = 0u32;
            let mut first = None;
            while seen < prefixes {
                let change = rx.recv().await.expect("speaker running");
                first.get_or_insert_with(Instant::now);
                if change.best.is_some() {
                    seen += 1;
                }
            }
            let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
            let peak = status_kib("self", "VmHWM:").saturating_sub(before);
            speaker.shutdown().await;
            (elapsed, peak)
        })
    });
    let bird_time = bird_thread.join().expect("receiver BIRD timing");
    let bird_peak_kib = status_kib(&bird_pid, "VmHWM:");
    let per = |kib: u64| kib as f64 * 1024.0 / f64::from(prefixes);
    println!("| receiver | prefixes | time to best path | peak memory | bytes per prefix |");
    println!("|---|---|---|---|---|");
    println!(
        "| meshd | {prefixes} | {:.2} s | {:.1} MiB | {:.0} |",
        meshd_time.as_secs_f64(),
        meshd_peak_kib as f64 / 1024.0,
        per(meshd_peak_kib)
    );
    println!(
        "| BIRD 2 | {prefixes} | {:.2} s | {:.1} MiB | {:.0} |",
        bird_time.as_secs_f64(),
        bird_peak_kib as f64 / 1024.0,
        per(bird_peak_kib)
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
