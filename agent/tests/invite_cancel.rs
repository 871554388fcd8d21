//! `meshd invite --list` and `--cancel`: an invitation can be seen and taken back, its token
//! is then refused by the running CA holder with the reason, and the name can be invited
//! again. Control planes in one process on 127.0.0.x, no root.

mod control_support;

use control_support::{Mesh, meshd, meshd_async, start, wait_for_peers};

/// The lines of `meshd invite --list` after the header.
fn listed(dir: &std::path::Path) -> Vec<String> {
    let text = meshd(dir, "alpha", &["invite", "--list"]).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header == "no open invitations" {
        return Vec::new();
    }
    assert!(header.starts_with("NAME"), "{text}");
    lines.map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_invitation_is_listed_no_more_refused_at_join_and_can_be_made_again() {
    let alpha_ep = "127.0.0.81:51881";
    let mesh = Mesh::init(alpha_ep);
    let d = mesh.path();
    let alpha = start(d, "alpha", alpha_ep).await;
    assert!(listed(d).is_empty());

    let beta_token = meshd(
        d,
        "alpha",
        &[
            "invite",
            "beta",
            "--role",
            "spoke",
            "--route",
            "192.168.42.0/24",
        ],
    )
    .unwrap();
    let gamma_token = meshd(
        d,
        "alpha",
        &["invite", "gamma", "--role", "core", "--exit", "ipv4"],
    )
    .unwrap();
    let lines = listed(d);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let columns =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    let beta = columns(&lines[0]);
    assert_eq!(
        beta[..6],
        ["beta", "spoke", "alpha", "192.168.42.0/24", "-", "-"],
        "{lines:?}"
    );
    assert!(beta[6].ends_with('Z') && beta.len() == 7, "{lines:?}");
    assert_eq!(
        columns(&lines[1])[..6],
        ["gamma", "core", "-", "-", "ipv4", "-"],
        "{lines:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&meshd(d, "alpha", &["invite", "--list", "--json"]).unwrap()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["invitations"][0]["name"], "beta");
    assert_eq!(json["invitations"][0]["core"], "alpha");
    assert_eq!(json["invitations"][0]["routes"][0], "192.168.42.0/24");
    assert_eq!(json["invitations"][0]["expired"], false);
    assert_eq!(json["invitations"][1]["core"], serde_json::Value::Null);
    assert_eq!(json["invitations"][1]["exit_ipv4"], true);
    assert_eq!(json["invitations"][1]["exit_ipv6"], false);

    let out = meshd(d, "alpha", &["invite", "--cancel", "beta"]).unwrap();
    assert!(
        out.contains("Cancelled the invitation for beta as a spoke behind alpha"),
        "{out}"
    );
    let lines = listed(d);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("gamma "), "{lines:?}");
    let err = meshd(d, "alpha", &["invite", "--cancel", "beta"]).unwrap_err();
    assert!(err.contains("was cancelled already"), "{err}");
    let err = meshd(d, "alpha", &["invite", "--cancel", "nobody"]).unwrap_err();
    assert!(err.contains("no invitation for \"nobody\""), "{err}");

    // The running CA holder refuses the cancelled token, and says why.
    let err = meshd_async(d, "beta", &["join", beta_token.trim()])
        .await
        .unwrap_err();
    assert!(
        err.contains(
            "the CA holder refused to admit this node: the invitation for beta was cancelled at 20"
        ),
        "{err}"
    );
    assert!(
        !d.join("beta").join("node.json").exists(),
        "a refused join wrote state"
    );

    let gamma_ep = "127.0.0.82:51882";
    let out = meshd_async(
        d,
        "gamma",
        &["join", gamma_token.trim(), "--endpoint", gamma_ep],
    )
    .await
    .unwrap();
    assert!(out.contains("Joined mesh"), "{out}");
    assert!(listed(d).is_empty());
    let err = meshd(d, "alpha", &["invite", "--cancel", "gamma"]).unwrap_err();
    assert!(err.contains("meshd revoke gamma"), "{err}");
    let gamma = start(d, "gamma", gamma_ep).await;

    // beta never joined: its name is free again. The old token stays refused as cancelled,
    // not as "not the latest", and the new one works.
    let beta_token2 = meshd(
        d,
        "alpha",
        &["invite", "beta", "--role", "spoke", "--core", "alpha"],
    )
    .unwrap();
    let lines = listed(d);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(columns(&lines[0])[3], "-", "the new terms: {lines:?}");
    let err = meshd_async(d, "beta", &["join", beta_token.trim()])
        .await
        .unwrap_err();
    assert!(err.contains("was cancelled at"), "{err}");
    let out = meshd_async(d, "beta", &["join", beta_token2.trim()])
        .await
        .unwrap();
    assert!(out.contains("Joined mesh"), "{out}");
    let beta = start(d, "beta", "127.0.0.83:51883").await;
    wait_for_peers(&alpha, "alpha sees its spoke and gamma", &["beta", "gamma"]).await;

    // Once admitted and revoked, the name is burnt as before: a cancellation freed it only
    // because nobody had joined with it.
    meshd(d, "alpha", &["revoke", "beta"]).unwrap();
    let err = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap_err();
    assert!(err.contains("was revoked"), "{err}");
    let err = meshd(d, "alpha", &["invite", "--cancel", "beta"]).unwrap_err();
    assert!(err.contains("nothing left to cancel"), "{err}");

    alpha.shutdown().await;
    beta.shutdown().await;
    gamma.shutdown().await;
}

#[test]
fn revoke_cancels_an_invitation_that_was_never_used() {
    let mesh = Mesh::init("127.0.0.84:51884");
    let d = mesh.path();
    meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap();
    let out = meshd(d, "alpha", &["revoke", "beta"]).unwrap();
    assert!(
        out.contains("beta has not joined") && out.contains("Cancelled the invitation for beta"),
        "{out}"
    );
    assert!(listed(d).is_empty());
    // No revocation list was signed: nothing had been issued.
    assert!(!d.join("alpha").join("crl.der").exists());
    let err = meshd(d, "alpha", &["revoke", "beta"]).unwrap_err();
    assert!(err.contains("beta"), "{err}");
    meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap();
}
