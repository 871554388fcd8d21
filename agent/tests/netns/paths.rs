//! Failover between two ISPs (needs root): alpha and beta each have two uplinks, ISP1
//! (198.51.100.0/24) and ISP2 (203.0.113.0/24), each ISP a router namespace between them.
//! Source-based `ip rule`s send each uplink's traffic to its own ISP, as
//! docs/operations.md tells operators. A 20/s ping and an iperf3 TCP stream run from alpha
//! to beta through the tunnel while (a) alpha's ISP1 link goes down, and (b) ISP1 silently
//! stops forwarding with every link up. The longest gap between ping replies is measured
//! from ping's own timestamps; iperf3 must end without error; traffic fails back to ISP1
//! once it is back, after the hold and without flapping.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netns_tests::{
    MeshdNode, Namespace, Signal, connect_veth, ip, require_root, run_with_timeout, wait_until,
};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// How long the ping runs around a cut; the cut comes `CUT_AFTER` into it.
const PING_SECONDS: u32 = 8;
const CUT_AFTER: Duration = Duration::from_secs(3);
/// The issue's goal for the failover gap.
const MAX_GAP: f64 = 1.0;

/// A node namespace's uplink `n` (1 or 2) to its ISP, the gateway there, and the routes:
/// ISP1 is the main table's default, each uplink's source address looks up its own table.
fn uplink(node: &Namespace, isp: &Namespace, n: u8, node_addr: &str, gateway: &str) {
    let isp_side = format!("{}{}", node.name().chars().last().unwrap(), n);
    connect_veth(
        node,
        &format!("ul{n}"),
        &[&format!("{node_addr}/25")],
        isp,
        &isp_side,
        &[&format!("{gateway}/25")],
    );
    add_routes(node, n, node_addr, gateway);
}

/// The routes through uplink `n` (a link that goes down loses them; they are put back when
/// it comes up, as a DHCP client or ifupdown would).
fn add_routes(node: &Namespace, n: u8, node_addr: &str, gateway: &str) {
    let table = format!("10{n}");
    let dev = format!("ul{n}");
    let metric = format!("{n}00");
    node.ip(&[
        "route", "replace", "default", "via", gateway, "dev", &dev, "metric", &metric,
    ]);
    node.ip(&[
        "route", "replace", "default", "via", gateway, "dev", &dev, "table", &table,
    ]);
    if !node
        .ip(&["rule", "show"])
        .contains(&format!("from {node_addr} lookup {table}"))
    {
        node.ip(&[
            "rule", "add", "from", node_addr, "lookup", &table, "pref", "1000",
        ]);
    }
}

struct TwoIsps {
    alpha: Namespace,
    beta: Namespace,
    isp1: Namespace,
    isp2: Namespace,
}

fn two_isps() -> TwoIsps {
    let alpha = Namespace::new("pa");
    let beta = Namespace::new("pb");
    let isp1 = Namespace::new("pi1");
    let isp2 = Namespace::new("pi2");
    for isp in [&isp1, &isp2] {
        isp.set_sysctl("net/ipv4/ip_forward", "1");
    }
    uplink(&alpha, &isp1, 1, "198.51.100.1", "198.51.100.126");
    uplink(&alpha, &isp2, 2, "203.0.113.1", "203.0.113.126");
    uplink(&beta, &isp1, 1, "198.51.100.129", "198.51.100.254");
    uplink(&beta, &isp2, 2, "203.0.113.129", "203.0.113.254");
    TwoIsps {
        alpha,
        beta,
        isp1,
        isp2,
    }
}

/// ping's arguments for 20 echo requests a second, each answer printed with its receive
/// time (-D), for `seconds`.
fn ping_args(destination: &str, seconds: u32) -> Vec<String> {
    ["ping", "-n", "-D", "-i", "0.05", "-W", "1", "-w"]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([seconds.to_string(), destination.to_owned()])
        .collect()
}

