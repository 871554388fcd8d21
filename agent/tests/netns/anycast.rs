//! A shared (anycast) /32 announced by two cores, in network namespaces (needs root); #13
//! item 5. Three cores on one documentation-range underlay with no added delay, admitted with
//! real tokens:
//!
//! - alpha holds the CA and sends;
//! - beta and gamma are approved for 203.0.113.53/32 (`invite --anycast`,
//!   `[routing] anycast_prefixes`), have it on their loopback and run a small UDP responder
//!   bound to it that answers with the node's name.
//!
//! The IGP cost of a next hop is the tunnel's RTT rounded to 5 ms buckets with a bucket of
//! hysteresis (`routing::igp_cost`): on an undelayed underlay both announcers cost 0, so the
//! two paths are equal and `[routing] max_paths` (8 by default) keeps both. Checked: alpha's
//! `meshd routes --json` has an `equal_cost` group for the /32 with both announcers; 64 UDP
//! flows from alpha (64 source ports) are spread over both by the data plane's flow hash;
//! when gamma's meshd stops, every flow is answered by beta within 5 s, measured.

#[path = "member_node.rs"]
mod member_node;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use member_node::{Node, endpoint, invite, underlay};
use netns_tests::{Namespace, require_root, wait_until};

/// Bound for the mesh and BGP to settle after the start.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound for the flows to move to the other announcer.
const MOVE_BOUND: Duration = Duration::from_secs(5);
/// How long the measurement waits at most (so that a slow move is measured, not cut).
const MOVE_WAIT: Duration = Duration::from_secs(15);

const SHARED: &str = "203.0.113.53";
const SHARED_PREFIX: &str = "203.0.113.53/32";
/// The responders' UDP port on the shared address.
const SERVICE_PORT: u16 = 5353;
/// Flows (source ports) alpha sends.
const FLOWS: usize = 64;
/// How long one round waits for the answers to its requests.
const ROUND_WAIT: Duration = Duration::from_millis(800);

/// A UDP responder on the shared address in one announcer's namespace: answers each request
/// `N` with `NAME N`. Stops on drop.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(namespace: &Namespace, name: &'static str) -> Responder {
        // The socket is made inside the namespace and stays there; the serving thread need
        // not be.
        let socket = namespace.run_in(|| {
            UdpSocket::bind((SHARED, SERVICE_PORT))
                .unwrap_or_else(|e| panic!("bind {SHARED}:{SERVICE_PORT}: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buffer) {
                    let request = String::from_utf8_lossy(&buffer[..n]);
                    let _ = socket.send_to(format!("{name} {request}").as_bytes(), from);
                }
            }
        });
        Responder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sender's flows: one UDP socket (one source port) each, made in its namespace.
struct Flows {
    sockets: Vec<UdpSocket>,
    round: u64,
}

impl Flows {
    fn new(namespace: &Namespace) -> Flows {
        let sockets = namespace.run_in(|| {
            (0..FLOWS)
                .map(|_| UdpSocket::bind("0.0.0.0:0").expect("bind a flow's socket"))
                .collect::<Vec<_>>()
        });
        for socket in &sockets {
            socket.set_nonblocking(true).expect("nonblocking");
        }
        Flows { sockets, round: 0 }
    }

