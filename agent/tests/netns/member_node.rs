//! A mesh member in its own network namespace for the netns tests: its files, `meshd`
//! commands run inside the namespace (init, invite, join, routes) and, while it runs, its
//! daemon. Included by the tests that build a mesh from real tokens (`#[path]`).

// Each test that includes this uses a different part of it.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use meshd::api::report::RoutesReport;
use meshd::state::StateDir;
use netns_tests::{ChildGuard, Namespace, connect_veth, run_checked, run_with_timeout, wait_until};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// Bound for one node to come up or stop.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The port every node listens on.
pub const PORT: u16 = 51820;

/// One node: its namespace, its files and, while it runs, its daemon.
pub struct Node {
    pub name: String,
    pub namespace: Namespace,
    pub dir: tempfile::TempDir,
    pub daemon: Option<ChildGuard>,
}

impl Node {
    /// A namespace on the underlay bridge of `isp` with `198.51.100.<host>/24`.
    pub fn new(name: &str, isp: &Namespace, host: u8) -> Node {
        let namespace = Namespace::new(name);
        let address = format!("198.51.100.{host}/24");
        let isp_side = format!("n{host}");
        connect_veth(&namespace, "ul0", &[&address], isp, &isp_side, &[]);
        isp.ip(&["link", "set", &isp_side, "master", "br0"]);
        Node {
            name: name.to_owned(),
            namespace,
            dir: tempfile::tempdir().expect("a temporary directory"),
            daemon: None,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("meshd.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn args<'a>(&'a self, config: &'a str, state: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--config", config, "--state-dir", state];
        args.extend_from_slice(rest);
        args
    }

    /// Runs `meshd args...` inside the node's namespace (it may need the underlay) and
    /// returns its standard output; panics with its output if it fails.
    pub fn meshd(&self, rest: &[&str]) -> String {
        let config = self.config().display().to_string();
        let state = self.state().display().to_string();
        let args = self.args(&config, &state, rest);
        let mut full = vec!["netns", "exec", self.namespace.name(), MESHD];
        full.extend_from_slice(&args);
        let output = run_with_timeout("ip", &full, Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("meshd {rest:?} on {}: {error}", self.name));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Rewrites the node's meshd.toml (after init or join) through `change`.
    pub fn configure(&self, change: impl FnOnce(&mut mesh_config::Config)) {
        let mut config = mesh_config::load(&self.config()).expect("meshd.toml after init/join");
        change(&mut config);
        std::fs::write(self.config(), config.to_toml_string()).expect("rewrite meshd.toml");
    }

    /// Starts `meshd run` and waits until it says it runs.
    pub fn start(&mut self) {
        let config = self.config().display().to_string();
        let state = self.state().display().to_string();
        let args = self.args(&config, &state, &["run"]);
        let mut daemon = self
            .namespace
            .spawn(&self.name, MESHD, &args, &[("RUST_LOG", "info")]);
        let up = wait_until(START_TIMEOUT, || {
            daemon.try_exit_status().is_none() && daemon.log().contents().contains("meshd running")
        });
        assert!(
            up,
            "meshd {} did not start within {START_TIMEOUT:?} (exit {:?}):\n{}",
            self.name,
            daemon.try_exit_status(),
            daemon.log().contents()
        );
        self.daemon = Some(daemon);
    }

    /// Stops the daemon with SIGTERM and checks that it exits cleanly.
    pub fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        run_checked("kill", &["-TERM", &daemon.pid().to_string()]).expect("kill -TERM meshd");
        let stopped = wait_until(START_TIMEOUT, || daemon.try_exit_status().is_some());
        let status = daemon.try_exit_status();
        assert!(
            stopped && status.is_some_and(|s| s.success()),
            "meshd {} did not stop cleanly ({status:?}):\n{}",
            self.name,
            daemon.log().contents()
        );
    }

    /// The node's own overlay IPv4 and IPv6 addresses, from the allocation in `node.json`.
    pub fn overlay(&self) -> [IpAddr; 2] {
        let record = StateDir::new(self.state())
            .read_node_record()
            .expect("node.json after init/join");
        [
            IpAddr::V4(record.allocation.ipv4_address),
            IpAddr::V6(record.allocation.ipv6_address),
        ]
    }

    /// `meshd routes --json`.
    pub fn routes(&self) -> RoutesReport {
        let json = self.meshd(&["routes", "--json"]);
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}: {json}", self.name))
    }

    /// The names of the BGP sessions that are established.
    pub fn established(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes()
            .bgp_sessions
            .into_iter()
            .filter(|s| s.state == "established")
            .map(|s| s.name)
            .collect();
        names.sort();
        names
    }