/// Pings `destination` from `namespace` 20 times a second for `seconds` on another thread;
/// the handle gives ping's output (with -D timestamps).
fn ping_stream(
    namespace: &Namespace,
    destination: &str,
    seconds: u32,
) -> thread::JoinHandle<String> {
    let name = namespace.name().to_owned();
    let args = ping_args(destination, seconds);
    thread::spawn(move || {
        let output = Command::new("ip")
            .args(["netns", "exec", &name])
            .args(&args)
            .output()
            .expect("run ping");
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
}

/// The receive times (Unix seconds) of the replies in ping -D output.
fn reply_times(ping_output: &str) -> Vec<f64> {
    ping_output
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// The longest time between two replies in ping -D output, in seconds, and the number of
/// replies.
fn longest_gap(ping_output: &str) -> (f64, usize) {
    let times = reply_times(ping_output);
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0_f64, f64::max);
    (gap, times.len())
}

/// iperf3 from alpha to beta over the tunnel for the ping's duration; the handle gives
/// whether it ended cleanly, and its output.
fn tcp_stream(net: &TwoIsps) -> (netns_tests::ChildGuard, thread::JoinHandle<(bool, String)>) {
    let server = net
        .beta
        .spawn("iperf3", "iperf3", &["-s", "-1", "-B", "10.2.0.1"], &[]);
    thread::sleep(Duration::from_millis(300));
    let name = net.alpha.name().to_owned();
    let client = thread::spawn(move || {
        let output = Command::new("ip")
            .args([
                "netns", "exec", &name, "iperf3", "-c", "10.2.0.1", "-b", "20M",
            ])
            .args(["-t", &PING_SECONDS.to_string(), "--connect-timeout", "3000"])
            .output()
            .expect("run iperf3");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    });
    (server, client)
}

fn switches(log: &str) -> usize {
    log.lines().filter(|l| l.contains("path switch")).count()
}

fn failbacks(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("path switch") && l.contains("failback"))
        .count()
}

/// The two failures of the issue, made and undone on a running mesh.
#[derive(Clone, Copy)]
enum Cut {
    /// alpha's ISP1 link goes down; it comes back with its routes, as a DHCP client or
    /// ifupdown would put them back.
    LinkDown,
    /// ISP1 silently stops forwarding, every link stays up.
    IspDrops,
}

impl Cut {
    fn name(self) -> &'static str {
        match self {
            Cut::LinkDown => "link down",
            Cut::IspDrops => "ISP drops everything",
        }
    }

    /// The name in the benchmark's lines, which scripts/bench-failover.sh reads.
    fn key(self) -> &'static str {
        match self {
            Cut::LinkDown => "link-down",
            Cut::IspDrops => "isp-drop",
        }
    }

    fn apply(self, net: &TwoIsps) {
        match self {
            Cut::LinkDown => {
                net.alpha.ip(&["link", "set", "ul1", "down"]);
            }
            Cut::IspDrops => net.isp1.set_sysctl("net/ipv4/ip_forward", "0"),
        }
    }

    fn undo(self, net: &TwoIsps) {
        match self {
            Cut::LinkDown => {
                net.alpha.ip(&["link", "set", "ul1", "up"]);
                add_routes(&net.alpha, 1, "198.51.100.1", "198.51.100.126");
            }
            Cut::IspDrops => net.isp1.set_sysctl("net/ipv4/ip_forward", "1"),
        }
    }
}

fn mesh(net: &TwoIsps) -> (MeshdNode, MeshdNode) {
    let mut alpha = MeshdNode::with_addresses(
        Path::new(MESHD),
        "alpha",
        "198.51.100.1:51820",
        &["10.1.0.1/16"],
    );
    let mut beta = MeshdNode::with_addresses(
        Path::new(MESHD),
        "beta",
        "198.51.100.129:51820",
        &["10.2.0.1/16"],
    );
    alpha.add_peer_node(
        &beta,
        &["198.51.100.129:51820", "203.0.113.129:51820"],
        &["10.2.0.0/16"],
        None,
    );
    beta.add_peer_node(
        &alpha,
        &["198.51.100.1:51820", "203.0.113.1:51820"],
        &["10.1.0.0/16"],
        None,
    );
    alpha.start(&net.alpha);
    beta.start(&net.beta);
    assert!(
        net.alpha
            .ping_until(ip("10.2.0.1"), Duration::from_secs(10)),
        "no tunnel:\n{}\n{}",
        alpha.log(),
        beta.log()
    );
    // Both uplinks known and probed: the primary path carries the traffic.
    let settled = wait_until(Duration::from_secs(5), || {
        alpha.log().contains("uplink: 203.0.113.1") && net.alpha.ping_all(ip("10.2.0.1"), 3)
    });
    assert!(settled, "uplinks not followed:\n{}", alpha.log());
    (alpha, beta)
}

