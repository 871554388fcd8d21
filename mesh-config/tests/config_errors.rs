//! One test per diagnostic a user can get from `meshd.toml`: the message, the key and
//! the position must all point at the mistake.

use std::path::Path;

use mesh_config::{ConfigError, Role, parse};

const FILE: &str = "/etc/meshd/meshd.toml";
const NODE: &str = "[node]\nname = \"alpha\"\nrole = \"core\"\n";
const KEY_B: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const KEY_C: &str = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";

/// Every diagnostic line for `text`, which must be invalid.
fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new(FILE)) {
        Ok(config) => panic!("accepted invalid config: {config:?}"),
        Err(error) => {
            let lines: Vec<String> = error.diagnostics().iter().map(|d| d.to_string()).collect();
            assert_eq!(error.to_string(), lines.join("\n"));
            lines
        }
    }
}

/// The single diagnostic for `text`.
fn error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "expected one diagnostic, got {all:#?}");
    all.into_iter().next().unwrap()
}

fn with_node(rest: &str) -> String {
    format!("{NODE}{rest}")
}

#[test]
fn valid_config_parses() {
    let text = with_node(&format!(
        "endpoints = [\"vpn.example.net:51820\", \"[2001:db8::1]:51820\"]\n\
         [mesh]\npool6 = \"fd12:3456:789a::/48\"\nnative6 = \"2001:db8:1:2::/64\"\n\
         [routing]\nlan_prefixes = [\"192.168.42.0/24\", \"192.168.43.0/24\"]\n\
         [[bgp.neighbor]]\nname = \"mikrotik\"\naddress = \"192.168.42.1\"\nremote_asn = 65010\n\
         import = {{ prefixes = [\"192.168.50.0/24 le 28\"], default = \"reject\" }}\n\
         [[peer]]\nname = \"beta\"\npublic_key = \"{KEY_B}\"\nallowed_prefixes = [\"10.2.0.0/16\"]\n\
         [[peer]]\nname = \"gamma\"\npublic_key = \"{KEY_C}\"\nallowed_prefixes = [\"10.3.0.0/16\"]\n"
    ));
    let config = parse(&text, Path::new(FILE)).unwrap();
    assert_eq!(config.node.role, Role::Core);
    assert_eq!(config.peers.len(), 2);
    // What `meshd init` writes must load again.
    let again = parse(&config.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, config);
}

#[test]
fn io_error_names_the_file() {
    let err = mesh_config::load(Path::new("/nonexistent/meshd.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/meshd.toml: cannot read config: "),
        "{err}"
    );
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("mesh-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("meshd.toml");
    std::fs::write(&path, with_node("[mesh]\npool4 = \"10.0.0.1/8\"\n")).unwrap();
    let err = mesh_config::load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        err,
        format!(
            "{}:5:9: mesh.pool4: \"10.0.0.1/8\" is not a network address (did you mean 10.0.0.0/8?)",
            path.display()
        )
    );
}

#[test]
fn toml_syntax_error() {
    let e = error("[node\nname = \"a\"\n");
    assert!(e.starts_with("/etc/meshd/meshd.toml:1:6: "), "{e}");
    assert!(e.contains("unclosed table"), "{e}");
}

#[test]
fn duplicate_key_is_named() {
    assert_eq!(
        error(&with_node(
            "[mesh]\npool4 = \"10.0.0.0/8\"\npool4 = \"10.0.0.0/8\"\n"
        )),
        "/etc/meshd/meshd.toml:6:1: duplicate key `pool4`"
    );
}

#[test]
fn pool4_with_host_bits() {
    assert_eq!(
        error(&with_node("[mesh]\npool4 = \"10.0.0.1/8\"\n")),
        "/etc/meshd/meshd.toml:5:9: mesh.pool4: \"10.0.0.1/8\" is not a network address (did you mean 10.0.0.0/8?)"
    );
}

#[test]
fn unparsable_prefix_names_value_and_expected_form() {
    assert_eq!(
        error(&with_node("[mesh]\npool4 = \"10.0.0.300/8\"\n")),
        "/etc/meshd/meshd.toml:5:9: mesh.pool4: \"10.0.0.300/8\" is not an IPv4 prefix such as 10.0.0.0/8"
    );
    let e = error(&with_node(
        "[routing]\nlan_prefixes = [\"192.168.42.0/24\", \"lan\"]\n",
    ));
    assert!(
        e.starts_with(
            "/etc/meshd/meshd.toml:5:36: routing.lan_prefixes[1]: \"lan\" is not an IP prefix"
        ),
        "{e}"
    );
}