    /// One request on every flow; who answered each (`None`: no answer in [`ROUND_WAIT`]).
    fn round(&mut self) -> Vec<Option<String>> {
        self.round += 1;
        let request = self.round.to_string();
        let to: SocketAddr = format!("{SHARED}:{SERVICE_PORT}").parse().unwrap();
        for socket in &self.sockets {
            // A send may fail while the route is missing; that flow is simply unanswered.
            let _ = socket.send_to(request.as_bytes(), to);
        }
        let mut answers: Vec<Option<String>> = vec![None; FLOWS];
        let deadline = Instant::now() + ROUND_WAIT;
        let mut buffer = [0u8; 64];
        while Instant::now() < deadline && answers.iter().any(Option::is_none) {
            for (socket, answer) in self.sockets.iter().zip(answers.iter_mut()) {
                // Drain: answers to earlier rounds may still arrive; keep this round's.
                while let Ok(n) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    if let Some((name, round)) = text.split_once(' ')
                        && round == request
                    {
                        *answer = Some(name.to_owned());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        answers
    }
}

/// How many flows each responder answered (and `none` for the unanswered).
fn split(answers: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        let name = answer.clone().unwrap_or_else(|| "none".to_owned());
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// The announcers alpha's routes use for the shared prefix, when its group is `equal_cost`.
fn equal_cost_announcers(alpha: &Node) -> Option<Vec<String>> {
    let report = alpha.routes();
    let group = report
        .ecmp_groups
        .into_iter()
        .find(|g| g.prefix == net(SHARED_PREFIX))?;
    if group.reason != "equal_cost" || group.next_hops.len() != 2 {
        return None;
    }
    let mut names: Vec<String> = group
        .paths
        .iter()
        .filter(|p| p.used)
        .filter_map(|p| p.announcer.clone())
        .collect();
    names.sort();
    Some(names)
}

#[test]
fn an_anycast_prefix_is_spread_over_equal_announcers_and_moves_when_one_stops() {
    if !require_root("an_anycast_prefix_is_spread_over_equal_announcers_and_moves_when_one_stops") {
        return;
    }
    let isp = underlay("ac-isp");
    let mut alpha = Node::new("ac-alpha", &isp, 1);
    let mut beta = Node::new("ac-beta", &isp, 2);
    let mut gamma = Node::new("ac-gamma", &isp, 3);
    for announcer in [&beta, &gamma] {
        announcer
            .namespace
            .ip(&["addr", "add", SHARED_PREFIX, "dev", "lo"]);
    }

    alpha.meshd(&["init", "--name", "alpha", "--endpoint", &endpoint(1)]);
    alpha.start();
    for (node, name, host) in [(&mut beta, "beta", 2), (&mut gamma, "gamma", 3)] {
        let token = invite(
            &alpha,
            &[name, "--role", "core", "--anycast", SHARED_PREFIX],
        );
        let out = node.meshd(&["join", &token, "--endpoint", &endpoint(host)]);
        assert!(out.contains("Joined mesh"), "{out}");
        node.configure(|config| {
            config.routing.anycast_prefixes = vec![net(SHARED_PREFIX)];
        });
        node.start();
    }
    // Declared after the nodes: dropped (stopped) before them.
    let _beta_responder = Responder::start(&beta.namespace, "beta");
    let _gamma_responder = Responder::start(&gamma.namespace, "gamma");

    // alpha has both paths, at an equal cost, both used.
    let started = Instant::now();
    let grouped = wait_until(CONVERGE_TIMEOUT, || {
        equal_cost_announcers(&alpha).is_some_and(|names| names == ["beta", "gamma"])
    });
    assert!(
        grouped,
        "alpha has no equal-cost group for {SHARED_PREFIX} through beta and gamma: {:#?}\nalpha:\n{}",
        alpha.routes().ecmp_groups,
        alpha.log()
    );
    eprintln!(
        "anycast: alpha's group for {SHARED_PREFIX} is beta + gamma {:?} after the start",
        started.elapsed()
    );

    // The flows are spread by hash: both answer some. The data plane may take a moment after
    // the group shows in `meshd routes`, and a debug build under load may lose a packet, so a
    // few rounds; each flow keeps its latest answer.
    let mut flows = Flows::new(&alpha.namespace);
    let mut answered: Vec<Option<String>> = vec![None; FLOWS];
    let spread = wait_until(CONVERGE_TIMEOUT, || {
        for (flow, answer) in flows.round().into_iter().enumerate() {
            if answer.is_some() {
                answered[flow] = answer;
            }
        }
        let counts = split(&answered);
        !counts.contains_key("none") && counts.len() == 2
    });
    let counts = split(&answered);
    eprintln!("anycast: {FLOWS} flows from alpha answered by {counts:?}");
    assert!(
        spread,
        "{FLOWS} flows to {SHARED} are not spread over beta and gamma: {counts:?}\nalpha:\n{}",
        alpha.log()
    );
    // A flow stays with its announcer while the group is the same (two fresh rounds: the
    // earliest answers above may predate the group).
    let (first, second) = (flows.round(), flows.round());
    let moved: Vec<usize> = (0..FLOWS)
        .filter(|&i| first[i].is_some() && second[i].is_some() && first[i] != second[i])
        .collect();
    assert!(moved.is_empty(), "flows {moved:?} changed announcer");

    // gamma's meshd stops: every flow is answered by beta.
    let stopped_at = Instant::now();
    gamma.stop();
    eprintln!(
        "anycast: gamma's meshd exited {:?} after SIGTERM",
        stopped_at.elapsed()
    );
    let mut all_beta = None;
    while stopped_at.elapsed() < MOVE_WAIT {
        let answers = flows.round();
        if answers.iter().all(|a| a.as_deref() == Some("beta")) {
            all_beta = Some(stopped_at.elapsed());
            break;
        }
    }
    let moved = all_beta.unwrap_or_else(|| {
        panic!(
            "{MOVE_WAIT:?} after gamma stopped, not every flow reaches beta: {:?}\nalpha:\n{}",
            split(&flows.round()),
            alpha.log()
        )
    });
    eprintln!("anycast: gamma stopped, all {FLOWS} flows answered by beta after {moved:?}");
    assert!(
        moved <= MOVE_BOUND,
        "the flows moved to beta only after {moved:?}"
    );

    for node in [&mut alpha, &mut beta] {
        node.stop();
    }
}
