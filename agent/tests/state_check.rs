//! The state directory checked as a whole at start (no root): a CA holder, a core and a spoke
//! join over TLS on 127.0.0.x as in control_join.rs; then every file of each is damaged in
//! turn (deleted, truncated, garbled, replaced by another valid one) on a copy of its state
//! directory, and the check must refuse it with a message naming the file, while a missing
//! cache is accepted and learnt again. `meshd run` is run on a few of them to see the message
//! and the exit code (in a network namespace of its own when run as root, so that a check that
//! let damage through could not touch the host).

mod control_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use control_support::{
    TwoCores, WAIT, meshd, meshd_async, start, two_cores, wait_for_member, wait_for_peers,
};
use meshd::state::StateDir;
use meshd::state::check;

/// Copies a state directory (modes included: keys stay 0600).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "lock"
            && !entry.file_name().to_string_lossy().starts_with('.')
        {
            // The nodes are still running: a temporary file of an atomic write can be
            // listed and renamed away before it is copied. It is not state.
            match fs::copy(entry.path(), &target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other.unwrap();
                }
            }
        }
    }
}

/// One way of damaging a file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Deleted,
    Truncated,
    Garbled,
    /// The same file of another mesh's node: valid on its own.
    ReplacedByOtherMesh,
}

const DAMAGES: [Damage; 4] = [
    Damage::Deleted,
    Damage::Truncated,
    Damage::Garbled,
    Damage::ReplacedByOtherMesh,
];

fn damage(path: &Path, how: Damage, donor: &Path) {
    match how {
        Damage::Deleted => fs::remove_file(path).unwrap(),
        Damage::Truncated => {
            let bytes = fs::read(path).unwrap();
            fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::Garbled => {
            let mut bytes = fs::read(path).unwrap();
            let (middle, len) = (bytes.len() / 2, bytes.len());
            for byte in &mut bytes[middle.saturating_sub(8)..(middle + 8).min(len)] {
                *byte = b'#';
            }
            fs::write(path, &bytes).unwrap();
        }
        Damage::ReplacedByOtherMesh => {
            fs::write(path, fs::read(donor).unwrap()).unwrap();
        }
    }
}

/// The check of `state` must fail with a message naming `file`.
fn refused(state: &Path, file: &str, what: &str) -> String {
    match check::at_start(&StateDir::new(state)) {
        Ok(_) => panic!("{what}: the check accepted it"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(&state.join(file).display().to_string()),
                "{what}: the message does not name {file}: {text}"
            );
            text
        }
    }
}

/// `meshd run` on `state` must fail, before touching the system, naming `file`.
fn run_refused(config: &Path, state: &Path, file: &str) {
    let meshd = env!("CARGO_BIN_EXE_meshd");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "run",
    ];
    // As root a start that got through would create mesh0: give it a namespace of its own.
    let output = if nix_is_root() {
        Command::new("unshare")
            .arg("--net")
            .arg(meshd)
            .args(args)
            .output()
    } else {
        Command::new(meshd).args(args).output()
    }
    .expect("run meshd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "meshd run: {stderr}");
    assert!(
        stderr.contains(&state.join(file).display().to_string()),
        "meshd run does not name {file}: {stderr}"
    );
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
}

/// The files every admitted node needs, and those only the CA holder has.
const NODE_FILES: [&str; 5] = [
    "wireguard.key",
    "node.key",
    "node.crt",
    "node.json",
    "ca/ca.crt",
];
const CA_FILES: [&str; 2] = ["ca/ca.key", "ca/db.json"];

