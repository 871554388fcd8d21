//! `meshd generate-docs` (hidden): the package's man pages and shell completions come from the
//! real command-line definition.

mod cli_support;

use std::fs;

use cli_support::meshd;

#[test]
fn man_pages_and_completions_cover_every_visible_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    meshd(&["generate-docs", "--out", out]).success();

    let man = dir.path().join("man");
    let main_page = fs::read_to_string(man.join("meshd.1")).unwrap();
    assert!(main_page.contains(".TH meshd 1"), "{main_page}");
    for subcommand in [
        "init", "invite", "join", "run", "status", "peers", "routes", "client", "revoke", "pubkey",
    ] {
        let page = man.join(format!("meshd-{subcommand}.1"));
        assert!(page.is_file(), "{} is missing", page.display());
        assert!(
            main_page.contains(&format!("meshd\\-{subcommand}(1)")),
            "meshd.1 does not list {subcommand}"
        );
    }
    assert!(man.join("meshd-client-add.1").is_file());
    // The hidden command is for building the package, not for operators.
    assert!(!man.join("meshd-generate-docs.1").exists());
    assert!(
        !main_page.contains("generate"),
        "meshd.1 shows the hidden command"
    );
    // The files and environment of the long help are in the man page.
    assert!(main_page.contains("/var/lib/meshd"));

    let completions = dir.path().join("completions");
    let bash = fs::read_to_string(completions.join("meshd")).unwrap();
    assert!(
        bash.contains("complete -F") && bash.contains("--log-level"),
        "bash completion"
    );
    let zsh = fs::read_to_string(completions.join("_meshd")).unwrap();
    assert!(zsh.starts_with("#compdef meshd"), "zsh completion");
    let fish = fs::read_to_string(completions.join("meshd.fish")).unwrap();
    assert!(fish.contains("complete -c meshd"), "fish completion");
}
