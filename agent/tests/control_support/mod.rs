//! Control planes in one process for tests (no root, no TUN): meshd commands run in process,
//! control planes started as the daemon starts them, bound to 127.0.0.x.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::time::Duration;

use meshd::commands::run_captured;
use meshd::control::{ControlHandle, ControlPlane, ControlSettings};

pub const WAIT: Duration = Duration::from_secs(15);

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
