//! Damaged state: a corrupt or unreadable file is reported by name and left as it is.

mod cli_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use cli_support::Node;

#[test]
fn corrupt_ca_database_is_reported_and_left_untouched() {
    let node = Node::new();
    node.init_alpha();
    let db = node.state_file("ca/db.json");
    for garbage in [&b"{\"version\":1,"[..], b"", b"[1,2]", b"{\"version\":1}"] {
        fs::write(&db, garbage).unwrap();
        node.meshd(&["invite", "beta", "--role", "core"])
            .fails_with(1, &[db.to_str().unwrap(), "corrupt", "left untouched"]);
        assert_eq!(fs::read(&db).unwrap(), garbage);
    }
}

#[test]
fn newer_format_version_is_named() {
    let node = Node::new();
    node.init_alpha();
    let db = node.state_file("ca/db.json");
    let text = fs::read_to_string(&db)
        .unwrap()
        .replacen("\"version\": 1", "\"version\": 7", 1);
    fs::write(&db, &text).unwrap();
    node.meshd(&["invite", "beta", "--role", "core"])
        .fails_with(1, &[db.to_str().unwrap(), "version 7"]);
    assert_eq!(fs::read_to_string(&db).unwrap(), text);
}

#[test]
fn corrupt_node_record_is_reported_and_left_untouched() {
    let node = Node::new();
    node.init_alpha();
    let record = node.state_file("node.json");
    fs::write(&record, b"{\"version\":1,\"allocation\":42}").unwrap();
    node.meshd(&["invite", "beta", "--role", "core"])
        .fails_with(1, &[record.to_str().unwrap(), "corrupt"]);
    assert_eq!(
        fs::read(&record).unwrap(),
        b"{\"version\":1,\"allocation\":42}"
    );
    // init does not "repair" it either.
    node.init_alpha_with(&[])
        .fails_with(1, &["already initialised"]);
    assert_eq!(
        fs::read(&record).unwrap(),
        b"{\"version\":1,\"allocation\":42}"
    );
}

#[test]
fn corrupt_or_exposed_wireguard_key_is_reported() {
    let node = Node::new();
    node.init_alpha();
    let key = node.state_file("wireguard.key");
    let original = fs::read(&key).unwrap();

    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    node.meshd(&["pubkey"])
        .fails_with(1, &[key.to_str().unwrap(), "0644", "chmod 600"]);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();

    fs::write(&key, b"c2hvcnQ=\n").unwrap();
    node.meshd(&["pubkey"])
        .fails_with(1, &[key.to_str().unwrap(), "corrupt", "32 bytes"]);
    assert_eq!(fs::read(&key).unwrap(), b"c2hvcnQ=\n");
    assert_ne!(original, b"c2hvcnQ=\n");
}

#[test]
fn concurrent_invites_are_serialised_and_none_is_lost() {
    let node = Node::new();
    node.init_alpha();
    // Each invite reads the CA database, adds its invitation and writes it back; without the
    // state directory lock, two at once would lose one of them.
    let names = ["b1", "b2", "b3", "b4"];
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(|| node.meshd(&["invite", name, "--role", "core"])))
            .collect();
        for handle in handles {
            handle.join().unwrap().success();
        }
    });
    let db = meshd::state::StateDir::new(&node.state)
        .read_ca_db()
        .unwrap();
    let mut recorded: Vec<&str> = db.invitations.iter().map(|i| i.name.as_str()).collect();
    recorded.sort();
    assert_eq!(recorded, names);
}
