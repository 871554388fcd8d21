//! `meshd invite`: the token it prints, what it stores, and what it refuses.

mod cli_support;

use std::fs;

use cli_support::Node;
use meshd::state::StateDir;
use pki::{InvitationToken, NodeRole};

#[test]
fn invite_prints_only_a_token_that_pki_parses() {
    let node = Node::new();
    node.init_alpha();
    let run = node
        .meshd(&[
            "invite",
            "beta",
            "--role",
            "spoke",
            "--route",
            "192.168.42.0/24",
            "--ttl",
            "2h",
        ])
        .success();
    let stdout = run.stdout();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must be the token alone: {stdout:?}"
    );
    let token = InvitationToken::parse(stdout.trim()).expect("pki parses the token");

    let record = StateDir::new(&node.state).read_node_record().unwrap();
    assert_eq!(token.name, "beta");
    assert_eq!(token.role, NodeRole::Spoke);
    assert_eq!(
        token.core.as_deref(),
        Some("alpha"),
        "the only core is the default"
    );
    assert_eq!(
        token.lan_prefixes,
        vec!["192.168.42.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(token.endpoints, vec!["203.0.113.1:51820".to_owned()]);
    assert_eq!(
        pki::fingerprint_hex(&token.ca_fingerprint),
        record.ca_fingerprint
    );
    let ttl = token.expires_at - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::minutes(115) && ttl <= time::Duration::hours(2),
        "expires in {ttl}"
    );
    token
        .check_not_expired(time::OffsetDateTime::now_utc())
        .unwrap();
    assert!(run.stderr().contains("meshd join"), "{}", run.stderr());

    // The database keeps the hash of the secret, never the secret.
    let db_text = fs::read_to_string(node.state_file("ca/db.json")).unwrap();
    let secret = serde_json::to_string(&token.secret).unwrap();
    assert!(
        !db_text.contains(secret.trim_matches('"')),
        "secret stored in db.json"
    );
    let db = StateDir::new(&node.state).read_ca_db().unwrap();
    assert_eq!(db.invitations.len(), 1);
    assert_eq!(db.invitations[0].secret_hash, token.secret.hash());
    assert!(!db.invitations[0].used);
}

#[test]
fn core_invitation_has_no_core_and_defaults_to_24h() {
    let node = Node::new();
    node.init_alpha();
    let run = node.meshd(&["invite", "gamma", "--role", "core"]).success();
    let token = InvitationToken::parse(run.stdout().trim()).unwrap();
    assert_eq!(token.role, NodeRole::Core);
    assert_eq!(token.core, None);
    let ttl = token.expires_at - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::hours(23) && ttl <= time::Duration::hours(24),
        "{ttl}"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let node = Node::new();
    node.init_alpha();
    node.meshd(&["invite", "alpha", "--role", "core"])
        .fails_with(1, &["NAME", "\"alpha\" is already in the mesh"]);
    node.meshd(&["invite", "beta", "--role", "spoke"]).success();
    node.meshd(&["invite", "beta", "--role", "core"])
        .fails_with(1, &["NAME", "\"beta\" already has an invitation"]);
    let db = StateDir::new(&node.state).read_ca_db().unwrap();
    assert_eq!(
        db.invitations.len(),
        1,
        "a refused invite must not be stored"
    );
}

#[test]
fn spoke_needs_a_known_core() {
    let node = Node::new();
    node.init_alpha();
    node.meshd(&["invite", "beta", "--role", "spoke", "--core", "zeta"])
        .fails_with(1, &["--core", "no core named \"zeta\"", "alpha"]);
    node.meshd(&["invite", "beta", "--role", "core", "--core", "alpha"])
        .fails_with(1, &["--core", "only a spoke"]);
    // A core that is invited but has not joined cannot take spokes yet.
    node.meshd(&["invite", "gamma", "--role", "core"]).success();
    node.meshd(&["invite", "delta", "--role", "spoke", "--core", "gamma"])
        .fails_with(1, &["--core", "has not joined yet"]);
    node.meshd(&["invite", "delta", "--role", "spoke", "--core", "alpha"])
        .success();
}