    /// The node's best BGP path to `prefix`, with where it came from and whether it is in the
    /// kernel.
    pub fn best_bgp_route(&self, prefix: &str) -> Option<meshd::api::report::BgpRouteEntry> {
        let prefix: ipnet::IpNet = prefix.parse().unwrap();
        self.routes()
            .bgp_routes
            .into_iter()
            .find(|r| r.prefix == prefix && r.best)
    }

    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log().contents())
            .unwrap_or_default()
    }

    /// Scrapes the daemon's metrics (127.0.0.1:9474 in the node's namespace).
    pub fn metrics(&self) -> netns_tests::Exposition {
        let scrape = || {
            self.namespace.run_in(|| {
                netns_tests::http_request(([127, 0, 0, 1], 9474).into(), "GET", "/metrics")
            })
        };
        wait_until(Duration::from_secs(5), || scrape().is_ok());
        let response = scrape().unwrap_or_else(|e| panic!("cannot scrape {}: {e}", self.name));
        assert_eq!(response.status, 200, "{}", response.body);
        netns_tests::parse_exposition(&response.body)
            .unwrap_or_else(|e| panic!("{e}\n{}", response.body))
    }

    /// Starts an iperf3 server on `address` (one of the node's); see [`iperf3_server`].
    pub fn iperf3_server(&self, address: IpAddr) -> ChildGuard {
        iperf3_server(&self.namespace, address)
    }

    pub fn pings(&self, destination: IpAddr) -> bool {
        self.namespace
            .exec(
                "ping",
                &["-n", "-q", "-c", "1", "-W", "1", &destination.to_string()],
            )
            .is_ok()
    }
}

/// `meshd invite` on the CA holder (files only) → the token.
pub fn invite(ca: &Node, args: &[&str]) -> String {
    let mut rest = vec!["invite"];
    rest.extend_from_slice(args);
    ca.meshd(&rest).trim().to_owned()
}

/// Starts an iperf3 server on `address` in `namespace` and waits until it listens on port
/// 5201. Dropping the guard stops it.
pub fn iperf3_server(namespace: &Namespace, address: IpAddr) -> ChildGuard {
    let server = namespace.spawn(
        "iperf3-server",
        "iperf3",
        &["-s", "-B", &address.to_string()],
        &[],
    );
    let ready = wait_until(Duration::from_secs(5), || {
        namespace
            .exec("ss", &["-Hltn", "sport = :5201"])
            .is_ok_and(|o| !o.stdout.is_empty())
    });
    assert!(ready, "iperf3 server in {} did not start", namespace.name());
    server
}

pub fn endpoint(host: u8) -> String {
    format!("198.51.100.{host}:{PORT}")
}

/// The underlay: a namespace (the "ISP") with bridge `br0`, for [`Node::new`] and
/// [`attach`].
pub fn underlay(label: &str) -> Namespace {
    let isp = Namespace::new(label);
    isp.ip(&["link", "add", "br0", "type", "bridge"]);
    isp.ip(&["link", "set", "br0", "up"]);
    isp
}

/// Connects `namespace` (not a node: an attacker, say) to the underlay bridge with
/// `addresses` (`198.51.100.x/24` each) on its `ul0`, and `isp_side` in the ISP's.
pub fn attach(namespace: &Namespace, isp: &Namespace, addresses: &[&str], isp_side: &str) {
    connect_veth(namespace, "ul0", addresses, isp, isp_side, &[]);
    isp.ip(&["link", "set", isp_side, "master", "br0"]);
}

/// Two cores on the underlay, running: alpha (`198.51.100.1`, the CA) and beta (`.2`),
/// joined with a real token; returns once alpha reaches beta through the tunnel.
pub fn two_cores(isp: &Namespace, label: &str) -> (Node, Node) {
    let mut alpha = Node::new(&format!("{label}-alpha"), isp, 1);
    let mut beta = Node::new(&format!("{label}-beta"), isp, 2);
    alpha.meshd(&["init", "--name", "alpha", "--endpoint", &endpoint(1)]);
    alpha.start();
    let token = invite(&alpha, &["beta", "--role", "core"]);
    let out = beta.meshd(&["join", &token, "--endpoint", &endpoint(2)]);
    assert!(out.contains("Joined mesh"), "{out}");
    beta.start();
    let [beta_v4, _] = beta.overlay();
    assert!(
        wait_until(Duration::from_secs(10), || alpha.pings(beta_v4)),
        "alpha cannot reach beta"
    );
    (alpha, beta)
}

/// The resident set size of process `pid`, in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
