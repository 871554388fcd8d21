//! The CA holder destroyed, the standby takes over, a new node joins through it, in network
//! namespaces (needs root): alpha (the CA) and beta (its standby, from `meshd ca backup
//! --standby`) and a member gamma on one documentation-range underlay, admitted with real
//! tokens. alpha's meshd is killed with SIGKILL; `meshd ca take-over` on beta is refused
//! while alpha was heard from seconds ago (it says when), goes through with `--force`, and a
//! node invited on beta joins, gets a number of beta's class and reaches gamma; gamma learns
//! from the registry record that beta holds the CA.

#[path = "member_node.rs"]
mod member_node;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use member_node::{Node, endpoint, invite, two_cores, underlay};
use meshd::state::StateDir;
use netns_tests::{require_root, run_checked, run_with_timeout, wait_until};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// Bound for a registry record to reach a node, and for a ping through a new tunnel.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(10);

/// `meshd ARGS` on `node`, Ok(stdout) or Err(what failed, with its stderr).
fn try_meshd(node: &Node, rest: &[&str]) -> Result<String, String> {
    let config = node.config().display().to_string();
    let state = node.state().display().to_string();
    let args = node.args(&config, &state, rest);
    let mut full = vec!["netns", "exec", node.namespace.name(), MESHD];
    full.extend_from_slice(&args);
    run_with_timeout("ip", &full, Duration::from_secs(30))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| e.to_string())
}

#[test]
fn the_holder_destroyed_the_standby_takes_over_and_admits_a_new_node() {
    if !require_root("the_holder_destroyed_the_standby_takes_over_and_admits_a_new_node") {
        return;
    }
    let isp = underlay("tk-isp");
    let (mut alpha, mut beta) = two_cores(&isp, "tk");
    let pass = alpha.dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (file, pass) = (
        alpha
            .dir
            .path()
            .join("standby.backup")
            .display()
            .to_string(),
        pass.display().to_string(),
    );
    alpha.meshd(&[
        "ca",
        "backup",
        &file,
        "--passphrase-file",
        &pass,
        "--standby",
        "--test-work-factor",
        "10",
    ]);
    let out = beta.meshd(&[
        "ca",
        "restore",
        &file,
        "--passphrase-file",
        &pass,
        "--standby",
    ]);
    assert!(out.contains("standby copy of the CA"), "{out}");

    let mut gamma = Node::new("tk-gamma", &isp, 3);
    let token = invite(&alpha, &["gamma", "--role", "core"]);
    let out = gamma.meshd(&["join", &token, "--endpoint", &endpoint(3)]);
    assert!(out.contains("Joined mesh"), "{out}");
    gamma.start();
    let beta_state = StateDir::new(beta.state());
    assert!(
        wait_until(SPREAD_TIMEOUT, || beta_state
            .read_ca_db()
            .is_ok_and(|db| db.allocator.node("gamma").is_some())),
        "beta's registry never learnt gamma:\n{}",
        beta.log()
    );

    // The holder is destroyed.
    let daemon = alpha.daemon.take().expect("alpha runs");
    run_checked("kill", &["-KILL", &daemon.pid().to_string()]).expect("kill -KILL alpha");
    drop(daemon);

    let err = try_meshd(&beta, &["ca", "take-over"]).unwrap_err();
    assert!(err.contains("was last heard from"), "{err}");
    assert!(err.contains("--force"), "{err}");
    let out = beta.meshd(&["ca", "take-over", "--force"]);
    assert!(
        out.contains("beta holds the mesh CA now (term 2, taken over from alpha"),
        "{out}"
    );

    let mut delta = Node::new("tk-delta", &isp, 4);
    let token = invite(&beta, &["delta", "--role", "core"]);
    let out = delta.meshd(&["join", &token, "--endpoint", &endpoint(4)]);
    assert!(out.contains("Joined mesh"), "{out}");
    let record = StateDir::new(delta.state()).read_node_record().unwrap();
    assert_eq!(
        record.allocation.index % 2,
        1,
        "{}",
        record.allocation.index
    );
    assert_eq!(record.ca_holder.as_deref(), Some("beta"));
    delta.start();
    let [gamma_v4, _] = gamma.overlay();
    assert!(
        wait_until(SPREAD_TIMEOUT, || delta.pings(gamma_v4)),
        "delta cannot reach gamma:\n{}",
        delta.log()
    );
    let gamma_state = StateDir::new(gamma.state());
    assert!(
        wait_until(SPREAD_TIMEOUT, || gamma_state
            .read_node_record()
            .is_ok_and(|r| r.ca_holder.as_deref() == Some("beta"))),
        "gamma never learnt that beta holds the CA:\n{}",
        gamma.log()
    );
    assert!(
        beta.log().contains("CA registry record published"),
        "{}",
        beta.log()
    );
    delta.stop();
    gamma.stop();
    beta.stop();
}
