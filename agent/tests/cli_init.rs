//! `meshd init`: what it creates, with which modes, and what it refuses.

mod cli_support;

use std::fs;

use boringtun::x25519::{PublicKey, StaticSecret};
use cli_support::{Node, mode};
use meshd::state::{StateDir, decode_key, encode_key};

#[test]
fn init_creates_private_state_and_a_config_that_loads() {
    let node = Node::new();
    let run = node.init_alpha();

    for dir in [node.state.clone(), node.state_file("ca")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for key in ["wireguard.key", "node.key", "ca/ca.key", "ca/db.json"] {
        assert_eq!(mode(&node.state_file(key)), 0o600, "{key}");
    }
    for public in ["node.crt", "node.json", "ca/ca.crt"] {
        assert!(node.state_file(public).is_file(), "{public} missing");
        assert_eq!(
            mode(&node.state_file(public)) & 0o077 & !0o044,
            0,
            "{public}"
        );
    }
    // No temporary files left behind.
    for dir in [node.state.clone(), node.state_file("ca")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                !name.starts_with('.'),
                "leftover {name} in {}",
                dir.display()
            );
        }
    }

    // The config it wrote is valid and describes this node, with a ULA /48.
    let config = mesh_config::load(&node.config).expect("written config loads");
    assert_eq!(config.node.name, "alpha");
    assert_eq!(config.node.role, mesh_config::Role::Core);
    assert_eq!(config.node.endpoints[0].to_string(), "203.0.113.1:51820");
    let pool6 = config.mesh.pool6.expect("init writes pool6");
    assert_eq!(pool6.prefix_len(), 48);
    assert_eq!(pool6.network().octets()[0], 0xfd, "{pool6} is not a ULA");

    // node.json records allocation index 1 as a core: 10.1.0.0/16.
    let state = StateDir::new(&node.state);
    let record = state.read_node_record().unwrap();
    assert_eq!(record.allocation.index, 1);
    assert_eq!(record.allocation.ipv4.to_string(), "10.1.0.0/16");
    assert_eq!(record.allocation.ipv4_address.to_string(), "10.1.0.1");
    assert!(pool6.contains(&record.allocation.ipv6));

    // The certificate binds the allocation and the WireGuard key, signed by the CA.
    let cert_pem = fs::read_to_string(node.state_file("node.crt")).unwrap();
    let ca_pem = fs::read_to_string(node.state_file("ca/ca.crt")).unwrap();
    let ca_key = fs::read_to_string(node.state_file("ca/ca.key")).unwrap();
    let ca = pki::CertificateAuthority::from_pem(&ca_pem, &ca_key).unwrap();
    assert_eq!(ca.fingerprint_hex(), record.ca_fingerprint);
    let der = pem_body(&cert_pem);
    let cert = pki::NodeCertificate::parse(&der).unwrap();
    assert_eq!(cert.identity.name, "alpha");
    assert!(
        cert.identity
            .prefixes
            .contains(&ipnet::IpNet::V4(record.allocation.ipv4))
    );
    let secret = StaticSecret::from(
        decode_key(&fs::read_to_string(node.state_file("wireguard.key")).unwrap()).unwrap(),
    );
    assert_eq!(
        cert.identity.wireguard_key,
        *PublicKey::from(&secret).as_bytes()
    );

    // The summary names the node, its address and the CA fingerprint, and the next step.
    let summary = run.stdout();
    for needle in ["alpha", "10.1.0.1", &record.ca_fingerprint, "invite"] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle}:\n{summary}"
        );
    }
}

#[test]
fn pubkey_prints_the_public_half_of_wireguard_key() {
    let node = Node::new();
    node.init_alpha();
    let text = fs::read_to_string(node.state_file("wireguard.key")).unwrap();
    let secret = StaticSecret::from(decode_key(&text).unwrap());
    let expected = encode_key(PublicKey::from(&secret).as_bytes());
    let run = node.meshd(&["pubkey"]).success();
    assert_eq!(run.stdout(), format!("{expected}\n"));
}

#[test]
fn second_init_refuses_and_changes_nothing() {
    let node = Node::new();
    node.init_alpha();
    let before = state_snapshot(&node);
    node.init_alpha_with(&[])
        .fails_with(1, &["already initialised", "node.json"]);
    // Even with a config that no longer exists, the keys are not replaced.
    fs::remove_file(&node.config).unwrap();
    node.meshd(&["init", "--name", "other", "--endpoint", "203.0.113.9:51820"])
        .fails_with(1, &["already initialised"]);
    assert_eq!(state_snapshot(&node), before);
}

