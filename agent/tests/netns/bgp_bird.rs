//! meshd's BGP speaker against BIRD 2 (Debian package bird2), each in its own network namespace
//! joined by a veth pair (needs root; CI runs as root). meshd's neighbours come from a meshd.toml
//! with the seed's filters. One eBGP session over IPv4 carries the IPv4 routes and one over IPv6
//! the IPv6 routes; a second IPv4 session plays the seed's backup ISP; two more test TCP-MD5.
//! Checked: the sessions reach Established, except the one whose TCP-MD5 keys differ; routes
//! flow both ways in both families with the right next hops and AS paths; import policy keeps to
//! the prefix length range, drops what carries a community, sets a community where a large
//! community matched, and local-pref makes the longer path the best; export policy adds a
//! community, prepends on the backup session (seen in `birdc show route all`) and holds back what
//! it does not list (RFC 8212 default deny); a route withdrawn on either side disappears on the
//! other; and after BIRD restarts a session, it comes back with its routes.
//!
//! Then `meshd run` itself against BIRD (`refusals_are_logged_once_and_counted`): BIRD sends
//! three routes in ten UPDATEs each (nine with a new MED, then withdrawn and sent again), one
//! of them refused by a named import policy term and one carrying meshd's AS (an AS loop);
//! each refusal is logged once with its reason, and the counts are in `meshd routes --json`,
//! `meshd status --json`, the text table and the metrics. A route BIRD announces and withdraws
//! by turns is in `meshd routes --json` as soon as (and as long as) its kernel route is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshd::api::report::{RoutesReport, StatusReport};
use meshd::bgp::fsm::State;
use meshd::bgp::packet::Family;
use meshd::bgp::speaker::{BGP_PORT, SessionStatus, Speaker, SpeakerConfig};
use netns_tests::{ChildGuard, MeshdNode, Namespace, require_root, wait_until};
use tokio::sync::mpsc;

#[path = "../bgp_support/mod.rs"]
mod bgp_support;
use bgp_support::netns::{MESHD_V4, MESHD_V6, meshd_and_peer, neighbors, run_in};
use bgp_support::{Table, exec_in, poll_until};

const BIRD_V4: &str = "198.51.100.2";
const BIRD_V6: &str = "2001:db8:1::2";
/// The second session, as in the seed's two ISPs: BIRD at .3 to meshd at .11.
const BIRD_BACKUP: &str = "198.51.100.3";
/// TCP-MD5 sessions: BIRD at .4 with meshd's key, at .5 with another one.
const BIRD_MD5_GOOD: &str = "198.51.100.4";
const BIRD_MD5_BAD: &str = "198.51.100.5";
const MD5_KEY: &str = "correct horse battery staple";

fn bird_config(socket_dir: &std::path::Path) -> String {
    format!(
        r#"
log "{log}" all;
router id {BIRD_V4};
protocol device {{ }}
protocol static stay4 {{
    ipv4;
    route 192.168.50.0/24 blackhole;
    route 192.168.42.0/24 blackhole;
    route 192.168.0.0/17 blackhole;
    route 192.168.52.0/25 blackhole;
    route 192.168.53.0/24 blackhole;
    route 192.168.54.0/24 blackhole;
}}
protocol static gone4 {{ ipv4; route 192.168.51.0/24 blackhole; }}
protocol static stay6 {{ ipv6; route 2001:db8:50::/48 blackhole; }}
filter to_meshd {{
    if net = 192.168.53.0/24 then bgp_community.add((65010,666));
    if net = 192.168.54.0/24 then bgp_large_community.add((65010,1,7));
    # Longer than the backup path: only meshd's local-pref can make it the best.
    if net = 192.168.42.0/24 then bgp_path.prepend(65010);
    if source = RTS_STATIC then accept;
    reject;
}}
protocol bgp meshd4 {{
    local {BIRD_V4} as 65010;
    neighbor {MESHD_V4} as 65001;
    passive on;
    hold time 9;
    ipv4 {{ import all; export filter to_meshd; }};
}}
protocol bgp meshd6 {{
    local {BIRD_V6} as 65010;
    neighbor {MESHD_V6} as 65001;
    passive on;
    hold time 9;
    ipv6 {{ import all; export where source = RTS_STATIC; }};
}}
protocol bgp backup4 {{
    local {BIRD_BACKUP} as 65010;
    neighbor 198.51.100.11 as 65001;
    passive on;
    hold time 9;
    ipv4 {{ import all; export where net = 192.168.42.0/24; }};
}}
protocol bgp md5good {{
    local {BIRD_MD5_GOOD} as 65010;
    neighbor 198.51.100.12 as 65001;
    passive on;
    hold time 9;
    password "{MD5_KEY}";
    ipv4 {{ import none; export none; }};
}}
protocol bgp md5bad {{
    local {BIRD_MD5_BAD} as 65010;
    neighbor 198.51.100.13 as 65001;
    passive on;
    hold time 9;
    password "not the key meshd has";
    ipv4 {{ import none; export none; }};
}}
"#,
        log = socket_dir.join("bird.log").display()
    )
}

