//! Five nodes in one process, no root: three cores (alpha holds the CA) and two spokes
//! (`s1` behind beta, `s2` behind gamma), admitted from tokens with the real commands, each
//! running its control plane over TLS on 127.0.0.x, its data plane on UDP with an in-memory
//! packet device, and the peer set between the two, as `meshd run` wires them.
//!
//! Checked: packets cross between every pair (spoke to spoke through two cores); a revoked
//! spoke is cut off; with the CA node stopped the others keep forwarding; a node restarted
//! from its state directory (no new join) is back in the mesh through a core it knows.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use integration::memory_device::{MemoryDeviceHandle, memory_device};
use integration::packets::{echo_reply, icmp4_echo};
use meshd::cli::Cli;
use meshd::commands::{Output, execute};
use meshd::control::{ControlPlane, ControlSettings};
use meshd::dataplane::{Dataplane, DataplaneConfig};
use meshd::peerset::{PeerSet, PeerSources, RoutePlan};
use meshd::state::StateDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound for one packet to get through while the mesh converges.
const CONVERGE: Duration = Duration::from_secs(15);
/// Bound for a revocation to cut a node off.
const REVOKE: Duration = Duration::from_secs(8);

/// Runs a meshd command for node `name` (files under `dir/name`); Ok(stdout) or Err(error).
fn meshd(dir: &Path, name: &str, args: &[&str]) -> Result<String, String> {
    let node = dir.join(name);
    let mut argv = vec![
        "meshd".to_owned(),
        "--config".to_owned(),
        node.join("meshd.toml").display().to_string(),
        "--state-dir".to_owned(),
        node.join("state").display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let mut output = Output {
        out: Vec::new(),
        note: Vec::new(),
    };
    execute(cli, &mut output).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(output.out).expect("meshd prints UTF-8"))
}

/// `meshd` on a blocking thread (join talks to a control plane in this runtime).
async fn meshd_async(dir: &Path, name: &str, args: &[&str]) -> String {
    let (dir, owned) = (dir.to_path_buf(), name.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        meshd(&dir, &owned, &args)
    })
    .await
    .expect("the command thread")
    .unwrap_or_else(|error| panic!("meshd for {name}: {error}"))
}

/// One running node: the "kernel" side of its device, and a task that owns its planes.
struct Node {
    name: String,
    address: Ipv4Addr,
    device: MemoryDeviceHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Starts node `name` from its files: data plane on `ip` (port of its endpoint, 0 for a
/// spoke nobody dials), control plane on the same address, the peer set between them.
async fn start(dir: &Path, name: &str, ip: &str) -> Node {
    let node_dir: PathBuf = dir.join(name);
    let config = mesh_config::load(&node_dir.join("meshd.toml")).expect("config");
    let state_dir = node_dir.join("state");
    let record = StateDir::new(&state_dir)
        .read_node_record()
        .expect("node.json");
    let key = meshd::state::load_wireguard_key(&state_dir).expect("WireGuard key");
    // The port other nodes reach it at (each test node has its own); a spoke is not dialled.
    let port = config
        .node
        .endpoints
        .first()
        .map_or(0, |endpoint| endpoint.port);
    let mut settings = ControlSettings::for_daemon(&config, &state_dir).expect("a certificate");
    settings.bind = vec![format!("{ip}:{port}").parse().expect("bind address")];
    let (device, handle) = memory_device();
    let dataplane = Dataplane::start(
        DataplaneConfig {
            private_key: key.to_bytes(),
            listen_port: port,
            bind_addresses: vec![ip.parse().expect("test address")],
            mtu: 1420,
            peers: Vec::new(),
        },
        device,
    )
    .await
    .expect("data plane starts");
    let control = ControlPlane::start(settings)
        .await
        .expect("control plane starts");
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let peers = PeerSet::new(&dataplane, PeerSources::default(), RoutePlan::default());
        tokio::select! {
            _ = stopped => {}
            () = peers.follow_members(control.peers()) => {}
        }
        drop(peers);
        control.shutdown().await;
        dataplane.shutdown().await;
    });
    Node {
        name: name.to_owned(),
        address: record.allocation.ipv4_address,
        device: handle,
        stop: Some(stop),
        task,
    }
}

impl Node {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the node stops within 10 s")
            .expect("the node task");
    }
}

