//! meshd's BGP speaker against BIRD 2 (Debian package bird2), each in its own network namespace
//! joined by a veth pair (needs root; CI runs as root). One eBGP session over IPv4 carries the
//! IPv4 routes and one over IPv6 the IPv6 routes. Checked: both sessions reach Established;
//! routes flow both ways in both families with the right next hops and AS paths; meshd's export
//! policy holds back what it does not list (RFC 8212 default deny); a route withdrawn on either
//! side disappears on the other; and after BIRD restarts a session, it comes back with its routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshd::bgp::fsm::State;
use meshd::bgp::packet::Family;
use meshd::bgp::speaker::{BGP_PORT, NeighborConfig, Speaker, SpeakerConfig};
use netns_tests::{Namespace, connect_veth, require_root};
use tokio::sync::mpsc;

mod bgp_support;
use bgp_support::{Table, exec_in, poll_until};

const MESHD_V4: &str = "198.51.100.1";
const BIRD_V4: &str = "198.51.100.2";
const MESHD_V6: &str = "2001:db8:1::1";
const BIRD_V6: &str = "2001:db8:1::2";

fn bird_config(socket_dir: &std::path::Path) -> String {
    format!(
        r#"
log "{log}" all;
router id {BIRD_V4};
protocol device {{ }}
protocol static stay4 {{ ipv4; route 192.168.50.0/24 blackhole; }}
protocol static gone4 {{ ipv4; route 192.168.51.0/24 blackhole; }}
protocol static stay6 {{ ipv6; route 2001:db8:50::/48 blackhole; }}
protocol bgp meshd4 {{
    local {BIRD_V4} as 65010;
    neighbor {MESHD_V4} as 65001;
    passive on;
    hold time 9;
    ipv4 {{ import all; export where source = RTS_STATIC; }};
}}
protocol bgp meshd6 {{
    local {BIRD_V6} as 65010;
    neighbor {MESHD_V6} as 65001;
    passive on;
    hold time 9;
    ipv6 {{ import all; export where source = RTS_STATIC; }};
}}
"#,
        log = socket_dir.join("bird.log").display()
    )
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

fn neighbor(name: &str, address: &str) -> NeighborConfig {
    let mut n = NeighborConfig::from_config(&mesh_config::BgpNeighbor {
        name: name.into(),
        address: address.parse().unwrap(),
        remote_asn: 65010,
        import: mesh_config::Policy {
            prefixes: vec![
                "192.168.0.0/16 le 24".parse().unwrap(),
                "2001:db8::/32 le 64".parse().unwrap(),
            ],
            default: mesh_config::PolicyAction::Reject,
        },
        export: mesh_config::Policy {
            prefixes: vec![
                "10.0.0.0/8 le 24".parse().unwrap(),
                "fd00::/8 le 64".parse().unwrap(),
            ],
            default: mesh_config::PolicyAction::Reject,
        },
    });
    n.hold_time = 9;
    n.connect_retry = Duration::from_secs(1);
    n
}

#[test]
fn bird2_interop() {
    if !require_root("bird2_interop") {
        return;
    }
    let meshd_ns = Namespace::new("bgpmeshd");
    let bird_ns = Namespace::new("bgpbird");
    connect_veth(
        &meshd_ns,
        "eth0",
        &["198.51.100.1/24", "2001:db8:1::1/64"],
        &bird_ns,
        "eth0",
        &["198.51.100.2/24", "2001:db8:1::2/64"],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bird.conf");
    std::fs::write(&config, bird_config(dir.path())).unwrap();
    let socket: PathBuf = dir.path().join("bird.ctl");
    let bird = bird_ns.spawn(
        "bird",
        "bird",
        &[
            "-f",
            "-c",
            &config.display().to_string(),
            "-s",
            &socket.display().to_string(),
        ],
        &[],
    );
    let bird_name = bird_ns.name().to_owned();
    let socket = Arc::new(socket);
    let dir_path = dir.path().to_owned();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        meshd_ns.run_in(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(exercise(bird_name, socket))
        })
    }));
    if let Err(panic) = result {
        eprintln!(
            "BIRD log:\n{}\n{}",
            std::fs::read_to_string(dir_path.join("bird.log")).unwrap_or_default(),
            bird.log().contents()
        );
        std::panic::resume_unwind(panic);
    }
}

async fn exercise(bird: String, socket: Arc<PathBuf>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut table = Table::new(rx);
    let speaker = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: MESHD_V4.parse().unwrap(),
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), BGP_PORT)],
            neighbors: vec![neighbor("bird4", BIRD_V4), neighbor("bird6", BIRD_V6)],
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

    let sessions = speaker.sessions().await;
    for s in &sessions {
        assert_eq!(s.state, State::Established, "{}", s.name);
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

    // meshd's routes reach BIRD, via meshd's addresses, with AS 65001.
    let shown = bird_route_until(&bird, &socket, "10.1.0.0/16", "learned", |o| {
        o.contains("10.1.0.0/16") && o.contains(MESHD_V4)
    })
    .await;
    assert!(shown.contains("BGP.as_path: 65001"), "{shown}");
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
