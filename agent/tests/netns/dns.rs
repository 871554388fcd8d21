//! A static peer configured by DNS name (needs root): dnsmasq in a namespace of its own serves
//! beta's name with a 1 s TTL, alpha's namespace resolves through it
//! (/etc/netns/NS/resolv.conf), and beta alone knows no endpoint of alpha, so only DNS can
//! bring alpha to beta. Then beta moves to a new underlay address and the record follows:
//! alpha reaches beta at the new address through the tunnel, without a restart or a reload.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use meshd::state::StateDir;
use netns_tests::{
    ChildGuard, Dnsmasq, MeshdNode, Namespace, NetnsResolvConf, connect_veth, ip, require_root,
    run_with_timeout, wait_until,
};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const NAME: &str = "beta.mesh.test";

fn node(name: &str, endpoint: &str, addresses: &[&str]) -> MeshdNode {
    MeshdNode::with_addresses(Path::new(MESHD), name, endpoint, addresses)
}

/// Namespaces PREFIX-a and PREFIX-b on one underlay (alpha 198.51.100.1, beta .2), and a
/// dnsmasq in its own namespace answering NAME with beta's address (TTL 1 s) that alpha's
/// namespace resolves through.
fn world(prefix: &str, label: &str) -> (Namespace, Namespace, Namespace, Dnsmasq, NetnsResolvConf) {
    let ns_a = Namespace::new(&format!("{prefix}a"));
    let ns_b = Namespace::new(&format!("{prefix}b"));
    let ns_d = Namespace::new(&format!("{prefix}d"));
    connect_veth(
        &ns_a,
        "ulb",
        &["198.51.100.1/24"],
        &ns_b,
        "ul0",
        &["198.51.100.2/24"],
    );
    connect_veth(
        &ns_a,
        "uld",
        &["203.0.113.1/24"],
        &ns_d,
        "ul0",
        &["203.0.113.53/24"],
    );
    let server = ip("203.0.113.53");
    let dnsmasq = Dnsmasq::start(
        label,
        (server, 53).into(),
        1,
        &[(NAME, ip("198.51.100.2"))],
        Some(ns_d.name()),
    );
    let resolv = NetnsResolvConf::write(ns_a.name(), server);
    (ns_a, ns_b, ns_d, dnsmasq, resolv)
}

/// beta moves: a new address, the record follows, the old address goes; when the record changed.
fn move_beta(ns_b: &Namespace, dnsmasq: &mut Dnsmasq) -> Instant {
    // Without promote_secondaries, deleting the first address of the subnet deletes the
    // second one too.
    ns_b.set_sysctl("net/ipv4/conf/ul0/promote_secondaries", "1");
    ns_b.ip(&["address", "add", "198.51.100.22/24", "dev", "ul0"]);
    dnsmasq.set_records(&[(NAME, ip("198.51.100.22"))]);
    let moved = Instant::now();
    ns_b.ip(&["address", "del", "198.51.100.2/24", "dev", "ul0"]);
    moved
}

