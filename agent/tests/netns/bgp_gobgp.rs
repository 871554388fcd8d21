//! meshd's BGP speaker against GoBGP (Debian package gobgpd), each in its own network namespace
//! (needs root; CI runs as root). Unlike the BIRD test both sides connect out, so connection
//! collisions are part of the run. One eBGP session per address family. Checked: Established;
//! routes both ways in both families; export policy; withdrawals both ways; a reset session
//! recovers with its routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use meshd::bgp::fsm::State;
use meshd::bgp::speaker::{BGP_PORT, Speaker, SpeakerConfig};
use netns_tests::require_root;
use tokio::sync::mpsc;

#[path = "../bgp_support/mod.rs"]
mod bgp_support;
use bgp_support::netns::{MESHD_V4, MESHD_V6, meshd_and_peer, neighbors, plain_neighbor, run_in};
use bgp_support::{Table, exec_in, poll_until};

const GOBGP_V4: &str = "198.51.100.3";
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

#[test]
fn gobgp_interop() {
    if !require_root("gobgp_interop") {
        return;
    }
    let (meshd_ns, gobgp_ns) =
        meshd_and_peer("bgpgobgp", &[], &["198.51.100.3/24", "2001:db8:1::3/64"]);
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
    run_in(
        &meshd_ns,
        move || exercise(name),
        || daemon.log().contents(),
    );
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
            neighbors: neighbors(
                65001,
                &(plain_neighbor("gobgp4", GOBGP_V4, 65020)
                    + &plain_neighbor("gobgp6", GOBGP_V6, 65020)),
            ),
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
