//! `meshd ca approve` on the CA holder and a renewal asked for at once: the member's new
//! certificate carries the new approvals and every member sees them in the membership, with
//! the control planes running in one process (no root).

mod control_support;

use std::time::Duration;

use control_support::{TwoCores, WAIT, meshd, two_cores};
use meshd::control::ControlHandle;

/// beta's approvals as `handle`'s membership has them, once they satisfy `want`.
async fn wait_for_approvals(
    handle: &ControlHandle,
    what: &str,
    want: impl Fn(&pki::Approvals) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let approvals = handle
            .members()
            .borrow()
            .iter()
            .find(|m| m.name == "beta")
            .map(|m| m.approvals.clone());
        if approvals.as_ref().is_some_and(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: beta's approvals are {approvals:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_reaches_the_members_with_a_renewal_asked_for_at_once() {
    let TwoCores { mesh, alpha, beta } = two_cores("127.0.0.71:51871", "127.0.0.72:51872").await;
    let d = mesh.path();
    wait_for_approvals(&alpha, "before", pki::Approvals::is_empty).await;

    // Mistakes are refused, naming what is wrong.
    let err = meshd(d, "alpha", &["ca", "approve", "beta"]).unwrap_err();
    assert!(err.contains("nothing to change"), "{err}");
    let err = meshd(d, "alpha", &["ca", "approve", "gamma", "--exit"]).unwrap_err();
    assert!(err.contains("no member named \"gamma\""), "{err}");
    let err = meshd(
        d,
        "alpha",
        &["ca", "approve", "beta", "--anycast", "0.0.0.0/0"],
    )
    .unwrap_err();
    assert!(err.contains("--exit"), "{err}");
    let err = meshd(
        d,
        "alpha",
        &["ca", "approve", "beta", "--no-anycast", "203.0.113.53/32"],
    )
    .unwrap_err();
    assert!(err.contains("not a shared prefix of beta"), "{err}");

    let out = meshd(
        d,
        "alpha",
        &[
            "ca",
            "approve",
            "beta",
            "--exit",
            "ipv4",
            "--anycast",
            "203.0.113.53/32",
        ],
    )
    .unwrap();
    assert!(
        out.contains("Internet exit for IPv4;") && out.contains("203.0.113.53/32"),
        "{out}"
    );
    assert!(out.contains("meshd renew"), "{out}");
    // Nothing changes until beta renews.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_approvals(&alpha, "before the renewal", pki::Approvals::is_empty).await;

    assert!(beta.renewal_trigger().request());
    let want = |a: &pki::Approvals| {
        a.exit_ipv4
            && !a.exit_ipv6
            && a.anycast == ["203.0.113.53/32".parse::<ipnet::IpNet>().unwrap()]
    };
    wait_for_approvals(&alpha, "alpha after beta's renewal", want).await;
    wait_for_approvals(&beta, "beta after its renewal", want).await;
    // And on disk, for the next start.
    let checked = meshd::state::check::at_start(&meshd::state::StateDir::new(mesh.state("beta")))
        .expect("beta's state after the renewal");
    assert!(want(&checked.approvals), "{:?}", checked.approvals);

    // Withdrawn the same way.
    meshd(
        d,
        "alpha",
        &[
            "ca",
            "approve",
            "beta",
            "--no-exit",
            "--no-anycast",
            "203.0.113.53/32",
        ],
    )
    .unwrap();
    assert!(beta.renewal_trigger().request());
    wait_for_approvals(&alpha, "after withdrawing", pki::Approvals::is_empty).await;

    alpha.shutdown().await;
    beta.shutdown().await;
}