#[test]
fn a_peer_named_in_dns_is_followed_to_its_new_address() {
    if !require_root("a_peer_named_in_dns_is_followed_to_its_new_address") {
        return;
    }
    let (ns_a, ns_b, _ns_d, mut dnsmasq, _resolv) = world("dns", "mesh");

    let mut alpha = node("alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
    let mut beta = node("beta", "198.51.100.2:51820", &["10.2.0.1/16"]);
    alpha.add_peer_node(
        &beta,
        &[&format!("{NAME}:51820")],
        &["10.2.0.0/16"],
        Some(1),
    );
    beta.add_peer_node(&alpha, &[], &["10.1.0.0/16"], None);
    let mut config = std::fs::read_to_string(alpha.config_path()).unwrap();
    config.push_str("\n[dns]\nmin_ttl = 1\n");
    std::fs::write(alpha.config_path(), config).unwrap();
    alpha.start(&ns_a);
    beta.start(&ns_b);
    assert!(
        ns_a.ping_until(ip("10.2.0.1"), Duration::from_secs(10)),
        "alpha cannot reach beta by name:\n{}\n{}",
        alpha.log(),
        dnsmasq.log()
    );

    let moved = move_beta(&ns_b, &mut dnsmasq);
    let reached = ns_a.ping_until(ip("10.2.0.1"), Duration::from_secs(10));
    let took = moved.elapsed();
    assert!(
        reached,
        "alpha lost beta after the move:\n{}\n{}",
        alpha.log(),
        alpha.command(&["peers"])
    );
    eprintln!("beta reached at its new address {took:?} after the record changed");
    assert!(
        alpha.log().contains("198.51.100.22"),
        "alpha never logged the new answer:\n{}",
        alpha.log()
    );
    drop(dnsmasq);
}

/// `meshd ARGS` inside `namespace` with the files under `dir`; its stdout, or the failure.
fn meshd_in(namespace: &Namespace, dir: &Path, rest: &[&str]) -> Result<String, String> {
    let config = dir.join("meshd.toml").display().to_string();
    let state = dir.join("state").display().to_string();
    let mut args = vec!["netns", "exec", namespace.name(), MESHD];
    args.extend(["--config", &config, "--state-dir", &state]);
    args.extend_from_slice(rest);
    run_with_timeout("ip", &args, Duration::from_secs(60))
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .map_err(|error| error.to_string())
}

/// `meshd run` in `namespace`, once it says it runs.
fn run_in(namespace: &Namespace, dir: &Path) -> ChildGuard {
    let config = dir.join("meshd.toml").display().to_string();
    let state = dir.join("state").display().to_string();
    let mut daemon = namespace.spawn(
        "meshd",
        MESHD,
        &["--config", &config, "--state-dir", &state, "run"],
        &[("RUST_LOG", "info")],
    );
    let up = wait_until(Duration::from_secs(10), || {
        daemon.try_exit_status().is_none() && daemon.log().contents().contains("meshd running")
    });
    assert!(up, "meshd did not start:\n{}", daemon.log().contents());
    daemon
}

/// The node's overlay IPv4 address, from the node.json its init or join wrote.
fn overlay_v4(dir: &Path) -> IpAddr {
    let record = StateDir::new(dir.join("state"))
        .read_node_record()
        .expect("node.json after init or join");
    IpAddr::V4(record.allocation.ipv4_address)
}

/// alpha founds a mesh in `ns_a` (`alpha_config` appended to its meshd.toml) and runs; beta
/// joins it from `ns_b` advertising `beta_endpoint` and runs. Their directories and daemons.
fn alpha_and_beta(
    ns_a: &Namespace,
    ns_b: &Namespace,
    alpha_config: &str,
    beta_endpoint: &str,
) -> (tempfile::TempDir, tempfile::TempDir, ChildGuard, ChildGuard) {
    let dir_a = tempfile::tempdir().expect("a temporary directory");
    let dir_b = tempfile::tempdir().expect("a temporary directory");
    let out = meshd_in(
        ns_a,
        dir_a.path(),
        &[
            "init",
            "--name",
            "alpha",
            "--endpoint",
            "198.51.100.1:51820",
        ],
    );
    assert!(out.is_ok(), "init: {out:?}");
    let config = dir_a.path().join("meshd.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(alpha_config);
    std::fs::write(&config, text).unwrap();
    let alpha = run_in(ns_a, dir_a.path());
    let token =
        meshd_in(ns_a, dir_a.path(), &["invite", "beta", "--role", "core"]).expect("invite");
    let out = meshd_in(
        ns_b,
        dir_b.path(),
        &["join", token.trim(), "--endpoint", beta_endpoint],
    );
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("Joined mesh")),
        "beta cannot join: {out:?}\n{}",
        alpha.log().contents()
    );
    let beta = run_in(ns_b, dir_b.path());
    (dir_a, dir_b, alpha, beta)
}

