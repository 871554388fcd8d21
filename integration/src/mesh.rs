//! Mesh nodes as `meshd run` wires them, in one process: the real commands (`init`,
//! `invite`, `join`, `revoke`) on per-node directories, then the control plane over TLS on
//! 127.0.0.x, the data plane on UDP with an in-memory packet device, and the peer set
//! between the two. The test plays each node's kernel.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshd::commands::run_captured;
use meshd::control::{ControlPlane, ControlSettings};
use meshd::dataplane::{Dataplane, DataplaneConfig};
use meshd::peerset::{PeerSet, PeerSources, RoutePlan};
use meshd::state::StateDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::memory_device::{MemoryDeviceHandle, memory_device};
use crate::packets::{echo_reply, icmp4_echo};

/// Bound for one packet to get through while the mesh converges.
pub const CONVERGE: Duration = Duration::from_secs(15);

/// Runs a meshd command for node `name` (files under `dir/name`); Ok(stdout) or Err(error).
pub fn meshd(dir: &Path, name: &str, args: &[&str]) -> Result<String, String> {
    let node = dir.join(name);
    run_captured(&node.join("meshd.toml"), &node.join("state"), args).map_err(|e| e.to_string())
}

/// `meshd` on a blocking thread (join talks to a control plane in this runtime).
pub async fn meshd_async(dir: &Path, name: &str, args: &[&str]) -> String {
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
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub address: Ipv4Addr,
    pub device: MemoryDeviceHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Starts node `name` from its files: data plane on `ip` (port of its endpoint, 0 for a
/// spoke nobody dials), control plane on the same address, the peer set between them.
pub async fn start(dir: &Path, name: &str, ip: &str) -> Node {
    start_tuned(dir, name, ip, |_| {}).await
}

/// [`start`], with `tune` changing the control plane's settings first (e.g. a short
/// certificate validity).
pub async fn start_tuned(
    dir: &Path,
    name: &str,
    ip: &str,
    tune: impl FnOnce(&mut ControlSettings),
) -> Node {
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
    tune(&mut settings);
    let (device, handle) = memory_device();
    let dataplane = Dataplane::start(
        DataplaneConfig {
            private_key: key.to_bytes(),
            listen_port: port,
            bind_addresses: vec![ip.parse().expect("test address")],
            mtu: 1420,
            peers: Vec::new(),
            fwmark: None,
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
    /// Stops the node's planes and waits for them.
    pub async fn stop(mut self) {
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
pub async fn round_trip(a: &mut Node, b: &mut Node, within: Duration) -> bool {
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
pub async fn wait_for(device: &mut MemoryDeviceHandle, packet: &[u8], timeout: Duration) -> bool {
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

/// Fails the test unless a round trip from `a` to `b` works within [`CONVERGE`].
pub async fn assert_round_trip(a: &mut Node, b: &mut Node, what: &str) {
    assert!(
        round_trip(a, b, CONVERGE).await,
        "{what}: no round trip {} -> {} within {CONVERGE:?}",
        a.name,
        b.name
    );
}
