//! Join, membership and revocation between control planes in one process, over TLS on
//! 127.0.0.x (no root, no TUN): `meshd init`, `invite`, `join` and `revoke` run as commands,
//! the control planes run as the daemon would run them.

mod control_support;

use std::time::Duration;

use control_support::{Mesh, WAIT, meshd, meshd_async, start, wait_for_peers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_from_tokens_form_tunnels_and_revocation_spreads() {
    let alpha_ep = "127.0.0.41:51841";
    let mesh = Mesh::init(alpha_ep);
    let d = mesh.path();
    let alpha = start(d, "alpha", alpha_ep).await;

    let beta_token = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap();
    // The same invitation of a spoke behind beta, before and after beta joined.
    let invite_spoke = || {
        meshd(
            d,
            "alpha",
            &[
                "invite",
                "gamma",
                "--role",
                "spoke",
                "--core",
                "beta",
                "--route",
                "192.168.42.0/24",
            ],
        )
    };
    assert!(
        invite_spoke().unwrap_err().contains("beta"),
        "a spoke of a core that has not joined is refused"
    );

    let beta_ep = "127.0.0.42:51842";
    let out = meshd_async(
        d,
        "beta",
        &["join", beta_token.trim(), "--endpoint", beta_ep],
    )
    .await
    .unwrap();
    assert!(out.contains("Joined mesh"), "{out}");
    // The token is used up.
    let again = meshd_async(
        d,
        "beta2",
        &["join", beta_token.trim(), "--endpoint", beta_ep],
    )
    .await;
    assert!(again.unwrap_err().contains("already been used"));
    // A refused join leaves no stray files: no directory where there was none, and an empty
    // one stays empty (no lock file).
    assert!(
        !d.join("beta2").exists(),
        "a refused join left a state directory"
    );
    let empty = d.join("beta3");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let again = meshd_async(
        d,
        "beta3",
        &["join", beta_token.trim(), "--endpoint", beta_ep],
    )
    .await;
    assert!(again.unwrap_err().contains("already been used"));
    let left: Vec<_> = std::fs::read_dir(&empty).unwrap().collect();
    assert!(left.is_empty(), "a refused join left {left:?}");

    let beta = start(d, "beta", beta_ep).await;
    wait_for_peers(&alpha, "alpha sees beta", &["beta"]).await;
    wait_for_peers(&beta, "beta sees alpha", &["alpha"]).await;

    let gamma_token = invite_spoke().unwrap();
    meshd_async(d, "gamma", &["join", gamma_token.trim()])
        .await
        .unwrap();
    let gamma = start(d, "gamma", "127.0.0.43:51843").await;
    // The spoke talks to its core only; the other core reaches its LAN through beta.
    wait_for_peers(&gamma, "gamma sees its core", &["beta"]).await;
    wait_for_peers(&beta, "beta sees its spoke", &["alpha", "gamma"]).await;
    let lan: ipnet::IpNet = "192.168.42.0/24".parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let via_beta = alpha
            .peers()
            .borrow()
            .iter()
            .any(|p| p.config.name == "beta" && p.config.allowed_ips.contains(&lan));
        if via_beta {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alpha never routed gamma's LAN via beta"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = meshd_async(d, "alpha", &["revoke", "gamma"]).await.unwrap();
    assert!(out.contains("Revoked gamma"), "{out}");
    wait_for_peers(&beta, "beta drops the revoked spoke", &["alpha"]).await;

    alpha.shutdown().await;
    beta.shutdown().await;
    gamma.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_another_mesh_is_refused_before_anything_is_sent() {
    let real = "127.0.0.44:51844";
    let mesh = Mesh::init(real);
    let d = mesh.path();
    let alpha = start(d, "alpha", real).await;
    // Another mesh whose token points at alpha's endpoint (someone in the middle).
    meshd(d, "other", &["init", "--name", "other", "--endpoint", real]).unwrap();
    let token = meshd(d, "other", &["invite", "beta", "--role", "core"]).unwrap();
    let err = meshd_async(
        d,
        "beta",
        &["join", token.trim(), "--endpoint", "127.0.0.45:51845"],
    )
    .await
    .unwrap_err();
    assert!(err.contains("wrong CA"), "{err}");
    assert!(!d.join("beta").join("node.json").exists());
    alpha.shutdown().await;
}