/// One echo request from `a` to `b` and its reply back, retried until `within`; whether it
/// made the round trip. The test plays both kernels.
async fn round_trip(a: &mut Node, b: &mut Node, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut seq = 0u16;
    while tokio::time::Instant::now() < deadline {
        seq = seq.wrapping_add(1);
        let request = icmp4_echo(a.address, b.address, 7, seq, b"mesh");
        b.device.drain();
        a.device.inject(request.clone()).await;
        let arrived = wait_for(&mut b.device, &request, Duration::from_millis(400)).await;
        if arrived {
            let reply = echo_reply(&request);
            a.device.drain();
            b.device.inject(reply.clone()).await;
            if wait_for(&mut a.device, &reply, Duration::from_millis(400)).await {
                return true;
            }
        }
    }
    false
}

/// Whether `packet` comes out of `device` within `timeout` (other packets are skipped).
async fn wait_for(device: &mut MemoryDeviceHandle, packet: &[u8], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match device.next_packet(left).await {
            Some(got) if got == packet => return true,
            Some(_) => {}
            None => return false,
        }
    }
}

async fn assert_round_trip(a: &mut Node, b: &mut Node, what: &str) {
    assert!(
        round_trip(a, b, CONVERGE).await,
        "{what}: no round trip {} -> {} within {CONVERGE:?}",
        a.name,
        b.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_forward_revoke_survive_the_ca_and_restart_from_state() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    let endpoint = |host: u8| format!("127.0.0.{host}:518{host}");

    meshd(
        d,
        "alpha",
        &["init", "--name", "alpha", "--endpoint", &endpoint(71)],
    )
    .unwrap();
    let mut alpha = start(d, "alpha", "127.0.0.71").await;
    for (name, host) in [("beta", 72), ("gamma", 73)] {
        let token = meshd(d, "alpha", &["invite", name, "--role", "core"]).unwrap();
        meshd_async(
            d,
            name,
            &["join", token.trim(), "--endpoint", &endpoint(host)],
        )
        .await;
    }
    let mut beta = start(d, "beta", "127.0.0.72").await;
    let mut gamma = start(d, "gamma", "127.0.0.73").await;
    for (name, core) in [("s1", "beta"), ("s2", "gamma")] {
        let token = meshd(
            d,
            "alpha",
            &["invite", name, "--role", "spoke", "--core", core],
        )
        .unwrap();
        meshd_async(d, name, &["join", token.trim()]).await;
    }
    let mut s1 = start(d, "s1", "127.0.0.74").await;
    let mut s2 = start(d, "s2", "127.0.0.75").await;

    // Spokes speak first: they may sit behind NAT, so their cores learn their address from
    // their packets. Then every pair, spoke to spoke through beta and gamma included.
    assert_round_trip(&mut s1, &mut beta, "spoke to its core").await;
    assert_round_trip(&mut s2, &mut gamma, "spoke to its core").await;
    assert_round_trip(&mut s1, &mut s2, "spoke to spoke").await;
    assert_round_trip(&mut s1, &mut alpha, "spoke to another core").await;
    assert_round_trip(&mut s2, &mut alpha, "spoke to another core").await;
    assert_round_trip(&mut s2, &mut beta, "spoke to another core").await;
    assert_round_trip(&mut s1, &mut gamma, "spoke to another core").await;
    assert_round_trip(&mut alpha, &mut beta, "core to core").await;
    assert_round_trip(&mut alpha, &mut gamma, "core to core").await;
    assert_round_trip(&mut beta, &mut gamma, "core to core").await;

    // Revocation: s2 is cut off from the rest.
    let out = meshd_async(d, "alpha", &["revoke", "s2"]).await;
    assert!(out.contains("Revoked s2"), "{out}");
    let deadline = tokio::time::Instant::now() + REVOKE;
    while round_trip(&mut s1, &mut s2, Duration::from_millis(900)).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "s2 still reachable {REVOKE:?} after its revocation"
        );
    }
    s2.stop().await;

    // The CA node stops; the others keep forwarding.
    alpha.stop().await;
    assert_round_trip(&mut s1, &mut gamma, "with the CA stopped").await;
    assert_round_trip(&mut beta, &mut gamma, "with the CA stopped").await;

    // gamma restarts from its state directory, without a join, while the CA is down.
    gamma.stop().await;
    let mut gamma = start(d, "gamma", "127.0.0.73").await;
    // gamma speaks first: its new session replaces the one beta still holds.
    assert_round_trip(&mut gamma, &mut beta, "after gamma restarted").await;
    assert_round_trip(&mut s1, &mut gamma, "after gamma restarted").await;

    s1.stop().await;
    beta.stop().await;
    gamma.stop().await;
}
