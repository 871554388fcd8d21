//! Five nodes in one process, no root: three cores (alpha holds the CA) and two spokes
//! (`s1` behind beta, `s2` behind gamma), admitted from tokens with the real commands, each
//! running its control plane over TLS on 127.0.0.x, its data plane on UDP with an in-memory
//! packet device, and the peer set between the two, as `meshd run` wires them.
//!
//! Checked: packets cross between every pair (spoke to spoke through two cores); a revoked
//! spoke is cut off; with the CA node stopped the others keep forwarding; a node restarted
//! from its state directory (no new join) is back in the mesh through a core it knows.

use std::time::Duration;

use integration::admission::{admit, endpoint, init};
use integration::mesh::{assert_round_trip, meshd_async, round_trip, start};

/// Bound for a revocation to cut a node off.
const REVOKE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_join_forward_revoke_survive_the_ca_and_restart_from_state() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();

    init(d, "alpha", &endpoint(71));
    let mut alpha = start(d, "alpha", "127.0.0.71").await;
    for (name, host) in [("beta", 72), ("gamma", 73)] {
        admit(d, "alpha", name, &["--role", "core"], Some(&endpoint(host))).await;
    }
    let mut beta = start(d, "beta", "127.0.0.72").await;
    let mut gamma = start(d, "gamma", "127.0.0.73").await;
    for (name, core) in [("s1", "beta"), ("s2", "gamma")] {
        admit(d, "alpha", name, &["--role", "spoke", "--core", core], None).await;
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