/// meshd's side, as meshd.toml: the seed's filters. From BIRD only /24s of 192.168/16 (and
/// IPv6 up to /64), nothing tagged 65010:666, a community for what carries large community
/// 65010:*:7, and local-pref 200 on the main session; to BIRD meshd's own prefixes with
/// community 65001:100, and on the backup session prepended 3 times.
fn meshd_bgp(key_file: &std::path::Path) -> String {
    format!(
        r#"
[[bgp.neighbor]]
name = "bird4"
address = "{BIRD_V4}"
remote_asn = 65010
hold_time = 9
connect_retry = 1
import = ["prefer", "friend-in"]
export = "to-friend"

[[bgp.neighbor]]
name = "bird6"
address = "{BIRD_V6}"
remote_asn = 65010
hold_time = 9
connect_retry = 1
import = "friend-in"
export = "to-friend"

[[bgp.neighbor]]
name = "bird4-backup"
address = "{BIRD_BACKUP}"
local_address = "198.51.100.11"
remote_asn = 65010
hold_time = 9
connect_retry = 1
import = "friend-in"
export = "to-friend-backup"

[[bgp.neighbor]]
name = "md5-good"
address = "{BIRD_MD5_GOOD}"
local_address = "198.51.100.12"
remote_asn = 65010
families = ["ipv4"]
hold_time = 9
connect_retry = 1
password_file = "{key}"

[[bgp.neighbor]]
name = "md5-bad"
address = "{BIRD_MD5_BAD}"
local_address = "198.51.100.13"
remote_asn = 65010
families = ["ipv4"]
hold_time = 9
connect_retry = 1
password = "{MD5_KEY}"

[bgp.policy.prefer]
[[bgp.policy.prefer.term]]
set.local_pref = 200
action = "next"

[bgp.policy.friend-in]
[[bgp.policy.friend-in.term]]
name = "tagged unwanted"
match.communities = ["65010:666"]
action = "reject"
[[bgp.policy.friend-in.term]]
match.large_communities = ["65010:*:7"]
set.add_communities = ["65001:7"]
action = "next"
[[bgp.policy.friend-in.term]]
match.prefixes = ["192.168.0.0/16 ge 24 le 24", "2001:db8::/32 le 64"]
action = "accept"

[bgp.policy.to-friend]
[[bgp.policy.to-friend.term]]
match.prefixes = ["10.0.0.0/8 le 24", "fd00::/8 le 64"]
set.add_communities = ["65001:100"]
action = "accept"

[bgp.policy.to-friend-backup]
[[bgp.policy.to-friend-backup.term]]
match.prefixes = ["10.0.0.0/8 le 24"]
set.prepend = 3
action = "accept"
"#,
        key = key_file.display()
    )
}

/// Starts BIRD in `namespace` with `config` written to `dir`; returns it, its config file
/// and its control socket.
fn start_bird(namespace: &Namespace, dir: &Path, config: &str) -> (ChildGuard, PathBuf, PathBuf) {
    let bird = netns_tests::Bird::start(namespace, dir, config);
    (bird.process, bird.config, bird.socket)
}

