//! `meshd ca take-over` on a standby whose holder is lost: refused where it makes no sense or
//! while the holder's silence cannot be told (without `--force`), then the standby holds the
//! next term, admits a node from its own class of numbers at once, and the old holder, started
//! again, hears of the new term, steps down to standby and learns the new node. Control planes
//! run in one process on 127.0.0.x (no root).

mod control_support;

use std::os::unix::fs::PermissionsExt;

use control_support::{TwoCores, meshd, meshd_async, start, state, two_cores, wait_for};

const ALPHA: &str = "127.0.0.161:51961";
const BETA: &str = "127.0.0.162:51962";
const GAMMA: &str = "127.0.0.163:51963";
const DELTA: &str = "127.0.0.164:51964";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_admits_and_the_old_holder_steps_down() {
    let TwoCores { mesh, alpha, beta } = two_cores(ALPHA, BETA).await;
    let d = mesh.path();
    let pass = d.join("pass");
    std::fs::write(&pass, "correct horse battery\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (file, pass) = (
        d.join("standby.backup").display().to_string(),
        pass.display().to_string(),
    );
    let fast = ["--test-work-factor", "10"];
    let mut backup = vec![
        "ca",
        "backup",
        &file,
        "--passphrase-file",
        &pass,
        "--standby",
    ];
    backup.extend(fast);
    meshd(d, "alpha", &backup).unwrap();
    meshd(
        d,
        "beta",
        &[
            "ca",
            "restore",
            &file,
            "--passphrase-file",
            &pass,
            "--standby",
        ],
    )
    .unwrap();
    // gamma joins at alpha before alpha is lost.
    mesh.join_core("gamma", GAMMA).await;

    let take_over = ["ca", "take-over"];
    let forced = ["ca", "take-over", "--force"];
    let err = meshd(d, "alpha", &take_over).unwrap_err();
    assert!(
        err.contains("the active CA holder already (term 1)"),
        "{err}"
    );
    let err = meshd(d, "gamma", &take_over).unwrap_err();
    assert!(err.contains("keeps no copy of the mesh CA"), "{err}");
    // No meshd API socket runs in this test: the holder's silence cannot be told.
    let err = meshd(d, "beta", &take_over).unwrap_err();
    assert!(err.contains("meshd is not running on this node"), "{err}");
    assert!(err.contains("run again with --force"), "{err}");
    assert!(state(d, "beta").ca_standby().is_some());

    // The standby hears of gamma from alpha's registry record; then alpha is lost.
    wait_for("beta's registry has gamma", || {
        state(d, "beta")
            .read_ca_db()
            .is_ok_and(|db| db.allocator.node("gamma").is_some())
    })
    .await;
    alpha.shutdown().await;
    let out = meshd(d, "beta", &forced).unwrap();
    assert!(
        out.contains("beta holds the mesh CA now (term 2, taken over from alpha"),
        "{out}"
    );
    let beta_state = state(d, "beta");
    assert!(beta_state.is_ca_holder());
    assert_eq!(
        beta_state.read_node_record().unwrap().ca_holder.as_deref(),
        Some("beta")
    );
    let db = beta_state.read_ca_db().unwrap();
    let taken = db.registry.clone().unwrap();
    assert_eq!((taken.term, taken.holder.as_str()), (2, "beta"));
    let err = meshd(d, "beta", &forced).unwrap_err();
    assert!(
        err.contains("the active CA holder already (term 2)"),
        "{err}"
    );

    // The running control plane publishes term 2, and beta admits from its own class.
    wait_for("beta publishes a record of term 2", || {
        beta_state.read_ca_db().is_ok_and(|db| {
            db.registry
                .is_some_and(|h| h.term == 2 && h.version > taken.version)
        })
    })
    .await;
    let published = beta_state.read_ca_db().unwrap().registry.unwrap();
    let token = meshd(d, "beta", &["invite", "delta", "--role", "core"]).unwrap();
    meshd_async(d, "delta", &["join", token.trim(), "--endpoint", DELTA])
        .await
        .unwrap();
    let delta = state(d, "delta").read_node_record().unwrap();
    assert_eq!(delta.allocation.index % 2, 1, "{}", delta.allocation.index);
    assert_eq!(delta.ca_holder.as_deref(), Some("beta"));
    let gamma = state(d, "gamma").read_node_record().unwrap();
    assert_ne!(delta.allocation.ipv4, gamma.allocation.ipv4);

    // alpha comes back: it hears of term 2 and steps down.
    let alpha = start(d, "alpha", ALPHA).await;
    let alpha_state = state(d, "alpha");
    wait_for("alpha steps down to a standby of beta", || {
        alpha_state
            .ca_standby()
            .is_some_and(|s| s.active_holder == "beta")
    })
    .await;
    wait_for("alpha's registry learns delta", || {
        alpha_state
            .read_ca_db()
            .is_ok_and(|db| db.allocator.node("delta").is_some())
    })
    .await;
    wait_for("alpha renews at beta", || {
        alpha_state
            .read_node_record()
            .is_ok_and(|r| r.ca_holder.as_deref() == Some("beta"))
    })
    .await;
    let head = alpha_state.read_ca_db().unwrap().registry.unwrap();
    assert!(
        head.term == 2 && head.holder == "beta" && head.version >= published.version,
        "{head:?}"
    );
    let err = meshd(d, "alpha", &["invite", "zeta", "--role", "core"]).unwrap_err();
    assert!(
        err.contains("this node is a standby of the CA; the active holder is beta"),
        "{err}"
    );
    // beta stays the holder: alpha's own record of term 1, published as it started, did not
    // move it.
    assert!(beta_state.is_ca_holder());
    assert_eq!(beta_state.read_ca_db().unwrap().registry.unwrap().term, 2);
    alpha.shutdown().await;
    beta.shutdown().await;
}
