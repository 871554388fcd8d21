//! meshd's BGP speaker against GoBGP (Debian package gobgpd), each in its own network namespace
//! (needs root; CI runs as root). Unlike the BIRD test both sides connect out, so connection
//! collisions are part of the run. One eBGP session per address family. Checked: Established;
//! routes both ways in both families; export policy; withdrawals both ways; a reset session
//! recovers with its routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use meshd::bgp::fsm::State;
use meshd::bgp::speaker::{BGP_PORT, NeighborConfig, Speaker, SpeakerConfig};
use netns_tests::{Namespace, connect_veth, require_root};
use tokio::sync::mpsc;

mod bgp_support;
use bgp_support::{Table, exec_in, poll_until};

const MESHD_V4: &str = "198.51.100.1";
const GOBGP_V4: &str = "198.51.100.3";
const MESHD_V6: &str = "2001:db8:1::1";
const GOBGP_V6: &str = "2001:db8:1::3";
const API: &str = "127.0.0.1";
const API_PORT: &str = "50051";

fn gobgp_config() -> String {
    let neighbor = |address: &str, family: &str| {
        format!(
            r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{address}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{family}"
"#
        )
    };
    format!(
        r#"
[global.config]
  as = 65020
  router-id = "{GOBGP_V4}"
{}{}"#,
        neighbor(MESHD_V4, "ipv4-unicast"),
        neighbor(MESHD_V6, "ipv6-unicast")
    )
}

async fn gobgp(namespace: &str, args: &[&str]) -> String {
    let mut full = vec!["-u", API, "-p", API_PORT];
    full.extend_from_slice(args);
    exec_in(namespace, "gobgp", &full).await
}

async fn gobgp_rib_until(
    namespace: &str,
    family: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let args = ["global", "rib", "-a", family];
    poll_until(&format!("GoBGP: {what}"), || gobgp(namespace, &args), check).await
}

fn neighbor(name: &str, address: &str) -> NeighborConfig {
    let mut n = NeighborConfig::from_config(&mesh_config::BgpNeighbor {
        name: name.into(),
        address: address.parse().unwrap(),
        remote_asn: 65020,
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
fn gobgp_interop() {
    if !require_root("gobgp_interop") {
        return;
    }
    let meshd_ns = Namespace::new("bgpmeshd");
    let gobgp_ns = Namespace::new("bgpgobgp");
    connect_veth(
        &meshd_ns,
        "eth0",
        &["198.51.100.1/24", "2001:db8:1::1/64"],
        &gobgp_ns,
        "eth0",
        &["198.51.100.3/24", "2001:db8:1::3/64"],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gobgpd.toml");
    std::fs::write(&config, gobgp_config()).unwrap();
    let api = format!("{API}:{API_PORT}");
    let daemon = gobgp_ns.spawn(
        "gobgpd",
        "gobgpd",
        &[
            "-f",
            &config.display().to_string(),
            "-t",
            "toml",
            "--api-hosts",
            &api,
        ],
        &[],
    );
    let name = gobgp_ns.name().to_owned();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        meshd_ns.run_in(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(exercise(name))
        })
    }));
    if let Err(panic) = result {
        eprintln!("gobgpd log:\n{}", daemon.log().contents());
        std::panic::resume_unwind(panic);
    }
    drop(dir);
}

async fn exercise(ns: String) {
    // gobgpd's API comes up a moment after the process starts.
    poll_until(
        "gobgpd API",
        || gobgp(&ns, &["global"]),
        |o| o.contains("65020"),
    )
    .await;
    gobgp(
        &ns,
        &["global", "rib", "add", "-a", "ipv4", "192.168.70.0/24"],
    )
    .await;
    gobgp(
        &ns,
        &["global", "rib", "add", "-a", "ipv4", "192.168.71.0/24"],
    )
    .await;
    gobgp(
        &ns,
        &["global", "rib", "add", "-a", "ipv6", "2001:db8:70::/48"],
    )
    .await;

    let (tx, rx) = mpsc::unbounded_channel();
    let mut table = Table::new(rx);
    let speaker = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: MESHD_V4.parse().unwrap(),
            listen: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), BGP_PORT),
                SocketAddr::new(MESHD_V6.parse().unwrap(), BGP_PORT),
            ],
            neighbors: vec![neighbor("gobgp4", GOBGP_V4), neighbor("gobgp6", GOBGP_V6)],
        },
        tx,
    )
    .await
    .expect("speaker starts");
    speaker.originate("10.1.0.0/16".parse().unwrap());
    speaker.originate("fd12:3456:789a::/48".parse().unwrap());
    speaker.originate("172.16.0.0/24".parse().unwrap());

    let v4 = table.wait("192.168.70.0/24", true).await.unwrap();
    assert_eq!(v4.next_hop, GOBGP_V4.parse::<IpAddr>().unwrap());
    assert_eq!(v4.attrs.as_path.as_ref().unwrap().to_string(), "65020");
    let v6 = table.wait("2001:db8:70::/48", true).await.unwrap();
    assert_eq!(v6.next_hop, GOBGP_V6.parse::<IpAddr>().unwrap());
    for s in speaker.sessions().await {
        assert_eq!(s.state, State::Established, "{}", s.name);
    }

    let rib = gobgp_rib_until(&ns, "ipv4", "10.1.0.0/16 via meshd", |o| {
        o.contains("10.1.0.0/16") && o.contains(MESHD_V4)
    })
    .await;
    assert!(rib.contains("65001"), "{rib}");
    assert!(
        !rib.contains("172.16.0.0/24"),
        "export policy leaked:\n{rib}"
    );
    gobgp_rib_until(&ns, "ipv6", "fd12:3456:789a::/48 via meshd", |o| {
        o.contains("fd12:3456:789a::/48") && o.contains(MESHD_V6)
    })
    .await;

    gobgp(
        &ns,
        &["global", "rib", "del", "-a", "ipv4", "192.168.71.0/24"],
    )
    .await;
    table.wait("192.168.71.0/24", false).await;
    assert!(table.has("192.168.70.0/24"));
    speaker.withdraw("10.1.0.0/16".parse().unwrap());
    gobgp_rib_until(&ns, "ipv4", "10.1.0.0/16 withdrawn", |o| {
        !o.contains("10.1.0.0/16")
    })
    .await;

    // Reset: GoBGP takes the session down (Cease) and brings it back.
    gobgp(&ns, &["neighbor", MESHD_V4, "disable"]).await;
    table.wait("192.168.70.0/24", false).await;
    gobgp(&ns, &["neighbor", MESHD_V4, "enable"]).await;
    table.wait("192.168.70.0/24", true).await;
    speaker.originate("10.2.0.0/16".parse().unwrap());
    gobgp_rib_until(&ns, "ipv4", "10.2.0.0/16 after the reset", |o| {
        o.contains("10.2.0.0/16")
    })
    .await;
    speaker.shutdown().await;
}
