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
use std::time::Duration;

use netns_tests::{MeshdNode, Namespace, connect_veth, ip, require_root, wait_until};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// How long the ping runs around a cut; the cut comes `CUT_AFTER` into it.
const PING_SECONDS: u32 = 8;
const CUT_AFTER: Duration = Duration::from_secs(3);
/// The goal for the failover gap.
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

/// Pings `destination` from `namespace` 20 times a second for `PING_SECONDS` on another
/// thread; the handle gives ping's output (with -D timestamps).
fn ping_stream(namespace: &Namespace, destination: &str) -> thread::JoinHandle<String> {
    let name = namespace.name().to_owned();
    let destination = destination.to_owned();
    thread::spawn(move || {
        let output = Command::new("ip")
            .args([
                "netns", "exec", &name, "ping", "-n", "-D", "-i", "0.05", "-W", "1",
            ])
            .args(["-w", &PING_SECONDS.to_string(), &destination])
            .output()
            .expect("run ping");
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
}

/// The longest time between two replies (or from the first request to the first reply) in
/// ping -D output, in seconds, and the number of replies.
fn longest_gap(ping_output: &str) -> (f64, usize) {
    let times: Vec<f64> = ping_output
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
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
    let ping = ping_stream(&net.alpha, "10.2.0.1");
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
    across_a_cut(&net, &alpha, "link down", || {
        net.alpha.ip(&["link", "set", "ul1", "down"]);
    });
    assert_eq!(
        switches(&alpha.log()),
        before + 1,
        "one switch away from ISP1:\n{}",
        alpha.log()
    );
    // It comes back: traffic returns to it after the hold, once.
    net.alpha.ip(&["link", "set", "ul1", "up"]);
    add_routes(&net.alpha, 1, "198.51.100.1", "198.51.100.126");
    let failed_back = wait_until(Duration::from_secs(20), || {
        alpha
            .log()
            .lines()
            .any(|l| l.contains("path switch") && l.contains("failback"))
    });
    assert!(failed_back, "no failback:\n{}", alpha.log());
    thread::sleep(Duration::from_secs(2));
    let after_failback = switches(&alpha.log());
    assert_eq!(after_failback, before + 2, "no flapping:\n{}", alpha.log());

    // (b) ISP1 silently drops everything, every link stays up.
    across_a_cut(&net, &alpha, "ISP drops everything", || {
        net.isp1.set_sysctl("net/ipv4/ip_forward", "0");
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
    net.isp1.set_sysctl("net/ipv4/ip_forward", "1");
    drop((alpha, beta));
    drop(net.isp2);
}