#[test]
fn init_honours_config_and_state_dir_and_writes_nowhere_else() {
    let node = Node::new();
    node.meshd(&[
        "init",
        "--name",
        "alpha",
        "--endpoint",
        "vpn.example.net:51820",
        "--pool4",
        "10.64.0.0/10",
        "--pool6",
        "fd00:1234:5678::/48",
        "--asn",
        "65001",
    ])
    .success();
    let mut entries: Vec<String> = fs::read_dir(node.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["etc", "state"]);
    let config = mesh_config::load(&node.config).unwrap();
    assert_eq!(config.mesh.pool4.to_string(), "10.64.0.0/10");
    assert_eq!(
        config.mesh.pool6.unwrap().to_string(),
        "fd00:1234:5678::/48"
    );
    assert_eq!(config.routing.asn, 65001);
    let record = StateDir::new(&node.state).read_node_record().unwrap();
    assert_eq!(record.allocation.ipv4.to_string(), "10.65.0.0/16");
    assert_eq!(record.allocation.ipv6.to_string(), "fd00:1234:5678:1::/64");
}

#[test]
fn existing_config_must_agree_with_the_flags() {
    let node = Node::new();
    fs::create_dir_all(node.config.parent().unwrap()).unwrap();
    fs::write(
        &node.config,
        "[node]\nname = \"alpha\"\nrole = \"core\"\nendpoints = [\"203.0.113.1:51820\"]\n\n[mesh]\npool6 = \"fd00:1::/48\"\n",
    )
    .unwrap();
    let original = fs::read(&node.config).unwrap();

    node.meshd(&["init", "--name", "beta", "--endpoint", "203.0.113.1:51820"])
        .fails_with(1, &[node.config.to_str().unwrap(), "node.name", "--name"]);
    node.meshd(&["init", "--name", "alpha", "--endpoint", "203.0.113.2:51820"])
        .fails_with(1, &["node.endpoints", "--endpoint"]);
    node.init_alpha_with(&["--pool6", "fd00:2::/48"])
        .fails_with(1, &["mesh.pool6", "--pool6"]);
    assert!(
        !node.state_file("node.json").exists(),
        "a refused init wrote state"
    );

    // Agreeing flags: accepted, and the file is left as it was.
    node.init_alpha_with(&[]).success();
    assert_eq!(fs::read(&node.config).unwrap(), original);
    let record = StateDir::new(&node.state).read_node_record().unwrap();
    assert_eq!(record.allocation.ipv6.to_string(), "fd00:1:0:1::/64");
}

#[test]
fn invalid_config_is_reported_with_its_location() {
    let node = Node::new();
    fs::create_dir_all(node.config.parent().unwrap()).unwrap();
    fs::write(&node.config, "[node]\nname = \"alpha\"\nrole = \"hub\"\n").unwrap();
    node.init_alpha_with(&[])
        .fails_with(1, &[&format!("{}:3:", node.config.display()), "role"]);
    assert!(!node.state.exists() || !node.state_file("node.json").exists());
}

#[test]
fn bad_flag_values_name_the_flag() {
    let node = Node::new();
    node.meshd(&["init", "--name", "Alpha", "--endpoint", "203.0.113.1:51820"])
        .fails_with(1, &["--name", "lowercase"]);
    node.init_alpha_with(&["--pool4", "10.0.0.1/8"])
        .fails_with(1, &["--pool4"]);
    assert!(!node.config.exists());
    assert!(!node.state_file("wireguard.key").exists());
}

#[test]
fn state_dir_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new();
    fs::create_dir_all(&node.state).unwrap();
    fs::set_permissions(&node.state, fs::Permissions::from_mode(0o755)).unwrap();
    node.init_alpha_with(&[])
        .fails_with(1, &[node.state.to_str().unwrap(), "0755", "chmod 700"]);
    assert_eq!(fs::read_dir(&node.state).unwrap().count(), 0);
}

/// Every file under the node's state directory with its content.
fn state_snapshot(node: &Node) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    collect(&node.state, &node.state, &mut files);
    files.sort();
    files
}

fn collect(root: &std::path::Path, dir: &std::path::Path, files: &mut Vec<(String, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            files.push((name, fs::read(&path).unwrap()));
        }
    }
}

/// The DER inside a one-certificate PEM.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn init_replaces_the_packaged_template_config_and_says_how_to_start() {
    let node = Node::new();
    let template = include_str!("../../packaging/meshd.toml");
    fs::create_dir_all(node.config.parent().unwrap()).unwrap();
    fs::write(&node.config, template).unwrap();
    let run = node.init_alpha();

    let config = mesh_config::load(&node.config).expect("written config loads");
    assert_eq!(config.node.name, "alpha");
    let text = fs::read_to_string(&node.config).unwrap();
    assert!(
        !text.contains("You normally do not write this file"),
        "the template was kept: {text}"
    );
    // Not the default paths, so not the systemd unit: the foreground command.
    assert!(
        run.stdout().contains("Start it: `meshd --config"),
        "{}",
        run.stdout()
    );

    // A config with settings is the operator's: a second node over it must agree, not replace.
    let other = Node::new();
    fs::create_dir_all(other.config.parent().unwrap()).unwrap();
    fs::write(
        &other.config,
        format!("{template}\n[node]\nname = \"beta\"\nrole = \"core\"\n"),
    )
    .unwrap();
    let refused = other.init_alpha_with(&[]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    assert!(
        refused.stderr().contains("node.name"),
        "{}",
        refused.stderr()
    );
}
