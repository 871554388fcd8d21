//! The command line itself: help, version, usage errors.

mod cli_support;

use cli_support::{Node, meshd};

#[test]
fn version_prints_name_and_version() {
    let run = meshd(&["--version"]).success();
    assert_eq!(
        run.stdout().trim(),
        format!("meshd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_command_of_the_contract() {
    let help = meshd(&["--help"]).success().stdout();
    for command in [
        "init", "invite", "join", "run", "status", "peers", "routes", "client", "revoke", "pubkey",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(command)),
            "--help does not list {command}:\n{help}"
        );
    }
    assert!(help.contains("--config <FILE>"));
    assert!(help.contains("/etc/meshd/meshd.toml"));
    assert!(help.contains("--state-dir <DIR>"));
    assert!(help.contains("/var/lib/meshd"));
}

#[test]
fn usage_errors_exit_2() {
    meshd(&[]).fails_with(2, &["Usage"]);
    meshd(&["frobnicate"]).fails_with(2, &["unrecognized subcommand"]);
    meshd(&["init", "--name", "alpha"]).fails_with(2, &["--endpoint"]);
    meshd(&["init", "--name", "a", "--endpoint", "nohost"]).fails_with(2, &["no port"]);
    meshd(&["invite", "beta", "--role", "hub"]).fails_with(2, &["hub"]);
    meshd(&["invite", "beta", "--role", "core", "--ttl", "forever"]).fails_with(2, &["--ttl"]);
    meshd(&["invite", "beta", "--role", "core", "--route", "not-a-cidr"])
        .fails_with(2, &["--route"]);
}

#[test]
fn pubkey_without_state_names_the_missing_file() {
    let node = Node::new();
    let missing = node.state_file("wireguard.key");
    node.meshd(&["pubkey"])
        .fails_with(1, &[missing.to_str().unwrap(), "meshd init"]);
}

#[test]
fn run_without_config_or_state_fails_before_touching_the_system() {
    let node = Node::new();
    node.meshd(&["run"])
        .fails_with(1, &["meshd: error:", node.config.to_str().unwrap()]);
    // With a config but no state: the missing key is named.
    std::fs::create_dir_all(node.config.parent().unwrap()).unwrap();
    std::fs::write(
        &node.config,
        "[node]\nname = \"alpha\"\nrole = \"core\"\nendpoints = [\"203.0.113.1:51820\"]\n",
    )
    .unwrap();
    node.meshd(&["run"]).fails_with(
        1,
        &[
            node.state_file("wireguard.key").to_str().unwrap(),
            "meshd init",
        ],
    );
}