#[test]
fn unknown_key_with_position() {
    assert_eq!(
        error(&with_node("[mesh]\npool4 = \"10.0.0.0/8\"\npool7 = 1\n")),
        "/etc/meshd/meshd.toml:6:1: mesh.pool7: unknown key `pool7`, expected one of `pool4`, `node_prefix_len4`, `pool6`, `native6`"
    );
    let e = error(&with_node(&format!(
        "[[peer]]\nname = \"b\"\npublic_key = \"{KEY_B}\"\nkeepalive = 5\n"
    )));
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:7:1: peer[0].keepalive: unknown key `keepalive`"),
        "{e}"
    );
    let e = error("colour = \"blue\"\n[node]\nname = \"a\"\nrole = \"core\"\n");
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:1:1: colour: unknown key"),
        "{e}"
    );
}

#[test]
fn missing_required_keys() {
    assert_eq!(
        error("[mesh]\n"),
        "/etc/meshd/meshd.toml:1:1: node: required key is missing"
    );
    assert_eq!(
        error(&with_node("[[peer]]\nname = \"b\"\n")),
        "/etc/meshd/meshd.toml:4:1: peer[0].public_key: required key is missing"
    );
}

#[test]
fn wrong_types_and_ranges() {
    assert_eq!(
        error("[node]\nname = \"a\"\nrole = \"core\"\nlisten_port = 70000\n"),
        "/etc/meshd/meshd.toml:4:15: node.listen_port: invalid value: integer `70000`, expected an integer from 0 to 65535"
    );
    let e = error("[node]\nname = \"a\"\nrole = \"router\"\n");
    assert_eq!(
        e,
        "/etc/meshd/meshd.toml:3:8: node.role: unknown variant `router`, expected `core` or `spoke`"
    );
    assert_eq!(
        error("node = 5\n"),
        "/etc/meshd/meshd.toml:1:8: node: invalid type: integer `5`, expected a table"
    );
    assert_eq!(
        error("[node]\nname = \"a\"\nrole = [\"core\"]\n"),
        "/etc/meshd/meshd.toml:3:8: node.role: expected a string"
    );
    let e = error(&with_node("[peer]\nname = \"b\"\n"));
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:4:1: peer: invalid type: table, expected an array"),
        "{e}"
    );
}

#[test]
fn invalid_node_name() {
    assert_eq!(
        error("[node]\nname = \"Alpha\"\nrole = \"core\"\n"),
        "/etc/meshd/meshd.toml:2:8: node.name: \"Alpha\" contains 'A'; only lowercase letters a-z, digits 0-9 and '-' are allowed"
    );
    let e = error("[node]\nname = \"\"\nrole = \"core\"\n");
    assert_eq!(e, "/etc/meshd/meshd.toml:2:8: node.name: name is empty");
}

#[test]
fn listen_port_zero() {
    let e = error(&with_node("listen_port = 0\n"));
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:4:15: node.listen_port: port 0 is not allowed"),
        "{e}"
    );
}

#[test]
fn endpoint_port_zero_and_bad_hosts() {
    assert_eq!(
        error(&with_node("endpoints = [\"vpn.example.net:0\"]\n")),
        "/etc/meshd/meshd.toml:4:14: node.endpoints[0]: \"vpn.example.net:0\": port \"0\" is not a number from 1 to 65535"
    );
    let e = error(&with_node("endpoints = [\"2001:db8::1:51820\"]\n"));
    assert!(
        e.contains("node.endpoints[0]: \"2001:db8::1:51820\" is an IPv6 address without brackets"),
        "{e}"
    );
    let e = error(&with_node("endpoints = [\"vpn_1.example.net:51820\"]\n"));
    assert!(e.contains("node.endpoints[0]: \"vpn_1.example.net:51820\": host name \"vpn_1.example.net\" contains '_'"), "{e}");
}

#[test]
fn duplicate_endpoint() {
    assert_eq!(
        error(&with_node(
            "endpoints = [\"vpn.example.net:51820\", \"203.0.113.1:51820\", \"vpn.example.net:51820\"]\n"
        )),
        "/etc/meshd/meshd.toml:4:60: node.endpoints[2]: duplicate endpoint vpn.example.net:51820 (same as node.endpoints[0])"
    );
}