#[test]
fn routes_must_be_networks_that_overlap_nothing() {
    let node = Node::new();
    node.init_alpha();
    node.meshd(&[
        "invite",
        "beta",
        "--role",
        "spoke",
        "--route",
        "192.168.42.0/24",
    ])
    .success();
    for (route, needle) in [
        ("192.168.42.128/25", "192.168.42.0/24"),
        ("10.7.0.0/16", "mesh IPv4 pool"),
        ("0.0.0.0/0", "mesh IPv4 pool"),
        ("192.168.1.1/24", "did you mean 192.168.1.0/24"),
    ] {
        node.meshd(&["invite", "gamma", "--role", "spoke", "--route", route])
            .fails_with(1, &["--route", needle]);
    }
    node.meshd(&[
        "invite",
        "gamma",
        "--role",
        "spoke",
        "--route",
        "172.16.0.0/16",
        "--route",
        "172.16.5.0/24",
    ])
    .fails_with(1, &["--route", "given earlier"]);
    node.meshd(&[
        "invite",
        "gamma",
        "--role",
        "spoke",
        "--route",
        "192.168.43.0/24",
    ])
    .success();
}

#[test]
fn invite_needs_the_ca_and_a_matching_config() {
    let node = Node::new();
    node.meshd(&["invite", "beta", "--role", "core"])
        .fails_with(1, &["ca/db.json", "does not hold the mesh CA"]);

    node.init_alpha();
    let other = Node::new();
    other
        .meshd(&[
            "init",
            "--name",
            "omega",
            "--endpoint",
            "198.51.100.1:51820",
        ])
        .success();
    let mixed = [
        "--config",
        other.config.to_str().unwrap(),
        "--state-dir",
        node.state.to_str().unwrap(),
        "invite",
        "beta",
        "--role",
        "core",
    ];
    cli_support::meshd(&mixed).fails_with(1, &["\"omega\"", "\"alpha\"", "--state-dir"]);
}

#[test]
fn a_route_covering_an_underlay_endpoint_is_refused_with_the_reason() {
    let node = Node::new();
    node.init_alpha();
    // alpha is reached at 203.0.113.1:51820.
    node.meshd(&[
        "invite",
        "beta",
        "--role",
        "core",
        "--route",
        "203.0.113.0/24",
    ])
    .fails_with(
        1,
        &[
            "--route",
            "203.0.113.0/24 covers 203.0.113.1",
            "alpha",
            "underlay",
        ],
    );
    node.meshd(&[
        "invite",
        "beta",
        "--role",
        "core",
        "--route",
        "192.168.42.0/24",
    ])
    .success();
}

#[test]
fn exit_and_anycast_approvals_are_recorded_and_checked() {
    let node = Node::new();
    node.init_alpha();
    let run = node
        .meshd(&[
            "invite",
            "beta",
            "--role",
            "core",
            "--exit",
            "--anycast",
            "203.0.113.53/32",
        ])
        .success();
    assert!(
        run.stderr()
            .contains("may serve as an Internet exit for IPv4 and IPv6, shares 203.0.113.53/32"),
        "{}",
        run.stderr()
    );
    let db = StateDir::new(node.state_file("")).read_ca_db().unwrap();
    let approvals = &db.invitations.last().unwrap().approvals;
    assert!(approvals.exit_ipv4 && approvals.exit_ipv6);
    assert_eq!(approvals.anycast, ["203.0.113.53/32".parse().unwrap()]);

    // Another node may share the very same prefix, but not overlap it or a LAN.
    node.meshd(&[
        "invite",
        "gamma",
        "--role",
        "core",
        "--exit",
        "ipv6",
        "--anycast",
        "203.0.113.53/32",
    ])
    .success();
    let db = StateDir::new(node.state_file("")).read_ca_db().unwrap();
    let gamma = &db.invitations.last().unwrap().approvals;
    assert!(!gamma.exit_ipv4 && gamma.exit_ipv6);
    for (anycast, needle) in [
        ("203.0.113.0/24", "shared by beta"),
        ("0.0.0.0/0", "--exit"),
        ("10.7.0.1/32", "mesh IPv4 pool"),
    ] {
        node.meshd(&["invite", "delta", "--role", "core", "--anycast", anycast])
            .fails_with(1, &["--anycast", needle]);
    }
}
