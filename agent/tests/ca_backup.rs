//! `meshd ca backup` on the CA holder, the holder lost, `meshd ca restore` on another core
//! while its control plane runs: the restored CA admits at once with no number handed out
//! twice (a node admitted after the backup and one admitted and revoked after it included),
//! and a member whose recorded CA holder is gone renews at the new one. Control planes run in
//! one process on 127.0.0.x (no root).

mod control_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use control_support::{
    Mesh, TwoCores, meshd, meshd_async, start, state, two_cores, wait_for, wait_for_peers,
};
use meshd::control::store;

const ALPHA: &str = "127.0.0.151:51951";
const BETA: &str = "127.0.0.152:51952";
const GAMMA: &str = "127.0.0.153:51953";
const DELTA: &str = "127.0.0.154:51954";
const EPSILON: &str = "127.0.0.155:51955";
const STANDBY_A: &str = "127.0.0.156:51956";
const STANDBY_B: &str = "127.0.0.157:51957";
const STANDBY_C: &str = "127.0.0.158:51958";

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `meshd ca backup FILE --passphrase-file PASS EXTRA...` on `node` (a fast work factor).
fn backup_cmd(
    d: &Path,
    node: &str,
    file: &Path,
    pass: &Path,
    extra: &[&str],
) -> Result<String, String> {
    let (file, pass) = (file.display().to_string(), pass.display().to_string());
    let mut args = vec![
        "ca",
        "backup",
        &file,
        "--passphrase-file",
        &pass,
        "--test-work-factor",
        "10",
    ];
    args.extend(extra);
    meshd(d, node, &args)
}

/// `meshd ca restore FILE --passphrase-file PASS` on `node`.
fn restore_cmd(d: &Path, node: &str, file: &Path, pass: &Path) -> Result<String, String> {
    let (file, pass) = (file.display().to_string(), pass.display().to_string());
    meshd(
        d,
        node,
        &["ca", "restore", &file, "--passphrase-file", &pass],
    )
}