#[test]
fn interface_name_and_mtu() {
    assert_eq!(
        error(&with_node("[interface]\nname = \"a-very-long-ifname\"\n")),
        "/etc/meshd/meshd.toml:5:8: interface.name: interface name \"a-very-long-ifname\" is 18 bytes long; Linux allows at most 15"
    );
    assert_eq!(
        error(&with_node("[interface]\nmtu = 1279\n")),
        "/etc/meshd/meshd.toml:5:7: interface.mtu: MTU 1279 is out of range; expected 1280 to 9000 (IPv6 needs at least 1280)"
    );
    assert!(error(&with_node("[interface]\nmtu = 9001\n")).contains("MTU 9001 is out of range"));
    assert!(parse(&with_node("[interface]\nmtu = 9000\n"), Path::new(FILE)).is_ok());
}

#[test]
fn node_prefix_len4_bounds() {
    let e = error(&with_node(
        "[mesh]\npool4 = \"10.0.0.0/16\"\nnode_prefix_len4 = 16\n",
    ));
    assert_eq!(
        e,
        "/etc/meshd/meshd.toml:6:20: mesh.node_prefix_len4: 16 is out of range; node prefixes must be longer than pool4's /16 and at most /30"
    );
    assert!(error(&with_node("[mesh]\nnode_prefix_len4 = 31\n")).contains("31 is out of range"));
    assert!(
        parse(
            &with_node("[mesh]\nnode_prefix_len4 = 30\n"),
            Path::new(FILE)
        )
        .is_ok()
    );
}

#[test]
fn pool6_size_and_host_bits() {
    assert_eq!(
        error(&with_node("[mesh]\npool6 = \"fd12:3456:789a:1::/64\"\n")),
        "/etc/meshd/meshd.toml:5:9: mesh.pool6: fd12:3456:789a:1::/64 is too small; the mesh IPv6 pool must be a /48 or shorter (each core gets a /64 from it)"
    );
    assert!(
        error(&with_node("[mesh]\npool6 = \"fd12:3456:789a::1/48\"\n"))
            .contains("did you mean fd12:3456:789a::/48?")
    );
    assert!(
        parse(
            &with_node("[mesh]\npool6 = \"2001:db8::/32\"\n"),
            Path::new(FILE)
        )
        .is_ok()
    );
}

#[test]
fn native6_rules() {
    let e = error(&with_node(
        "[mesh]\npool6 = \"fd12:3456:789a::/48\"\nnative6 = \"fd12:3456:789a:5::/64\"\n",
    ));
    assert!(e.starts_with("/etc/meshd/meshd.toml:6:11: mesh.native6: fd12:3456:789a:5::/64 lies inside mesh.pool6 fd12:3456:789a::/48"), "{e}");
    let e = error(&with_node("[mesh]\nnative6 = \"2001:db8:1::/48\"\n"));
    assert!(
        e.contains("mesh.native6: 2001:db8:1::/48 must be a /64"),
        "{e}"
    );
    let e =
        error("[node]\nname = \"a\"\nrole = \"spoke\"\n[mesh]\nnative6 = \"2001:db8:1:2::/64\"\n");
    assert!(
        e.contains("mesh.native6: only a core has a native /64"),
        "{e}"
    );
}

#[test]
fn lan_prefix_overlaps() {
    let all = errors(&with_node(
        "[mesh]\npool6 = \"fd12:3456:789a::/48\"\n[routing]\nlan_prefixes = [\"10.99.0.0/16\", \"192.168.0.0/16\", \"192.168.42.0/24\", \"fd12:3456:789a:ff::/64\", \"192.168.1.1/24\"]\n",
    ));
    assert_eq!(
        all,
        [
            "/etc/meshd/meshd.toml:7:17: routing.lan_prefixes[0]: 10.99.0.0/16 overlaps mesh.pool4 10.0.0.0/8; mesh addresses are allocated from there",
            "/etc/meshd/meshd.toml:7:51: routing.lan_prefixes[2]: 192.168.42.0/24 overlaps lan_prefixes[1] 192.168.0.0/16",
            "/etc/meshd/meshd.toml:7:70: routing.lan_prefixes[3]: fd12:3456:789a:ff::/64 overlaps mesh.pool6 fd12:3456:789a::/48; mesh addresses are allocated from there",
            "/etc/meshd/meshd.toml:7:96: routing.lan_prefixes[4]: \"192.168.1.1/24\" is not a network address (did you mean 192.168.1.0/24?)",
        ]
    );
}