/// Runs the ping and the TCP stream, calls `cut` `CUT_AFTER` into them, and checks the gap.
fn across_a_cut(net: &TwoIsps, alpha: &MeshdNode, what: &str, cut: impl FnOnce()) {
    let (_server, tcp) = tcp_stream(net);
    let ping = ping_stream(&net.alpha, "10.2.0.1", PING_SECONDS);
    thread::sleep(CUT_AFTER);
    cut();
    let output = ping.join().expect("ping thread");
    let (gap, replies) = longest_gap(&output);
    let (tcp_ok, tcp_output) = tcp.join().expect("iperf3 thread");
    eprintln!("{what}: longest gap between ping replies {gap:.3} s, {replies} replies");
    assert!(
        replies > 100,
        "{what}: only {replies} replies:\n{output}\n{}",
        alpha.log()
    );
    assert!(
        gap < MAX_GAP,
        "{what}: traffic stopped for {gap:.3} s:\n{}",
        alpha.log()
    );
    assert!(
        tcp_ok,
        "{what}: the TCP stream did not survive:\n{tcp_output}"
    );
}

#[test]
fn traffic_survives_an_isp_failure_and_fails_back() {
    if !require_root("traffic_survives_an_isp_failure_and_fails_back") {
        return;
    }
    let net = two_isps();
    let (alpha, beta) = mesh(&net);

    // (a) alpha's ISP1 link goes down.
    let before = switches(&alpha.log());
    across_a_cut(&net, &alpha, Cut::LinkDown.name(), || {
        Cut::LinkDown.apply(&net)
    });
    assert_eq!(
        switches(&alpha.log()),
        before + 1,
        "one switch away from ISP1:\n{}",
        alpha.log()
    );
    // It comes back: traffic returns to it after the hold, once.
    Cut::LinkDown.undo(&net);
    let failed_back = wait_until(Duration::from_secs(20), || failbacks(&alpha.log()) > 0);
    assert!(failed_back, "no failback:\n{}", alpha.log());
    thread::sleep(Duration::from_secs(2));
    let after_failback = switches(&alpha.log());
    assert_eq!(after_failback, before + 2, "no flapping:\n{}", alpha.log());

    // (b) ISP1 silently drops everything, every link stays up.
    across_a_cut(&net, &alpha, Cut::IspDrops.name(), || {
        Cut::IspDrops.apply(&net)
    });
    assert!(
        alpha
            .log()
            .lines()
            .skip_while(|l| !l.contains("failback"))
            .any(|l| { l.contains("path switch") && l.contains("probes lost") }),
        "the switch names its reason:\n{}",
        alpha.log()
    );
    Cut::IspDrops.undo(&net);
    drop((alpha, beta));
    drop(net.isp2);
}

/// Cuts of each kind in the benchmark unless `MESHD_BENCH_CUTS` says otherwise.
const BENCH_CUTS: u32 = 20;
/// How long the benchmark watches the idle tunnel unless `MESHD_BENCH_IDLE_SECONDS` says
/// otherwise.
const BENCH_IDLE_SECONDS: u32 = 60;
/// The benchmark's ping around one cut, and when the cut comes: the failure is undone as
/// the ping ends, 2.5 s after the cut, long enough to see a gap of up to 2 s end. Short on
/// purpose: a path keeps the probes it lost while down in its loss window (the last 32), and
/// one that comes back with more than 20 % of them lost is "lossy", never a failback target
/// and probed only every 10 s, so its node fails back minutes later. A 2.5 s outage costs
/// each ISP1 path 5 lost probes (16 %), a 3.5 s one 6 (19 %); after a 7.5 s one (7, 22 %)
/// beta was still on ISP2 47 s later. The benchmark measures failover, so it stays short.
const BENCH_PING_SECONDS: u32 = 4;
const BENCH_CUT_AFTER: Duration = Duration::from_millis(1500);

