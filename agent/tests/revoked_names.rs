//! Names of revoked nodes are not handed out again unless an operator frees them
//! (`meshd ca free-name`); control planes in one process on 127.0.0.x, no root.

mod control_support;

use control_support::{Mesh, meshd, meshd_async, start, wait_for_peers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_name_is_refused_until_freed_and_burnt_again_by_the_next_revocation() {
    let alpha_ep = "127.0.0.71:51871";
    let mesh = Mesh::init(alpha_ep);
    let d = mesh.path();
    let alpha = start(d, "alpha", alpha_ep).await;
    mesh.join_core("beta", "127.0.0.72:51872").await;

    let err = meshd(d, "alpha", &["ca", "free-name", "beta"]).unwrap_err();
    assert!(
        err.contains("live member") && err.contains("meshd revoke beta"),
        "{err}"
    );
    let err = meshd(d, "alpha", &["ca", "free-name", "nobody"]).unwrap_err();
    assert!(err.contains("was ever revoked"), "{err}");

    meshd(d, "alpha", &["revoke", "beta"]).unwrap();
    let err = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap_err();
    assert!(
        err.contains("was revoked") && err.contains("meshd ca free-name beta"),
        "{err}"
    );

    let out = meshd(d, "alpha", &["ca", "free-name", "beta"]).unwrap();
    assert!(out.contains("Freed the name beta"), "{out}");
    let token = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap();
    meshd_async(
        d,
        "beta2",
        &["join", token.trim(), "--endpoint", "127.0.0.73:51873"],
    )
    .await
    .unwrap();
    let db = meshd::state::StateDir::new(mesh.state("alpha"))
        .read_ca_db()
        .unwrap();
    let again = db.allocator.node("beta").unwrap();
    assert_eq!(
        again.index, 3,
        "the freed name gets new numbers, not the revoked node's"
    );
    let beta2 = start(d, "beta2", "127.0.0.73:51873").await;
    wait_for_peers(&alpha, "alpha sees the new beta", &["beta"]).await;

    // Revoked again: burnt again, without anyone having to remember.
    meshd(d, "alpha", &["revoke", "beta"]).unwrap();
    let err = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap_err();
    assert!(err.contains("was revoked"), "{err}");
    alpha.shutdown().await;
    beta2.shutdown().await;
}
