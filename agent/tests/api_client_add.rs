//! `meshd client add` without root: the printed wg-quick configuration is complete and
//! consistent with the node's key, endpoint and pools, clients are persisted and never get
//! an address twice, and `--qr` prints a code instead of the text.

mod api_support;
mod cli_support;

use std::process::Command;

use api_support::{list, parse_wg_quick};
use cli_support::{ALPHA_ENDPOINT, Node};

fn public_key_of(private_base64: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes: [u8; 32] = engine
        .decode(private_base64)
        .unwrap()
        .try_into()
        .expect("a 32-byte key");
    let secret = boringtun::x25519::StaticSecret::from(bytes);
    engine.encode(boringtun::x25519::PublicKey::from(&secret).as_bytes())
}

fn clients_json(node: &Node) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(node.state_file("clients.json")).unwrap())
        .unwrap()
}

#[test]
fn the_config_is_a_complete_wg_quick_file_for_this_node() {
    let node = Node::new();
    node.init_alpha();
    let run = node.meshd(&["client", "add", "laptop"]).success();
    let config = parse_wg_quick(&run.stdout()).unwrap_or_else(|e| panic!("{e}:\n{}", run.stdout()));

    let interface = &config.interface;
    assert_eq!(
        interface.len(),
        2,
        "only PrivateKey and Address: {interface:?}"
    );
    let address = list(&interface["Address"]);
    assert_eq!(address[0], "10.1.0.2/32");
    assert!(address[1].ends_with(":1:0:1/128"), "{address:?}");
    let [peer] = &config.peers[..] else {
        panic!("one peer expected: {config:?}")
    };
    let node_key = node.meshd(&["pubkey"]).success().stdout();
    assert_eq!(peer["PublicKey"], node_key.trim());
    assert_eq!(peer["Endpoint"], ALPHA_ENDPOINT);
    assert_eq!(peer["PersistentKeepalive"], "25");
    let allowed = list(&peer["AllowedIPs"]);
    assert_eq!(
        allowed.len(),
        2,
        "the pools only (no LAN known): {allowed:?}"
    );
    assert_eq!(allowed[0], "10.0.0.0/8");
    let meshd_toml = std::fs::read_to_string(&node.config).unwrap();
    assert!(
        meshd_toml.contains(&format!("pool6 = \"{}\"", allowed[1])),
        "AllowedIPs must carry the mesh /48 of {meshd_toml}: {allowed:?}"
    );

    // The daemon will know the client by the public key of the printed private key.
    let stored = clients_json(&node);
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["clients"][0]["name"], "laptop");
    assert_eq!(
        stored["clients"][0]["public_key"],
        public_key_of(&interface["PrivateKey"])
    );
    assert_eq!(stored["clients"][0]["ipv4"], "10.1.0.2");
    assert!(
        !std::fs::read_to_string(node.state_file("clients.json"))
            .unwrap()
            .contains(&interface["PrivateKey"])
    );
    // On the CA holder the mesh allocator recorded the address.
    let db = std::fs::read_to_string(node.state_file("ca/db.json")).unwrap();
    assert!(db.contains("\"laptop\""), "{db}");

    let stderr = run.stderr();
    assert!(stderr.contains("gets 10.1.0.2"), "{stderr}");
    assert!(stderr.contains("meshd is not running"), "{stderr}");

    // wg-quick itself accepts the file (it parses it to strip its own keys).
    if let Some(stripped) = wg_quick_strip(&run.stdout()) {
        assert!(stripped.contains("PrivateKey = "), "{stripped}");
        assert!(!stripped.contains("Address"), "{stripped}");
    }
}

/// `wg-quick strip` of `config`, or `None` (with a note) where wg-quick is not installed.
fn wg_quick_strip(config: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wgtest0.conf");
    std::fs::write(&path, config).unwrap();
    let output = match Command::new("wg-quick").arg("strip").arg(&path).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("wg-quick not run ({error}); the file was checked by the parser only");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "wg-quick strip refused the config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn allowed_ips_add_the_approved_lans_of_the_node_and_of_live_nodes_in_the_ca_db() {
    let node = Node::new();
    node.init_alpha();
    // This node's own LAN, from its configuration.
    let toml = std::fs::read_to_string(&node.config).unwrap();
    let with_lan = toml.replacen(
        "lan_prefixes = []",
        "lan_prefixes = [\"192.168.7.0/24\"]",
        1,
    );
    assert_ne!(toml, with_lan, "no empty lan_prefixes line in:\n{toml}");
    std::fs::write(&node.config, with_lan).unwrap();
    // Routes the CA approved: for alpha (live) and for a node the allocator never admitted.
    let db_path = node.state_file("ca/db.json");
    let mut db: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&db_path).unwrap()).unwrap();
    let lans = db
        .pointer_mut("/lan_prefixes")
        .expect("lan_prefixes in ca/db.json");
    *lans = serde_json::json!({
        "alpha": ["192.168.7.0/24", "192.168.8.0/24"],
        "ghost": ["172.30.0.0/16"],
    });
    std::fs::write(&db_path, serde_json::to_string(&db).unwrap()).unwrap();

    let run = node.meshd(&["client", "add", "phone"]).success();
    let config = parse_wg_quick(&run.stdout()).unwrap_or_else(|e| panic!("{e}:\n{}", run.stdout()));
    let allowed = list(&config.peers[0]["AllowedIPs"]);
    // The pools, then the LANs once each (192.168.7.0/24 is known twice); ghost is not live.
    assert_eq!(allowed.len(), 4, "{allowed:?}");
    assert_eq!(allowed[0], "10.0.0.0/8");
    assert!(allowed[1].ends_with("::/48"), "{allowed:?}");
    assert_eq!(allowed[2..], ["192.168.7.0/24", "192.168.8.0/24"]);
}