/// Runs birdc in BIRD's namespace and returns its output.
async fn birdc(namespace: &str, socket: &std::path::Path, args: &[&str]) -> String {
    let socket = socket.display().to_string();
    let mut full = vec!["-s", socket.as_str()];
    full.extend_from_slice(args);
    exec_in(namespace, "birdc", &full).await
}

/// Waits until `check` holds for BIRD's `show route PREFIX all`.
async fn bird_route_until(
    namespace: &str,
    socket: &std::path::Path,
    prefix: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let args = ["show", "route", prefix, "all"];
    poll_until(
        &format!("BIRD: {prefix} {what}"),
        || birdc(namespace, socket, &args),
        check,
    )
    .await
}

#[test]
fn bird2_interop() {
    if !require_root("bird2_interop") {
        return;
    }
    let (meshd_ns, bird_ns) = meshd_and_peer(
        "bgpbird",
        &["198.51.100.11/24", "198.51.100.12/24", "198.51.100.13/24"],
        &[
            "198.51.100.2/24",
            "2001:db8:1::2/64",
            "198.51.100.3/24",
            "198.51.100.4/24",
            "198.51.100.5/24",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (bird, _, socket) = start_bird(&bird_ns, dir.path(), &bird_config(dir.path()));
    let key_file = dir.path().join("bgp-bird.key");
    std::fs::write(&key_file, format!("{MD5_KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bird_name = bird_ns.name().to_owned();
    let socket = Arc::new(socket);
    let bgp = meshd_bgp(&key_file);
    let dir_path = dir.path().to_owned();
    run_in(
        &meshd_ns,
        move || exercise(bird_name, socket, bgp),
        move || {
            let log = std::fs::read_to_string(dir_path.join("bird.log")).unwrap_or_default();
            format!("{log}\n{}", bird.log().contents())
        },
    );
}

async fn exercise(bird: String, socket: Arc<PathBuf>, bgp: String) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut table = Table::new(rx);
    let speaker = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: MESHD_V4.parse().unwrap(),
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), BGP_PORT)],
            neighbors: neighbors(65001, &bgp),
        },
        tx,
    )
    .await
    .expect("speaker starts");
    speaker.originate("10.1.0.0/16".parse().unwrap());
    speaker.originate("fd12:3456:789a::/48".parse().unwrap());
    // Not in the export policy: BIRD must never see it.
    speaker.originate("172.16.0.0/24".parse().unwrap());

    // BIRD's routes reach meshd with BIRD as next hop and AS 65010 in the path.
    let v4 = table.wait("192.168.50.0/24", true).await.unwrap();
    assert_eq!(v4.next_hop, BIRD_V4.parse::<IpAddr>().unwrap());
    assert_eq!(v4.attrs.as_path.as_ref().unwrap().to_string(), "65010");
    let v6 = table.wait("2001:db8:50::/48", true).await.unwrap();
    assert_eq!(v6.next_hop, BIRD_V6.parse::<IpAddr>().unwrap());
    table.wait("192.168.51.0/24", true).await;

    // Every session comes up but the one whose TCP-MD5 keys differ: BIRD's kernel drops
    // meshd's SYNs, signed with another key, so that one never gets past Connect/Active.
    let sessions = poll_sessions(&speaker, |s| {
        s.iter()
            .all(|s| (s.state == State::Established) != (s.name == "md5-bad"))
    })
    .await;
    let bird_md5 = birdc(&bird, &socket, &["show", "protocols", "md5good"]).await;
    assert!(bird_md5.contains("Established"), "{bird_md5}");
    tokio::time::sleep(Duration::from_secs(2)).await; // a few more connect attempts
    for s in speaker.sessions().await {
        if s.name == "md5-bad" {
            assert_ne!(s.state, State::Established, "session with the wrong key");
        }
    }
    let families = |name: &str| {
        sessions
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.negotiated.clone())
            .unwrap()
            .families
    };
    assert_eq!(families("bird4"), vec![Family::Ipv4Unicast]);
    assert_eq!(families("bird6"), vec![Family::Ipv6Unicast]);

    // Import policy. Local-pref 200 on the main session beats the backup's shorter path.
    let main = table
        .wait_for("192.168.42.0/24", "via the main session", |b| {
            b.is_some_and(|b| b.next_hop == BIRD_V4.parse::<IpAddr>().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(main.attrs.local_pref, Some(200));
    assert_eq!(
        main.attrs.as_path.as_ref().unwrap().to_string(),
        "65010 65010"
    );
    // The large community was matched and a community set; the large one passes unchanged.
    let tagged = table.wait("192.168.54.0/24", true).await.unwrap();
    assert!(
        tagged.attrs.communities.contains(&((65001 << 16) | 7)),
        "{tagged:?}"
    );
    assert_eq!(tagged.attrs.large_communities.len(), 1, "{tagged:?}");
    // Outside the length range (/17, /25) or tagged 65010:666: never learned. BIRD sent them
    // in its first table, before the routes waited for above.
    for refused in ["192.168.0.0/17", "192.168.52.0/25", "192.168.53.0/24"] {
        assert!(!table.has(refused), "{refused} passed the import policy");
    }
    let all = speaker.routes().await;
    assert!(
        all.iter()
            .all(|(p, _)| !p.to_string().starts_with("192.168.53."))
    );

    // meshd's routes reach BIRD, via meshd's addresses, with AS 65001.
    let shown = bird_route_until(&bird, &socket, "10.1.0.0/16", "learned", |o| {
        o.contains("10.1.0.0/16") && o.contains(MESHD_V4)
    })
    .await;
    assert!(shown.contains("BGP.as_path: 65001\n"), "{shown}");
    // Export policy: the community set on the main session, our AS 1 + 3 times on the backup.
    assert!(shown.contains("BGP.community: (65001,100)"), "{shown}");
    let both = bird_route_until(&bird, &socket, "10.1.0.0/16", "via the backup too", |o| {
        o.contains("198.51.100.11")
    })
    .await;
    assert!(
        both.contains("BGP.as_path: 65001 65001 65001 65001"),
        "{both}"
    );
    bird_route_until(&bird, &socket, "fd12:3456:789a::/48", "learned", |o| {
        o.contains("fd12:3456:789a::/48") && o.contains(MESHD_V6)
    })
    .await;
    let hidden = birdc(&bird, &socket, &["show", "route", "172.16.0.0/24"]).await;
    assert!(
        !hidden.contains("172.16.0.0/24"),
        "export policy leaked:\n{hidden}"
    );

    // Withdrawals both ways.
    birdc(&bird, &socket, &["disable", "gone4"]).await;
    table.wait("192.168.51.0/24", false).await;
    assert!(table.has("192.168.50.0/24"), "the other route stays");
    speaker.withdraw("10.1.0.0/16".parse().unwrap());
    bird_route_until(&bird, &socket, "10.1.0.0/16", "withdrawn", |o| {
        !o.contains("10.1.0.0/16")
    })
    .await;

    // Session reset: BIRD restarts the IPv4 session; meshd drops its routes and gets them back.
    birdc(&bird, &socket, &["restart", "meshd4"]).await;
    table.wait("192.168.50.0/24", false).await;
    table.wait("192.168.50.0/24", true).await;
    speaker.originate("10.2.0.0/16".parse().unwrap());
    bird_route_until(
        &bird,
        &socket,
        "10.2.0.0/16",
        "learned after the reset",
        |o| o.contains("10.2.0.0/16"),
    )
    .await;
    speaker.shutdown().await;
}

/// Polls the speaker's sessions every 100 ms until `check` holds, for up to 20 s.
async fn poll_sessions(
    speaker: &Speaker,
    check: impl Fn(&[SessionStatus]) -> bool,
) -> Vec<SessionStatus> {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = speaker.sessions().await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sessions not as expected within 20 s: {last:#?}");
}

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
/// The daemon's AS: the default, as `meshd init` leaves it.
const DAEMON_ASN: u32 = 64512;
/// Of BIRD's three routes: accepted, refused by the term "no-lab", looping through meshd's AS.
const ACCEPTED: &str = "192.168.60.0/24";
const BY_POLICY: &str = "192.168.61.0/24";
const LOOPING: &str = "192.168.62.0/24";
/// Announced and withdrawn by turns, to see `meshd routes` follow the kernel at once.
const FLAPPING: &str = "192.168.70.0/24";

/// BIRD announcing the three routes with MED `med` (a new MED is a new UPDATE for each).
fn refusing_bird_config(dir: &std::path::Path, med: u32) -> String {
    format!(
        r#"
log "{log}" all;
router id {BIRD_V4};
protocol device {{ }}
protocol static feed {{
    ipv4;
    route {ACCEPTED} blackhole;
    route {BY_POLICY} blackhole;
    route {LOOPING} blackhole;
}}
# Switched on and off by the test: a route that comes and goes.
protocol static flap {{ disabled; ipv4; route {FLAPPING} blackhole; }}
filter to_meshd {{
    bgp_med = {med};
    # BIRD puts its own AS in front: "65010 {DAEMON_ASN}", meshd's AS in the path.
    if net = {LOOPING} then bgp_path.prepend({DAEMON_ASN});
    if source = RTS_STATIC then accept;
    reject;
}}
protocol bgp meshd {{
    local {BIRD_V4} as 65010;
    neighbor {MESHD_V4} as {DAEMON_ASN};
    passive on;
    hold time 9;
    ipv4 {{ import none; export filter to_meshd; }};
}}
"#,
        log = dir.join("bird.log").display()
    )
}

const REFUSING_NEIGHBOR: &str = r#"
[[bgp.neighbor]]
name = "bird"
address = "198.51.100.2"
remote_asn = 65010
hold_time = 9
connect_retry = 1
import = "from-bird"
export = { prefixes = ["10.0.0.0/8 le 24"] }

[bgp.policy.from-bird]
[[bgp.policy.from-bird.term]]
name = "no-lab"
match.prefixes = ["192.168.61.0/24"]
action = "reject"
[[bgp.policy.from-bird.term]]
match.prefixes = ["192.168.0.0/16 le 24"]
action = "accept"
"#;

#[test]
fn refusals_are_logged_once_and_counted() {
    if !require_root("refusals_are_logged_once_and_counted") {
        return;
    }
    let (meshd_ns, bird_ns) = meshd_and_peer("bgprefuse", &[], &["198.51.100.2/24"]);
    let dir = tempfile::tempdir().unwrap();
    let (bird, config, socket) =
        start_bird(&bird_ns, dir.path(), &refusing_bird_config(dir.path(), 1));
    let mut node = MeshdNode::with_addresses(
        Path::new(MESHD),
        "refuser",
        "198.51.100.1:51820",
        &["10.1.0.1/16"],
    );
    let mut toml = std::fs::read_to_string(node.config_path()).unwrap();
    toml.push_str(REFUSING_NEIGHBOR);
    std::fs::write(node.config_path(), toml).unwrap();
    node.start(&meshd_ns);
    let logs = || {
        let bird_log = std::fs::read_to_string(dir.path().join("bird.log")).unwrap_or_default();
        format!(
            "meshd:\n{}\nBIRD:\n{bird_log}{}",
            node.log(),
            bird.log().contents()
        )
    };
    let routes = || -> RoutesReport {
        serde_json::from_str(&node.command(&["routes", "--json"])).expect("routes JSON")
    };
    let med_of = |report: &RoutesReport| {
        report
            .bgp_routes
            .iter()
            .find(|r| r.prefix.to_string() == ACCEPTED)
            .map(|r| r.med)
    };
    let shows = |what: Option<Option<u32>>| {
        wait_until(Duration::from_secs(20), || med_of(&routes()) == what)
    };
    let birdc = |args: &[&str]| {
        let mut full = vec!["-s", socket.to_str().unwrap()];
        full.extend_from_slice(args);
        bird_ns.exec_ok("birdc", &full)
    };

    // UPDATEs 1 to 9: the first table, then eight new MEDs; each waited for, so that every
    // one reaches meshd on its own.
    assert!(shows(Some(Some(1))), "no route from BIRD:\n{}", logs());
    for med in 2..=9 {
        std::fs::write(&config, refusing_bird_config(dir.path(), med)).unwrap();
        let out = birdc(&["configure"]);
        assert!(out.contains("Reconfigured"), "{out}");
        assert!(shows(Some(Some(med))), "MED {med} not seen:\n{}", logs());
    }
    // UPDATE 10 after a withdrawal: refused again for the same reason, which is not news.
    birdc(&["disable", "feed"]);
    assert!(shows(None), "withdrawal not seen:\n{}", logs());
    birdc(&["enable", "feed"]);
    assert!(shows(Some(Some(9))), "routes not back:\n{}", logs());

    // BIRD did send each route ten times (its export counters: received, rejected, filtered,
    // ignored, accepted).
    let stats = birdc(&["show", "protocols", "all", "meshd"]);
    let sent: Vec<u64> = stats
        .lines()
        .find(|l| l.trim_start().starts_with("Export updates:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(sent.last().is_some_and(|n| *n >= 30), "{stats}");

    // The counts: the refused routes are counted once they are announced again, so this is
    // also the sign that the last UPDATEs were handled.
    let counted = wait_until(Duration::from_secs(10), || {
        routes()
            .bgp_sessions
            .iter()
            .any(|s| s.name == "bird" && s.accepted == 1 && s.refused == 2)
    });
    let report = routes();
    assert!(counted, "{:#?}\n{}", report.bgp_sessions, logs());
    let session = report
        .bgp_sessions
        .iter()
        .find(|s| s.name == "bird")
        .unwrap();
    let by_reason: Vec<(&str, usize)> = session
        .refused_by_reason
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(by_reason, [("as_loop", 1), ("policy", 1)]);

    // Each refusal once, with the neighbour, the prefix and the reason.
    let log = node.log();
    let refused = |prefix: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains("BGP route") && l.contains(prefix))
            .collect()
    };
    let by_policy = refused(BY_POLICY);
    assert_eq!(by_policy.len(), 1, "{by_policy:#?}\n{}", logs());
    assert!(
        by_policy[0].contains("BGP route refused")
            && by_policy[0].contains("peer=bird")
            && by_policy[0].contains(r#"reason=import policy term "no-lab""#)
            && by_policy[0].contains("kind=policy"),
        "{}",
        by_policy[0]
    );
    let looping = refused(LOOPING);
    assert_eq!(looping.len(), 1, "{looping:#?}\n{}", logs());
    assert!(
        looping[0].contains("peer=bird") && looping[0].contains("reason=AsLoop"),
        "{}",
        looping[0]
    );
    assert!(refused(ACCEPTED).is_empty(), "{}", logs());

    // The same counts in `meshd status`, the text table and the metrics.
    let status: StatusReport =
        serde_json::from_str(&node.command(&["status", "--json"])).expect("status JSON");
    let bgp = status.bgp.expect("a BGP summary");
    assert_eq!((bgp.established, bgp.accepted, bgp.refused), (1, 1, 2));
    let text = node.command(&["routes"]);
    assert!(text.contains("2 (as_loop 1, policy 1)"), "{text}");
    let metrics = node.metrics(&meshd_ns);
    let refused_metric = |reason| {
        metrics.value(
            "meshd_bgp_session_refused_prefixes",
            &[("neighbor", "bird"), ("reason", reason)],
        )
    };
    assert_eq!(refused_metric("as_loop"), Some(1.0));
    assert_eq!(refused_metric("policy"), Some(1.0));
    assert_eq!(refused_metric("certificate"), Some(0.0));

    // `meshd routes` shows what the kernel has now: once the kernel route for a new route is
    // there, or gone for a withdrawn one, `meshd routes --json` agrees at once, every time.
    let in_kernel = || !meshd_ns.ip(&["route", "show", FLAPPING]).trim().is_empty();
    let listed = || {
        routes()
            .bgp_routes
            .iter()
            .any(|r| r.prefix.to_string() == FLAPPING)
    };
    for round in 0..5 {
        for (command, present) in [("enable", true), ("disable", false)] {
            birdc(&[command, "flap"]);
            let programmed = wait_until(Duration::from_secs(10), || in_kernel() == present);
            assert!(
                programmed,
                "round {round}: {command} not in the kernel:\n{}",
                logs()
            );
            assert_eq!(
                listed(),
                present,
                "round {round}: the kernel has {command}d {FLAPPING}, meshd routes does not show it"
            );
        }
    }
    node.stop();
}