fn env_number(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// The failover benchmark (scripts/bench-failover.sh runs it and turns its output into
/// docs/benchmarks.md): on one running mesh, `MESHD_BENCH_CUTS` cuts of each kind, each
/// followed by the restore and the failback; then what crosses alpha's uplinks in
/// `MESHD_BENCH_IDLE_SECONDS` while the tunnel is idle. Prints one `bench-failover:` line per
/// cut and `bench-idle:` lines, and checks that every cut recovered and failed back.
#[test]
#[ignore = "benchmark of about 15 minutes: scripts/bench-failover.sh runs it"]
fn bench_failover_gaps_and_idle_probe_traffic() {
    if !require_root("bench_failover_gaps_and_idle_probe_traffic") {
        return;
    }
    let cuts = env_number("MESHD_BENCH_CUTS", BENCH_CUTS);
    let idle_seconds = env_number("MESHD_BENCH_IDLE_SECONDS", BENCH_IDLE_SECONDS);
    let net = two_isps();
    let (alpha, beta) = mesh(&net);
    // Traffic for 4 s first: the active paths' loss windows fill with answered probes (one
    // every 100 ms), as on any mesh that has carried traffic for a while; a window of a few
    // probes would turn lossy with the first cut's losses (see BENCH_PING_SECONDS).
    ping_stream(&net.alpha, "10.2.0.1", 4)
        .join()
        .expect("ping thread");
    for cut in [Cut::LinkDown, Cut::IspDrops] {
        for n in 1..=cuts {
            bench_one_cut(&net, [&alpha, &beta], cut, n);
        }
    }
    bench_idle(&net, idle_seconds);
    drop((alpha, beta));
    drop(net.isp2);
}

/// Path switches and failbacks a node has logged so far.
fn switch_counts(node: &MeshdNode) -> (usize, usize) {
    let log = node.log();
    (switches(&log), failbacks(&log))
}

/// One cut with the ping running, then the restore with another ping running until every
/// node that moved away has failed back, and 2 s after that (to see a flap); prints the cut's
/// `bench-failover:` line. Both nodes must be back on ISP1 before the next cut: a beta still
/// on ISP2 would not need to switch at all, and the next gap would be alpha's alone.
fn bench_one_cut(net: &TwoIsps, nodes: [&MeshdNode; 2], cut: Cut, n: u32) {
    let before = nodes.map(switch_counts);
    let ping = ping_stream(&net.alpha, "10.2.0.1", BENCH_PING_SECONDS);
    let ping_end = unix_now() + f64::from(BENCH_PING_SECONDS);
    thread::sleep(BENCH_CUT_AFTER);
    let cut_at = unix_now();
    cut.apply(net);
    let output = ping.join().expect("ping thread");
    let (gap, replies) = longest_gap(&output);
    // Replies again near the ping's end: the gap ended inside the ping, so it is whole.
    let recovered = reply_times(&output)
        .last()
        .is_some_and(|&last| last > cut_at && last > ping_end - 0.5);
    assert!(
        recovered,
        "{} (cut {n}): no replies after the cut:\n{output}\n{}",
        cut.name(),
        nodes[0].log()
    );
    let away: Vec<usize> = (0..2)
        .map(|k| switch_counts(nodes[k]).0 - before[k].0)
        .collect();

    let args = ping_args("10.2.0.1", 60);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ping = net
        .alpha
        .spawn(&format!("ping-{}-{n}", cut.key()), args[0], &args[1..], &[]);
    let restored = Instant::now();
    cut.undo(net);
    // When each node failed back (seconds after the restore); a node that did not move away
    // has nothing to fail back from.
    let mut back: [Option<f64>; 2] = [None; 2];
    let all_back = wait_until(Duration::from_secs(40), || {
        for k in 0..2 {
            if back[k].is_none() && (away[k] == 0 || switch_counts(nodes[k]).1 > before[k].1) {
                back[k] = Some(restored.elapsed().as_secs_f64());
            }
        }
        back.iter().all(Option::is_some)
    });
    assert!(
        all_back,
        "{} (cut {n}): no failback:\n{}\n{}\n{}\n{}",
        cut.name(),
        nodes[0].command(&["peers"]),
        nodes[1].command(&["peers"]),
        nodes[0].log(),
        nodes[1].log()
    );
    thread::sleep(Duration::from_secs(2));
    // SIGINT, not the guard's SIGKILL: ping writes out what it has buffered as it exits.
    ping.stop_with(Signal::SIGINT, Duration::from_secs(2));
    let (failback_gap, _) = longest_gap(&ping.log().contents());
    let total: Vec<usize> = (0..2)
        .map(|k| switch_counts(nodes[k]).0 - before[k].0)
        .collect();
    let [alpha_back, beta_back] = back.map(|t| t.unwrap_or_default());
    println!(
        "bench-failover: kind={} cut={n} gap={gap:.3} replies={replies} \
         alpha_away={} beta_away={} alpha_back={alpha_back:.2} beta_back={beta_back:.2} \
         failback_gap={failback_gap:.3} alpha_switches={} beta_switches={}",
        cut.key(),
        away[0],
        away[1],
        total[0],
        total[1]
    );
}

/// Counts, for `seconds`, every frame on alpha's two uplinks by what it is (probe request or
/// reply, WireGuard handshake, keepalive or data, ICMP, TCP, ARP), by direction: packets, bytes from
/// the IP header on (the 14-byte Ethernet header not counted) and UDP payload bytes. One
/// `bench-idle:` line per class and direction. Python's AF_PACKET socket is the only packet
/// tap in the standard toolset here (no tcpdump or nft needed); it sees both directions.
const UNDERLAY_TALLY: &str = r#"
import socket, struct, sys, time
from collections import defaultdict

seconds = float(sys.argv[1])
PACKET_OUTGOING = 4
sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))

