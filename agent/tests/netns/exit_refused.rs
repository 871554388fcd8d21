//! A default route from a member that is no Internet exit, in network namespaces (needs
//! root). Two cores, alpha (the CA) and beta, admitted with real tokens; alpha is no exit.
//! Alpha has an eBGP neighbour, BIRD 2 in an "edge" namespace behind it, that announces
//! 0.0.0.0/0 and a friend's network 192.168.90.0/24; alpha's import policy takes both (its
//! own eBGP neighbours are its operator's choice) and passes them on over iBGP.
//!
//! Checked: alpha uses the default; beta takes the friend's network through alpha but refuses
//! the default (alpha's certificate does not approve it as an exit, authority rule 5), counts
//! it on alpha's session, logs the refusal once with that reason, and routes no default into
//! the mesh (its data plane has none).

#[path = "member_node.rs"]
mod member_node;

use std::path::Path;
use std::time::Duration;

use member_node::{Node, two_cores, underlay};
use meshd::api::report::PeersReport;
use netns_tests::{Bird, Namespace, connect_veth, require_root, run_checked, wait_until};

/// Bound for the eBGP session and the routes to show on both cores.
const ROUTES_TIMEOUT: Duration = Duration::from_secs(30);
const FRIEND: &str = "192.168.90.0/24";
const DEFAULT: &str = "0.0.0.0/0";
const REASON: &str = "\"alpha\" is not an approved Internet exit for IPv4";

/// alpha's side of the edge link, and BIRD's.
const ALPHA_EDGE: &str = "203.0.113.1";
const BIRD_EDGE: &str = "203.0.113.2";

const ALPHA_NEIGHBOR: &str = r#"
[[bgp.neighbor]]
name = "edge"
address = "203.0.113.2"
remote_asn = 65010
hold_time = 9
connect_retry = 1
import = { prefixes = ["0.0.0.0/0", "192.168.90.0/24"] }
"#;

fn bird_config(dir: &Path) -> String {
    format!(
        r#"log "{log}" all;
router id {BIRD_EDGE};
protocol device {{ }}
protocol static announced {{
    ipv4;
    route {DEFAULT} blackhole;
    route {FRIEND} blackhole;
}}
protocol bgp alpha {{
    local {BIRD_EDGE} as 65010;
    neighbor {ALPHA_EDGE} as 64512;
    hold time 9;
    connect retry time 1;
    ipv4 {{
        import none;
        export where proto = "announced";
    }};
}}
"#,
        log = dir.join("bird.log").display()
    )
}

/// The BGP line of beta's `meshd peers --json` for alpha: (state, accepted, refused).
fn session_with_alpha(beta: &Node) -> Option<(String, usize, usize)> {
    let json = beta.meshd(&["peers", "--json"]);
    let report: PeersReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let alpha = report.peers.into_iter().find(|p| p.name == "alpha")?;
    let bgp = alpha.bgp?;
    Some((bgp.state, bgp.accepted, bgp.refused))
}

#[test]
fn a_default_route_from_a_member_that_is_no_exit_is_refused() {
    if !require_root("a_default_route_from_a_member_that_is_no_exit_is_refused") {
        return;
    }
    let isp = underlay("xr-isp");
    let (alpha, beta) = two_cores(&isp, "xr");
    let edge = Namespace::new("xr-edge");
    connect_veth(
        &edge,
        "eth0",
        &[&format!("{BIRD_EDGE}/24")],
        &alpha.namespace,
        "edge0",
        &[&format!("{ALPHA_EDGE}/24")],
    );
    let dir = tempfile::tempdir().unwrap();
    let bird = Bird::start(&edge, dir.path(), &bird_config(dir.path()));

    // The neighbour comes with a reload, as an operator would add it.
    let mut config = std::fs::read_to_string(alpha.config()).unwrap();
    config.push_str(ALPHA_NEIGHBOR);
    std::fs::write(alpha.config(), config).unwrap();
    let pid = alpha.daemon.as_ref().expect("alpha runs").pid();
    run_checked("kill", &["-HUP", &pid.to_string()]).expect("kill -HUP meshd");

    let logs = || {
        format!(
            "alpha:\n{}\nbeta:\n{}\nBIRD:\n{}{}",
            alpha.log(),
            beta.log(),
            std::fs::read_to_string(dir.path().join("bird.log")).unwrap_or_default(),
            bird.process.log().contents()
        )
    };
    assert!(
        wait_until(ROUTES_TIMEOUT, || alpha.best_bgp_route(DEFAULT).is_some()
            && alpha.best_bgp_route(FRIEND).is_some()),
        "alpha did not take BIRD's routes: {:?}\n{}",
        alpha.routes().bgp_routes,
        logs()
    );
    // What alpha passes on from outside, beta takes, unless it is a default.
    assert!(
        wait_until(ROUTES_TIMEOUT, || beta.best_bgp_route(FRIEND).is_some()),
        "beta did not take {FRIEND} through alpha: {:?}\n{}",
        beta.routes().bgp_routes,
        logs()
    );
    assert!(
        wait_until(ROUTES_TIMEOUT, || session_with_alpha(&beta)
            .is_some_and(|(_, _, refused)| refused >= 1)),
        "beta's session with alpha counts no refusal: {:?}\n{}",
        session_with_alpha(&beta),
        logs()
    );
    assert!(
        beta.best_bgp_route(DEFAULT).is_none(),
        "beta took alpha's default: {:?}",
        beta.best_bgp_route(DEFAULT)
    );
    let routes = beta.routes();
    assert!(
        !routes
            .routes
            .iter()
            .any(|r| r.prefix.to_string() == DEFAULT),
        "beta's data plane routes a default into the mesh: {:?}",
        routes.routes
    );
    let log = beta.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("BGP route refused") && l.contains(DEFAULT))
        .collect();
    assert_eq!(refusals.len(), 1, "beta's refusals of {DEFAULT}:\n{log}");
    assert!(refusals[0].contains(REASON), "{}", refusals[0]);
}