/// A member (not a `[[peer]]`) whose signed record advertises a DNS name: beta joins alpha's
/// mesh with `--endpoint beta.mesh.test:51820`, alpha resolves it through dnsmasq, and when
/// beta moves and the record follows, alpha's tunnel follows the new answer while both run.
#[test]
fn a_member_endpoint_named_in_dns_is_followed_to_its_new_address() {
    if !require_root("a_member_endpoint_named_in_dns_is_followed_to_its_new_address") {
        return;
    }
    let (ns_a, ns_b, _ns_d, mut dnsmasq, _resolv) = world("dnm", "member");
    let endpoint = format!("{NAME}:51820");
    let (dir_a, dir_b, alpha, beta) =
        alpha_and_beta(&ns_a, &ns_b, "\n[dns]\nmin_ttl = 1\n", &endpoint);
    let beta_overlay = overlay_v4(dir_b.path());
    assert!(
        ns_a.ping_until(beta_overlay, Duration::from_secs(20)),
        "alpha cannot reach beta by its member name:\n{}\n{}\n{}",
        alpha.log().contents(),
        beta.log().contents(),
        dnsmasq.log()
    );

    let moved = move_beta(&ns_b, &mut dnsmasq);
    let followed = wait_until(Duration::from_secs(15), || {
        meshd_in(&ns_a, dir_a.path(), &["peers"]).is_ok_and(|p| p.contains("198.51.100.22"))
    });
    let took = moved.elapsed();
    assert!(
        followed && ns_a.ping_until(beta_overlay, Duration::from_secs(10)),
        "alpha lost beta after the move:\n{}\n{:?}",
        alpha.log().contents(),
        meshd_in(&ns_a, dir_a.path(), &["peers"])
    );
    eprintln!("member beta followed to its new address {took:?} after the record changed");
    // The tunnel may follow beta's packets from the new address (roaming) before the record's
    // TTL runs out: the resolver's answer comes within the TTL (1 s) plus a poll, not first.
    let resolved = wait_until(Duration::from_secs(10), || {
        alpha
            .log()
            .contents()
            .lines()
            .any(|l| l.contains("endpoint name resolved") && l.contains("198.51.100.22"))
    });
    let log = alpha.log().contents();
    assert!(
        resolved,
        "alpha's resolver never gave the new answer:\n{log}"
    );
    assert!(!log.contains("panicked"), "alpha:\n{log}");
    drop(beta);
    drop(dnsmasq);
}

/// The endpoints alpha takes from its members' records for `peer` (`meshd peers --json`).
fn configured_endpoints(ns: &Namespace, dir: &Path, peer: &str) -> Vec<String> {
    let out = meshd_in(ns, dir, &["peers", "--json"]).unwrap_or_default();
    let report: meshd::api::report::PeersReport = match serde_json::from_str(&out) {
        Ok(report) => report,
        Err(_) => return Vec::new(),
    };
    report
        .peers
        .into_iter()
        .filter(|p| p.name == peer)
        .flat_map(|p| p.configured_endpoints)
        .map(|e| e.to_string())
        .collect()
}

/// `[node] endpoints` at SIGHUP: beta (a member) moves to a new address and reloads its
/// edited config; alpha learns the new endpoint from beta's re-signed record (not from
/// traffic), and the tunnel between them carries on without a restart.
#[test]
fn a_members_new_endpoints_spread_at_sighup() {
    if !require_root("a_members_new_endpoints_spread_at_sighup") {
        return;
    }
    let (ns_a, ns_b, _ns_d, _dnsmasq, _resolv) = world("dnr", "reload");
    let (dir_a, dir_b, alpha, mut beta) = alpha_and_beta(&ns_a, &ns_b, "", "198.51.100.2:51820");
    assert!(
        wait_until(Duration::from_secs(20), || {
            configured_endpoints(&ns_a, dir_a.path(), "beta") == ["198.51.100.2:51820"]
        }),
        "alpha never took beta's first endpoint:\n{}",
        alpha.log().contents()
    );

    ns_b.ip(&["address", "add", "198.51.100.22/24", "dev", "ul0"]);
    let config = dir_b.path().join("meshd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("198.51.100.2:51820"), "{text}");
    std::fs::write(
        &config,
        text.replace("198.51.100.2:51820", "198.51.100.22:51820"),
    )
    .unwrap();
    let reloaded = Instant::now();
    beta.signal(netns_tests::Signal::SIGHUP);
    let spread = wait_until(Duration::from_secs(15), || {
        configured_endpoints(&ns_a, dir_a.path(), "beta") == ["198.51.100.22:51820"]
    });
    let took = reloaded.elapsed();
    let beta_log = beta.log().contents();
    assert!(
        spread,
        "alpha never took beta's new endpoint:\n{}\n{beta_log}",
        alpha.log().contents()
    );
    eprintln!("beta's new endpoint reached alpha {took:?} after SIGHUP");
    assert!(
        beta_log.contains("advertising new node endpoints"),
        "{beta_log}"
    );
    assert!(!beta_log.contains("restart meshd to apply"), "{beta_log}");
    let beta_overlay = overlay_v4(dir_b.path());
    assert!(
        ns_a.ping_until(beta_overlay, Duration::from_secs(10)),
        "the tunnel to beta broke after the reload:\n{}\n{beta_log}",
        alpha.log().contents()
    );
}