def classify(protocol, data):
    if protocol == 0x0806:
        return "arp", 0
    if protocol != 0x0800 or len(data) < 20:
        return "other", 0
    ihl = (data[0] & 15) * 4
    if data[9] == 1:
        return "icmp", 0
    if data[9] == 6:
        return "tcp", 0
    if data[9] != 17:
        return "other-ip", 0
    sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
    payload = data[ihl + 8:]
    if 51820 not in (sport, dport) or not payload:
        return "other-udp", len(payload)
    kind = {0x50: "probe-request", 0x51: "probe-reply", 1: "handshake", 2: "handshake",
            3: "cookie", 4: "keepalive" if len(payload) == 32 else "tunnel-data"}
    return kind.get(payload[0], "other-udp"), len(payload)

tally = defaultdict(lambda: [0, 0, 0])
end = time.monotonic() + seconds
while (left := end - time.monotonic()) > 0:
    sock.settimeout(min(left, 0.2))
    try:
        data, address = sock.recvfrom(65535)
    except socket.timeout:
        continue
    if not address[0].startswith("ul"):
        continue
    direction = "out" if address[2] == PACKET_OUTGOING else "in"
    kind, payload = classify(address[1], data)
    counts = tally[(kind, direction)]
    counts[0] += 1
    counts[1] += len(data)
    counts[2] += payload
for (kind, direction), (packets, l3, payload) in sorted(tally.items()):
    print(f"bench-idle: class={kind} dir={direction} packets={packets} "
          f"l3_bytes={l3} udp_payload_bytes={payload}")
"#;

/// What crosses alpha's uplinks while nothing is sent through the tunnel.
fn bench_idle(net: &TwoIsps, seconds: u32) {
    // Past the last ping's traffic window: the active path is back at its idle rate.
    thread::sleep(Duration::from_secs(5));
    let seconds_arg = seconds.to_string();
    let ticks_before = meshd_cpu_ticks(&net.alpha);
    let output = run_with_timeout(
        "ip",
        &[
            "netns",
            "exec",
            net.alpha.name(),
            "python3",
            "-c",
            UNDERLAY_TALLY,
            &seconds_arg,
        ],
        Duration::from_secs(u64::from(seconds) + 30),
    )
    .unwrap_or_else(|error| panic!("counting the idle underlay: {error}"));
    let ticks = meshd_cpu_ticks(&net.alpha) - ticks_before;
    let text = String::from_utf8_lossy(&output.stdout);
    println!("bench-idle: seconds={seconds} paths=4");
    let per_second = String::from_utf8_lossy(
        &netns_tests::run_checked("getconf", &["CLK_TCK"])
            .expect("getconf CLK_TCK")
            .stdout,
    )
    .trim()
    .parse::<f64>()
    .expect("CLK_TCK is a number");
    println!(
        "bench-idle: meshd_cpu_seconds={:.2}",
        ticks as f64 / per_second
    );
    print!("{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("class=probe-request dir=out")),
        "no probe left alpha in {seconds} s of idle tunnel:\n{text}"
    );
}

/// User and system clock ticks used so far by the meshd process in `namespace` (all its
/// threads), from /proc/PID/stat.
fn meshd_cpu_ticks(namespace: &Namespace) -> u64 {
    let pids = netns_tests::run_checked("ip", &["netns", "pids", namespace.name()])
        .expect("ip netns pids");
    let mut total = 0;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "meshd" {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // utime and stime are fields 14 and 15; the command name before them is in
        // parentheses and may hold spaces, so count from the closing one (field 3 on).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        total += fields
            .get(11..13)
            .into_iter()
            .flatten()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}
