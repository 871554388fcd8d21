//! Control planes in one process for tests (no root, no TUN): meshd commands run in process,
//! control planes started as the daemon starts them, bound to 127.0.0.x. [`Mesh`] and
//! [`two_cores`] are the set-up most tests share: `meshd init` of alpha, `invite` and `join` of
//! a core, both control planes started.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshd::commands::run_captured;
use meshd::control::{ControlHandle, ControlPlane, ControlSettings};
use meshd::state::StateDir;

pub const WAIT: Duration = Duration::from_secs(15);

/// A mesh in a temporary directory (removed on drop): `dir/NODE.toml` and the state directory
/// `dir/NODE` of each node, the CA holder alpha `meshd init`ed at creation.
pub struct Mesh {
    dir: tempfile::TempDir,
}

impl Mesh {
    /// `meshd init --name alpha --endpoint ALPHA` in a new temporary directory; nothing runs.
    pub fn init(alpha: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        meshd(
            dir.path(),
            "alpha",
            &["init", "--name", "alpha", "--endpoint", alpha],
        )
        .unwrap();
        Mesh { dir }
    }

    /// The directory holding every node's config and state.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state directory of `node`.
    pub fn state(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    /// `meshd invite NODE --role core` on alpha, then `meshd join TOKEN --endpoint ENDPOINT` as
    /// `node` (alpha's control plane must run to answer it). Returns what the join printed.
    pub async fn join_core(&self, node: &str, endpoint: &str) -> String {
        let token = meshd(self.path(), "alpha", &["invite", node, "--role", "core"]).unwrap();
        meshd_async(
            self.path(),
            node,
            &["join", token.trim(), "--endpoint", endpoint],
        )
        .await
        .unwrap()
    }
}

/// Two running cores: alpha, the CA holder, and beta, joined from alpha's invitation, with
/// alpha seeing beta. Dropped (a test that fails), the control planes stop before the
/// directory goes; a test that ends calls `shutdown` on both. When destructuring, bind
/// `mesh` first so that it is dropped last.
pub struct TwoCores {
    pub alpha: ControlHandle,
    pub beta: ControlHandle,
    pub mesh: Mesh,
}

/// [`TwoCores`] with alpha at `alpha` and beta at `beta` (`127.0.0.x:PORT`, unique per test).
pub async fn two_cores(alpha: &str, beta: &str) -> TwoCores {
    let mesh = Mesh::init(alpha);
    let alpha_handle = start(mesh.path(), "alpha", alpha).await;
    mesh.join_core("beta", beta).await;
    let beta_handle = start(mesh.path(), "beta", beta).await;
    wait_for_peers(&alpha_handle, "alpha sees beta", &["beta"]).await;
    TwoCores {
        alpha: alpha_handle,
        beta: beta_handle,
        mesh,
    }
}

/// Runs a meshd command for `node` (`dir/NODE.toml`, state in `dir/NODE`); Ok(stdout) or
/// Err(error text).
pub fn meshd(dir: &Path, node: &str, args: &[&str]) -> Result<String, String> {
    let config = dir.join(format!("{node}.toml"));
    run_captured(&config, &dir.join(node), args).map_err(|e| e.to_string())
}

pub async fn meshd_async(dir: &Path, node: &str, args: &[&str]) -> Result<String, String> {
    let dir = dir.to_path_buf();
    let node = node.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        meshd(&dir, &node, &args)
    })
    .await
    .unwrap()
}

pub async fn start(dir: &Path, node: &str, endpoint: &str) -> ControlHandle {
    let config = mesh_config::load(&dir.join(format!("{node}.toml"))).unwrap();
    let mut settings =
        ControlSettings::for_daemon(&config, &dir.join(node)).expect("a certificate");
    settings.bind = vec![endpoint.parse().unwrap()];
    ControlPlane::start(settings).await.unwrap()
}

/// Waits until `handle`'s verified membership holds `name` (its record reached that node).
pub async fn wait_for_member(handle: &ControlHandle, what: &str, name: &str) {
    let mut members = handle.members();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if members.borrow().iter().any(|m| m.name == name) {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: {name} is not a member there");
        let _ = tokio::time::timeout(left, members.changed()).await;
    }
}

pub async fn wait_for_peers(handle: &ControlHandle, what: &str, want: &[&str]) {
    let mut peers = handle.peers();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut names: Vec<String> = peers
            .borrow()
            .iter()
            .map(|p| p.config.name.clone())
            .collect();
        names.sort();
        if names == want {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: peers are {names:?}, want {want:?}"
        );
        let _ = tokio::time::timeout(left, peers.changed()).await;
    }
}

/// The state directory of `node` in `dir`.
pub fn state(dir: &Path, node: &str) -> StateDir {
    StateDir::new(dir.join(node))
}

/// Waits until `check` holds (polled every 50 ms), at most [`WAIT`].
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