#[test]
fn with_exit_the_client_sends_everything_into_the_mesh() {
    let node = Node::new();
    node.init_alpha();
    let run = node.meshd(&["client", "add", "laptop", "--exit"]).success();
    let config = parse_wg_quick(&run.stdout()).unwrap_or_else(|e| panic!("{e}:\n{}", run.stdout()));
    assert_eq!(list(&config.peers[0]["AllowedIPs"]), ["0.0.0.0/0", "::/0"]);
}

#[test]
fn clients_get_the_next_address_and_names_are_unique() {
    let node = Node::new();
    node.init_alpha();
    node.meshd(&["client", "add", "laptop"]).success();
    let phone = node.meshd(&["client", "add", "phone"]).success();
    let config = parse_wg_quick(&phone.stdout()).unwrap();
    assert!(config.interface["Address"].starts_with("10.1.0.3/32, "));

    node.meshd(&["client", "add", "laptop"]).fails_with(
        1,
        &["already has a client named \"laptop\"", "clients.json"],
    );
    node.meshd(&["client", "add", "Bad_Name"])
        .fails_with(1, &["NAME"]);
    assert_eq!(clients_json(&node)["clients"].as_array().unwrap().len(), 2);
}

#[test]
fn a_node_without_the_ca_numbers_its_clients_itself() {
    let node = Node::new();
    node.init_alpha();
    // What a joined node looks like: no ca/ directory.
    std::fs::rename(node.state_file("ca"), node.dir.path().join("ca-elsewhere")).unwrap();
    let run = node.meshd(&["client", "add", "laptop"]).success();
    let config = parse_wg_quick(&run.stdout()).unwrap();
    assert!(config.interface["Address"].starts_with("10.1.0.2/32, "));
    let second = node.meshd(&["client", "add", "phone"]).success();
    assert!(
        parse_wg_quick(&second.stdout()).unwrap().interface["Address"].starts_with("10.1.0.3/32")
    );
    assert_eq!(clients_json(&node)["next_local_index"], 3);
}

#[test]
fn qr_prints_a_code_and_not_the_key_in_clear() {
    let node = Node::new();
    node.init_alpha();
    let run = node.meshd(&["client", "add", "phone", "--qr"]).success();
    let out = run.stdout();
    assert!(!out.contains("PrivateKey"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let width = lines[0].chars().count();
    assert!(
        width <= 80,
        "the code must fit an 80-column terminal: {width}"
    );
    assert!(lines.iter().all(|l| l.chars().count() == width));
    assert!(out.chars().all(|c| " \n█▀▄".contains(c)), "{out}");

    // A QR reader sees the wg-quick configuration of the client that was stored.
    let text = decode_terminal_qr(&out);
    let config = parse_wg_quick(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(
        config.interface["Address"].split(',').next(),
        Some("10.1.0.2/32")
    );
    assert_eq!(
        clients_json(&node)["clients"][0]["public_key"],
        public_key_of(&config.interface["PrivateKey"])
    );
}

/// Reads a QR code drawn with half blocks (a drawn half is a light module) back to its text.
fn decode_terminal_qr(drawing: &str) -> String {
    const SCALE: usize = 4;
    let rows: Vec<Vec<char>> = drawing.lines().map(|l| l.chars().collect()).collect();
    let modules = rows[0].len();
    let light = |x: usize, y: usize| -> bool {
        let c = rows
            .get(y / 2)
            .and_then(|row| row.get(x))
            .copied()
            .unwrap_or('█');
        matches!((c, y % 2), ('█', _) | ('▀', 0) | ('▄', 1))
    };
    let side = modules * SCALE;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
        if light(x / SCALE, y / SCALE) { 255 } else { 0 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code expected in:\n{drawing}");
    let (_, text) = grids[0].decode().expect("the QR code decodes");
    text
}

#[test]
fn a_client_needs_an_initialised_node() {
    let node = Node::new();
    node.meshd(&["client", "add", "laptop"])
        .fails_with(1, &["node.json", "meshd init"]);
}