/// Damages each of `files` of node `node` in every way, on copies, and expects a refusal.
fn each_damage_refused(dir: &Path, node: &str, donor: &Path, files: &[&str]) {
    let original = dir.join(node);
    check::at_start(&StateDir::new(&original))
        .unwrap_or_else(|e| panic!("{node}'s intact state is refused: {e}"));
    for file in files {
        for how in DAMAGES {
            let copy = dir.join(format!("{node}-damaged"));
            let _ = fs::remove_dir_all(&copy);
            copy_dir(&original, &copy);
            damage(&copy.join(file), how, &donor.join(file));
            let what = format!("{node}: {file} {how:?}");
            let text = refused(&copy, file, &what);
            assert!(
                text.contains("backup") || text.contains("meshd init"),
                "{what}: no advice: {text}"
            );
            fs::remove_dir_all(&copy).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_file_damaged_in_turn_is_refused_by_name_and_caches_come_back() {
    let beta_ep = "127.0.0.62:51862";
    let TwoCores { mesh, alpha, beta } = two_cores("127.0.0.61:51861", beta_ep).await;
    let d = mesh.path();
    // Another mesh, whose files are valid but belong elsewhere.
    meshd(
        d,
        "omega",
        &["init", "--name", "omega", "--endpoint", "127.0.0.69:51869"],
    )
    .unwrap();
    let token = meshd(
        d,
        "alpha",
        &["invite", "gamma", "--role", "spoke", "--core", "beta"],
    )
    .unwrap();
    meshd_async(d, "gamma", &["join", token.trim()])
        .await
        .unwrap();
    let gamma = start(d, "gamma", "127.0.0.63:51863").await;
    wait_for_peers(&gamma, "gamma sees its core", &["beta"]).await;
    // gamma's record is its own to publish: it must have reached alpha (through beta) before
    // gamma stops, or nobody could hand it to beta below.
    wait_for_member(&alpha, "alpha learns gamma's record", "gamma").await;
    gamma.shutdown().await;

    let omega = d.join("omega");
    each_damage_refused(
        d,
        "alpha",
        &omega,
        &[&NODE_FILES[..], &CA_FILES[..]].concat(),
    );
    each_damage_refused(d, "beta", &omega, &NODE_FILES);
    each_damage_refused(d, "gamma", &omega, &NODE_FILES);

    // Another member's certificate, valid in this mesh, is not this node's.
    let copy = d.join("beta-swapped");
    copy_dir(&d.join("beta"), &copy);
    fs::copy(d.join("gamma/node.crt"), copy.join("node.crt")).unwrap();
    refused(&copy, "node.crt", "beta with gamma's certificate");

    // The same through `meshd run`: exit code 1 and the file named.
    for (file, how) in [
        ("node.crt", Damage::Deleted),
        ("wireguard.key", Damage::ReplacedByOtherMesh),
        ("ca/ca.key", Damage::Truncated),
        ("ca/db.json", Damage::Deleted),
    ] {
        let copy = d.join("alpha-run");
        let _ = fs::remove_dir_all(&copy);
        copy_dir(&d.join("alpha"), &copy);
        damage(&copy.join(file), how, &omega.join(file));
        run_refused(&d.join("alpha.toml"), &copy, file);
    }

    // A spoke learns where its core is only from members.json: not a cache there.
    let copy = d.join("gamma-nomembers");
    copy_dir(&d.join("gamma"), &copy);
    fs::remove_file(copy.join("members.json")).unwrap();
    refused(&copy, "members.json", "spoke without members.json");

    // On a core, members.json and crl.der are caches: a corrupt one is refused (deleting it
    // is the advice), a missing one is accepted and learnt again from the peers.
    let beta_state = d.join("beta");
    let members = beta_state.join("members.json");
    let saved = fs::read(&members).unwrap();
    fs::write(&members, b"{\"version\":1,\"members\":").unwrap();
    let text = refused(&beta_state, "members.json", "corrupt cache");
    assert!(text.contains("cache: delete it"), "{text}");
    fs::write(&members, saved).unwrap();

    beta.shutdown().await;
    fs::remove_file(&members).unwrap();
    let _ = fs::remove_file(beta_state.join("crl.der"));
    let checked = check::at_start(&StateDir::new(&beta_state)).expect("caches may be missing");
    assert!(checked.missing_caches.contains(&members), "{checked:?}");
    let beta = start(d, "beta", beta_ep).await;
    // Learnt again from alpha, which dials the core it knows; and stored again. The
    // membership arrives whole (tunnels wait for the revocation check), gamma with it.
    wait_for_peers(&beta, "beta learns its peers again", &["alpha", "gamma"]).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !fs::read_to_string(&members).is_ok_and(|text| text.contains("certificate")) {
        assert!(
            std::time::Instant::now() < deadline,
            "members.json was not written again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check::at_start(&StateDir::new(&beta_state)).expect("the relearnt cache checks");

    // On the CA holder, after a revocation crl.der is the only list of what was revoked.
    meshd_async(d, "alpha", &["revoke", "gamma"]).await.unwrap();
    let copy = d.join("alpha-nocrl");
    copy_dir(&d.join("alpha"), &copy);
    fs::remove_file(copy.join("crl.der")).unwrap();
    let text = refused(&copy, "crl.der", "CA holder without its revocation list");
    assert!(text.contains("gamma"), "{text}");

    alpha.shutdown().await;
    beta.shutdown().await;
}

#[test]
fn a_node_set_up_by_hand_needs_only_its_wireguard_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let err = check::at_start(&StateDir::new(&state))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wireguard.key") && err.contains("meshd init"),
        "{err}"
    );
    fs::create_dir_all(&state).unwrap();
    let key = meshd::state::generate_wireguard_key();
    StateDir::new(&state).write_wireguard_key(&key).unwrap();
    let checked = check::at_start(&StateDir::new(&state)).unwrap();
    assert!(checked.node.is_none());
    // But a certificate without the rest of the identity is damage, not a hand-made node.
    fs::write(state.join("node.crt"), b"x").unwrap();
    let err = check::at_start(&StateDir::new(&state))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            &PathBuf::from(&state)
                .join("node.json")
                .display()
                .to_string()
        ),
        "{err}"
    );
}
