//! `meshd invite --foreign`, `meshd router add` and `meshd export` refuse what cannot work, with
//! what to do, and write nothing (no daemon needed: state directories only).

use meshd::commands::run_captured;

fn meshd(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    run_captured(&dir.join("meshd.toml"), &dir.join("state"), args).map_err(|e| e.to_string())
}

fn ca_holder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    meshd(
        dir.path(),
        &["init", "--name", "alpha", "--endpoint", "127.0.0.1:51820"],
    )
    .unwrap();
    dir
}

#[test]
fn a_foreign_invitation_is_for_a_spoke() {
    let dir = ca_holder();
    let error = meshd(
        dir.path(),
        &["invite", "mikro", "--role", "core", "--foreign"],
    )
    .unwrap_err();
    assert!(error.contains("--foreign"), "{error}");
    assert!(
        error.contains("only a spoke can be a foreign router"),
        "{error}"
    );
}

#[test]
fn a_router_is_added_only_on_its_own_core_and_with_a_real_key() {
    let dir = ca_holder();
    let token = meshd(
        dir.path(),
        &[
            "invite",
            "mikro",
            "--role",
            "spoke",
            "--core",
            "alpha",
            "--foreign",
        ],
    )
    .unwrap();
    let error = meshd(
        dir.path(),
        &["router", "add", token.trim(), "--wg-key", "abc"],
    )
    .unwrap_err();
    assert!(error.contains("is not a WireGuard public key"), "{error}");

    // A token for a spoke of another core, redeemed here.
    let beta = meshd(dir.path(), &["invite", "beta", "--role", "core"]).unwrap();
    assert!(!beta.is_empty());
    let other = tempfile::tempdir().unwrap();
    meshd(
        other.path(),
        &["init", "--name", "gamma", "--endpoint", "127.0.0.1:51821"],
    )
    .unwrap();
    let error = meshd(other.path(), &["router", "add", token.trim()]).unwrap_err();
    assert!(error.contains("not a foreign router of gamma"), "{error}");
    assert!(error.contains("run this on its core"), "{error}");
    assert!(
        !other.path().join("state/routers").exists(),
        "nothing is written"
    );
}

#[test]
fn an_export_names_what_is_wrong() {
    let dir = ca_holder();
    let error = meshd(dir.path(), &["export", "junos", "mikro"]).unwrap_err();
    assert!(
        error.contains(
            "unknown export format \"junos\": the formats are routeros, wg-quick, bird and frr"
        ),
        "{error}"
    );
    let error = meshd(dir.path(), &["export", "bird", "mikro"]).unwrap_err();
    assert!(
        error.contains("alpha stands in for no router called \"mikro\""),
        "{error}"
    );
    let error = meshd(dir.path(), &["export", "bird", "alpha"]).unwrap_err();
    assert!(error.contains("stands in for no router"), "{error}");
}

#[test]
fn a_one_step_router_add_leaves_nothing_behind_when_it_fails() {
    let dir = ca_holder();
    let key = "RkidVfweX7wx1upBKInKu6UBasEyx6WG46PS1uw4uzg=";
    let error = meshd(
        dir.path(),
        &["router", "add", "--name", "mikro", "--wg-key", "abc"],
    )
    .unwrap_err();
    assert!(error.contains("is not a WireGuard public key"), "{error}");
    // No daemon answers the admission: the invitation made for it is taken back.
    let error = meshd(
        dir.path(),
        &[
            "router",
            "add",
            "--name",
            "mikro",
            "--route",
            "192.168.77.0/24",
            "--wg-key",
            key,
        ],
    )
    .unwrap_err();
    assert!(error.contains("127.0.0.1:51820"), "{error}");
    let pending = meshd(dir.path(), &["invite", "--list"]).unwrap();
    assert!(!pending.contains("mikro"), "{pending}");
    assert!(
        !dir.path().join("state/routers").exists(),
        "nothing is written"
    );
    // A token and --name at once, or --route without --name: refused by the parser.
    let error = meshd(dir.path(), &["router", "add", "TOKEN", "--name", "mikro"]).unwrap_err();
    assert!(error.contains("cannot be used with"), "{error}");
    let error = meshd(
        dir.path(),
        &["router", "add", "TOKEN", "--route", "192.168.77.0/24"],
    )
    .unwrap_err();
    assert!(error.contains("--name"), "{error}");
}