fn members_of(dir: &Path, node: &str) -> Vec<String> {
    store::read_members(&state(dir, node))
        .unwrap()
        .iter()
        .filter_map(|r| pki::NodeCertificate::parse(&r.certificate).ok())
        .map(|c| c.identity.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_ca_admits_at_once_and_hands_nothing_out_twice() {
    let TwoCores { mesh, alpha, beta } = two_cores(ALPHA, BETA).await;
    let d = mesh.path();
    let pass = secret_file(d, "pass", "correct horse battery\n", 0o600);
    let backup = d.join("alpha-ca.backup");

    // Only the CA holder makes backups; a loose passphrase file is refused.
    let err = backup_cmd(d, "beta", &backup, &pass, &[]).unwrap_err();
    assert!(err.contains("does not hold the mesh CA"), "{err}");
    let loose = secret_file(d, "loose", "correct horse battery\n", 0o644);
    let err = backup_cmd(d, "alpha", &backup, &loose, &[]).unwrap_err();
    assert!(err.contains("chmod 600"), "{err}");

    let out = backup_cmd(d, "alpha", &backup, &pass, &[]).unwrap();
    assert!(
        out.contains("2 member(s)") && out.contains("read it back"),
        "{out}"
    );
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // After the backup alpha admits gamma, and admits and revokes delta.
    mesh.join_core("gamma", GAMMA).await;
    let gamma = start(d, "gamma", GAMMA).await;
    mesh.join_core("delta", DELTA).await;
    meshd(d, "alpha", &["revoke", "delta"]).unwrap();
    wait_for_peers(&beta, "beta sees alpha and gamma", &["alpha", "gamma"]).await;
    wait_for("beta stores gamma's record", || {
        members_of(d, "beta").contains(&"gamma".to_owned())
    })
    .await;
    wait_for("beta stores the revocation list", || {
        state(d, "beta").crl_path().exists()
    })
    .await;

    // alpha's disk dies.
    alpha.shutdown().await;

    // Refusals, each before anything is written.
    let wrong = secret_file(d, "wrong", "battery staple horse\n", 0o600);
    let err = restore_cmd(d, "beta", &backup, &wrong).unwrap_err();
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!state(d, "beta").ca_key_path().exists());
    let mut cut = std::fs::read(&backup).unwrap();
    cut.truncate(cut.len() - 40);
    let cut_path = d.join("cut.backup");
    std::fs::write(&cut_path, &cut).unwrap();
    let err = restore_cmd(d, "beta", &cut_path, &pass).unwrap_err();
    assert!(err.contains("is damaged"), "{err}");
    // A backup of another mesh is refused before the passphrase is asked (the preface says
    // which mesh; the encrypted copy of it is checked in the unit tests).
    let text = std::fs::read(&backup).unwrap();
    let fingerprint = state(d, "beta").read_node_record().unwrap().ca_fingerprint;
    let start = text.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let preface = String::from_utf8(text[..start].to_vec()).unwrap();
    let mut edited = preface
        .replacen(&fingerprint, &"ab".repeat(32), 1)
        .replacen("mesh: alpha", "mesh: omega", 1)
        .into_bytes();
    edited.extend_from_slice(&text[start..]);
    let omega_backup = d.join("omega.backup");
    std::fs::write(&omega_backup, &edited).unwrap();
    let no_pass = secret_file(d, "empty", "", 0o600);
    let err = restore_cmd(d, "beta", &omega_backup, &no_pass).unwrap_err();
    assert!(err.contains("backup of the CA of mesh \"omega\""), "{err}");
    assert!(!state(d, "beta").is_ca_holder());

    // The restore, with beta's control plane running.
    let out = restore_cmd(d, "beta", &backup, &pass).unwrap();
    assert!(
        out.contains("1 node(s) admitted since the backup (gamma)"),
        "{out}"
    );
    assert!(out.contains("skipped 1 node number(s)"), "{out}");
    assert!(out.contains("no restart needed"), "{out}");
    let key_mode = std::fs::metadata(state(d, "beta").ca_key_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    meshd::state::check::at_start(&state(d, "beta")).expect("beta starts as the CA holder");
    let err = restore_cmd(d, "beta", &backup, &pass).unwrap_err();
    assert!(err.contains("holds a mesh CA already"), "{err}");

    // beta admits at once: epsilon gets a number nobody ever had.
    let token = meshd(d, "beta", &["invite", "epsilon", "--role", "core"]).unwrap();
    meshd_async(d, "epsilon", &["join", token.trim(), "--endpoint", EPSILON])
        .await
        .unwrap();
    let epsilon = state(d, "epsilon").read_node_record().unwrap().allocation;
    assert_eq!(epsilon.index, 5, "after alpha 1, beta 2, gamma 3, delta 4");
    for node in ["alpha", "beta", "gamma", "delta"] {
        let other = state(d, node).read_node_record().unwrap().allocation;
        assert_ne!(other.ipv4, epsilon.ipv4, "{node}");
        assert_ne!(other.ipv6, epsilon.ipv6, "{node}");
    }
    // gamma, admitted since the backup, is a member to the restored registry too.
    let err = meshd(d, "beta", &["invite", "gamma", "--role", "core"]).unwrap_err();
    assert!(err.contains("already in the mesh"), "{err}");

    // gamma still names alpha as the CA holder; its renewal finds beta.
    assert!(gamma.renewal_trigger().request());
    wait_for("gamma records beta as the CA holder", || {
        state(d, "gamma")
            .read_node_record()
            .is_ok_and(|r| r.ca_holder.as_deref() == Some("beta"))
    })
    .await;

    // And on to gamma: once the backup is written and read back, beta stops admitting.
    let moved = d.join("beta-ca.backup");
    let out = backup_cmd(d, "beta", &moved, &pass, &["--move-to", "gamma"]).unwrap();
    assert!(out.contains("no longer holds the mesh CA"), "{out}");
    assert!(!state(d, "beta").is_ca_holder());
    assert!(!state(d, "beta").ca_key_path().exists());
    let record = state(d, "beta").read_node_record().unwrap();
    assert_eq!(record.ca_holder.as_deref(), Some("gamma"));
    meshd::state::check::at_start(&state(d, "beta")).expect("beta starts as a member");
    let err = meshd(d, "beta", &["invite", "zeta", "--role", "core"]).unwrap_err();
    assert!(err.contains("does not hold the mesh CA"), "{err}");

    beta.shutdown().await;
    gamma.shutdown().await;
}

#[test]
fn a_hand_over_must_name_another_core_and_leaves_nothing_when_refused() {
    let mesh = Mesh::init("127.0.0.157:51957");
    let d = mesh.path();
    let pass = secret_file(d, "pass", "correct horse battery\n", 0o600);
    let backup = d.join("ca.backup");
    let run = |target: &str| backup_cmd(d, "alpha", &backup, &pass, &["--move-to", target]);
    let err = run("alpha").unwrap_err();
    assert!(err.contains("holds the CA already"), "{err}");
    let err = run("nobody").unwrap_err();
    assert!(err.contains("no member \"nobody\""), "{err}");
    assert!(!backup.exists());
    assert!(state(d, "alpha").is_ca_holder());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_keeps_the_ca_but_refuses_joins_renewals_and_ca_commands() {
    let TwoCores { mesh, alpha, beta } = two_cores(STANDBY_A, STANDBY_B).await;
    let d = mesh.path();
    let pass = secret_file(d, "pass", "correct horse battery\n", 0o600);
    let file = d.join("standby.backup");

    // A plain backup cannot make a standby: only one made with --standby splits the registry.
    backup_cmd(d, "alpha", &file, &pass, &[]).unwrap();
    let (file_s, pass_s) = (file.display().to_string(), pass.display().to_string());
    let restore_standby = [
        "ca",
        "restore",
        &file_s,
        "--passphrase-file",
        &pass_s,
        "--standby",
    ];
    let err = meshd(d, "beta", &restore_standby).unwrap_err();
    assert!(err.contains("was not made for a standby"), "{err}");
    assert!(!state(d, "beta").ca_db_path().exists());

    backup_cmd(d, "alpha", &file, &pass, &["--standby"]).unwrap();
    let holder = state(d, "alpha").read_ca_db().unwrap();
    assert_eq!(holder.allocator.share().holders, 2);
    assert_eq!(holder.allocator.share().slot, 0);
    assert!(holder.standby.is_none());
    let out = meshd(d, "beta", &restore_standby).unwrap();
    assert!(out.contains("standby copy of the CA"), "{out}");
    let copy = state(d, "beta").read_ca_db().unwrap();
    assert_eq!(copy.allocator.share().slot, 1);
    assert_eq!(copy.standby.as_ref().unwrap().active_holder, "alpha");
    assert!(!state(d, "beta").is_ca_holder());
    assert!(state(d, "beta").has_ca_copy());
    // beta still renews at alpha.
    let record = state(d, "beta").read_node_record().unwrap();
    assert_eq!(record.ca_holder_name(), "alpha");

    let refusal = "this node is a standby of the CA; the active holder is alpha";
    let err = meshd(d, "beta", &["invite", "zeta", "--role", "core"]).unwrap_err();
    assert!(err.contains(refusal), "{err}");
    let err = meshd(d, "beta", &["revoke", "alpha"]).unwrap_err();
    assert!(err.contains(refusal), "{err}");
    let pem = std::fs::read_to_string(state(d, "alpha").node_cert_path()).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let current = pki::NodeCertificate::parse(&der).unwrap();
    let terms = meshd::control::admission::RenewalTerms {
        validity: time::Duration::days(90),
        grace: time::Duration::days(180),
    };
    let err = meshd::control::admission::renew(
        &state(d, "beta"),
        &current,
        "not a CSR",
        time::OffsetDateTime::now_utc(),
        terms,
    )
    .unwrap_err();
    assert_eq!(err.0, refusal);
    // The active holder goes on admitting, from its own class only.
    mesh.join_core("gamma", STANDBY_C).await;
    let gamma = state(d, "gamma").read_node_record().unwrap();
    assert_eq!(gamma.allocation.index % 2, 0, "{}", gamma.allocation.index);
    // ... and the standby hears of it from the holder's registry record (gossip).
    wait_for("beta's registry has gamma", || {
        state(d, "beta")
            .read_ca_db()
            .is_ok_and(|db| db.allocator.node("gamma").is_some())
    })
    .await;
    let head = state(d, "beta").read_ca_db().unwrap().registry.unwrap();
    assert_eq!((head.term, head.holder.as_str()), (1, "alpha"));
    alpha.shutdown().await;
    beta.shutdown().await;
}