#[test]
fn reserved_asns() {
    for (asn, words) in [
        (0u64, "ASN 0 is reserved"),
        (23456, "AS_TRANS"),
        (65535, "ASN 65535 is reserved"),
        (4294967295, "ASN 4294967295 is reserved"),
    ] {
        let e = error(&with_node(&format!("[routing]\nasn = {asn}\n")));
        assert!(
            e.starts_with("/etc/meshd/meshd.toml:5:7: routing.asn: "),
            "{e}"
        );
        assert!(e.contains(words), "{e}");
    }
    let e = error(&with_node(
        "[[bgp.neighbor]]\nname = \"x\"\naddress = \"192.0.2.1\"\nremote_asn = 23456\n",
    ));
    assert!(
        e.starts_with(
            "/etc/meshd/meshd.toml:7:14: bgp.neighbor[0].remote_asn: ASN 23456 is AS_TRANS"
        ),
        "{e}"
    );
    assert!(
        error(&with_node("[routing]\nasn = 4294967296\n"))
            .contains("expected an integer from 0 to 4294967295")
    );
}

#[test]
fn bgp_neighbor_problems() {
    let all = errors(&with_node(
        "[[bgp.neighbor]]\nname = \"x\"\naddress = \"192.0.2.1\"\nremote_asn = 65001\n\
         [[bgp.neighbor]]\nname = \"x\"\naddress = \"192.0.2.1\"\nremote_asn = 65002\n",
    ));
    assert_eq!(
        all,
        [
            "/etc/meshd/meshd.toml:9:8: bgp.neighbor[1].name: duplicate name x (same as bgp.neighbor[0].name)",
            "/etc/meshd/meshd.toml:10:11: bgp.neighbor[1].address: duplicate address 192.0.2.1 (same as bgp.neighbor[0].address)",
        ]
    );
    let e = error(&with_node(
        "[[bgp.neighbor]]\nname = \"x\"\naddress = \"192.0.2.1\"\nremote_asn = 65001\nexport = { prefixes = [\"10.0.0.0/8 le 33\"] }\n",
    ));
    assert!(e.starts_with("/etc/meshd/meshd.toml:8:24: bgp.neighbor[0].export.prefixes[0]: \"10.0.0.0/8 le 33\": le 33 must be between 8 and 32"), "{e}");
    let e = error(&with_node(
        "[[bgp.neighbor]]\nname = \"x\"\naddress = \"router\"\nremote_asn = 65001\n",
    ));
    assert!(
        e.contains("bgp.neighbor[0].address: \"router\" is not an IP address such as 192.168.42.1"),
        "{e}"
    );
}

#[test]
fn peer_key_not_32_bytes() {
    assert_eq!(
        error(&with_node(
            "[[peer]]\nname = \"b\"\npublic_key = \"AAAA\"\n"
        )),
        "/etc/meshd/meshd.toml:6:14: peer[0].public_key: key decodes to 3 bytes; a WireGuard key is 32 bytes (44 base64 characters)"
    );
    let e = error(&with_node(
        "[[peer]]\nname = \"b\"\npublic_key = \"not a key!\"\n",
    ));
    assert!(
        e.contains("peer[0].public_key: \"not a key!\" is not valid base64"),
        "{e}"
    );
}

#[test]
fn duplicate_peer_name_and_key() {
    let peer =
        |name: &str, key: &str| format!("[[peer]]\nname = \"{name}\"\npublic_key = \"{key}\"\n");
    let all = errors(&with_node(&format!(
        "{}{}{}",
        peer("beta", KEY_B),
        peer("beta", KEY_C),
        peer("gamma", KEY_B)
    )));
    assert_eq!(
        all,
        [
            "/etc/meshd/meshd.toml:8:8: peer[1].name: duplicate name beta (same as peer[0].name)",
            format!("/etc/meshd/meshd.toml:12:14: peer[2].public_key: duplicate public key {KEY_B} (same as peer[0].public_key)").as_str(),
        ]
    );
    let e = error(&with_node(&peer("alpha", KEY_B)));
    assert!(
        e.contains("peer[0].name: peer \"alpha\" has this node's own name"),
        "{e}"
    );
}

#[test]
fn peer_prefixes_endpoints_and_keepalive() {
    let all = errors(&with_node(&format!(
        "[[peer]]\nname = \"b\"\npublic_key = \"{KEY_B}\"\nendpoints = [\"203.0.113.2:51820\", \"203.0.113.2:51820\"]\n\
         allowed_prefixes = [\"10.2.0.1/16\", \"10.3.0.0/16\"]\npersistent_keepalive = 0\n\
         [[peer]]\nname = \"c\"\npublic_key = \"{KEY_C}\"\nallowed_prefixes = [\"10.3.0.0/16\"]\n"
    )));
    assert_eq!(
        all,
        [
            "/etc/meshd/meshd.toml:7:35: peer[0].endpoints[1]: duplicate endpoint 203.0.113.2:51820 (same as peer[0].endpoints[0])",
            "/etc/meshd/meshd.toml:8:21: peer[0].allowed_prefixes[0]: \"10.2.0.1/16\" is not a network address (did you mean 10.2.0.0/16?)",
            "/etc/meshd/meshd.toml:9:24: peer[0].persistent_keepalive: 0 seconds is not an interval; leave the key out to disable keepalives",
            "/etc/meshd/meshd.toml:13:21: peer[1].allowed_prefixes[0]: 10.3.0.0/16 is already an allowed prefix of peer[0]",
        ]
    );
}

#[test]
fn all_semantic_errors_are_collected() {
    let all = errors(
        "[node]\nname = \"Bad Name\"\nrole = \"core\"\nlisten_port = 0\n\
         [interface]\nmtu = 100\n[mesh]\npool4 = \"10.0.0.1/8\"\n[routing]\nasn = 0\n",
    );
    assert_eq!(all.len(), 5, "{all:#?}");
    let keys: Vec<&str> = all.iter().map(|l| l.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        keys,
        [
            "node.name",
            "node.listen_port",
            "interface.mtu",
            "mesh.pool4",
            "routing.asn"
        ]
    );
}

#[test]
fn duplicate_interface_address() {
    assert_eq!(
        error(&with_node(
            "[interface]\naddresses = [\"10.1.0.1/16\", \"10.1.0.1/16\"]\n"
        )),
        "/etc/meshd/meshd.toml:5:29: interface.addresses[1]: duplicate address 10.1.0.1/16 (same as interface.addresses[0])"
    );
}

#[test]
fn invalid_peer_and_neighbor_names() {
    let all = errors(&with_node(&format!(
        "[[bgp.neighbor]]\nname = \"my router\"\naddress = \"192.0.2.1\"\nremote_asn = 65001\n\
         [[peer]]\nname = \"-beta\"\npublic_key = \"{KEY_B}\"\n"
    )));
    assert_eq!(
        all,
        [
            "/etc/meshd/meshd.toml:5:8: bgp.neighbor[0].name: \"my router\" contains ' '; only lowercase letters a-z, digits 0-9 and '-' are allowed",
            "/etc/meshd/meshd.toml:9:8: peer[0].name: \"-beta\" must not start or end with '-'",
        ]
    );
}

#[test]
fn metrics_listen_must_be_an_address_with_a_usable_port() {
    assert_eq!(
        error(&with_node("[metrics]\nlisten = \"localhost\"\n")),
        "/etc/meshd/meshd.toml:5:10: metrics.listen: \"localhost\" is not an address with port such as 127.0.0.1:9474 or [::1]:9474"
    );
    assert_eq!(
        error(&with_node("[metrics]\nlisten = \"127.0.0.1:0\"\n")),
        "/etc/meshd/meshd.toml:5:10: metrics.listen: port 0 is not allowed; a scraper needs a fixed port (default 9474)"
    );
    assert_eq!(
        error(&with_node("[metrics]\nlisten = \"[::1]:51820\"\n")),
        "/etc/meshd/meshd.toml:5:10: metrics.listen: port 51820 is node.listen_port, where the control plane listens on TCP; choose another port (default 9474)"
    );
    assert_eq!(
        error(&with_node("[metrics]\nenabled = \"yes\"\n")),
        "/etc/meshd/meshd.toml:5:11: metrics.enabled: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn log_level_must_name_levels_and_modules() {
    assert_eq!(
        error(&with_node("[log]\nlevel = \"verbose\"\n")),
        "/etc/meshd/meshd.toml:5:9: log.level: \"verbose\" is not a log level; expected one of off, error, warn, info, debug, trace (optionally per module: \"info,meshd::bgp=debug\")"
    );
    assert_eq!(
        error(&with_node("[log]\nlevel = \"info,meshd bgp=debug\"\n")),
        "/etc/meshd/meshd.toml:5:9: log.level: \"meshd bgp\" in \"meshd bgp=debug\" is not a module path such as meshd::bgp"
    );
    assert_eq!(
        error(&with_node("[log]\nlevel = \"\"\n")),
        "/etc/meshd/meshd.toml:5:9: log.level: empty log level; expected one of off, error, warn, info, debug, trace"
    );
    let config = parse(
        &with_node("[log]\nlevel = \"warn,meshd::bgp=DEBUG\"\n"),
        Path::new(FILE),
    )
    .unwrap();
    assert_eq!(config.log.level, "warn,meshd::bgp=DEBUG");
}
