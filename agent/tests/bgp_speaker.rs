//! Two meshd speakers over TCP on 127.0.0.x (no root): the session comes up, IPv4 and IPv6
//! routes flow with the right attributes, export policy holds back what it must, a withdrawal
//! arrives, and a restarted peer is reconnected to.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use meshd::bgp::fsm::State;
use meshd::bgp::packet::Family;
use meshd::bgp::policy::Policy;
use meshd::bgp::rib::{BestChange, Path};
use meshd::bgp::speaker::{NeighborConfig, Speaker, SpeakerConfig};
use tokio::sync::mpsc;

fn neighbor(name: &str, address: &str, port: u16, asn: u32) -> NeighborConfig {
    NeighborConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        port,
        remote_asn: asn,
        local_address: None,
        passive: false,
        import: Policy::accept_all(),
        export: Policy::accept_all(),
        rr_client: false,
        next_hop_v4: None,
        next_hop_v6: None,
        hold_time: 9,
        connect_retry: Duration::from_millis(300),
        families: Family::ALL.to_vec(),
    }
}

/// The routing plane's view: the latest best path per prefix, from the speaker's channel.
struct Table {
    rx: mpsc::UnboundedReceiver<BestChange>,
    best: HashMap<IpNet, Option<Path>>,
}

impl Table {
    fn new(rx: mpsc::UnboundedReceiver<BestChange>) -> Table {
        Table {
            rx,
            best: HashMap::new(),
        }
    }

    /// Waits until `prefix` has a route (`present`) or none, and returns it.
    async fn wait(&mut self, prefix: &str, present: bool) -> Option<Path> {
        let prefix: IpNet = prefix.parse().unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let now = self.best.get(&prefix).cloned().flatten();
                if now.is_some() == present {
                    return now;
                }
                let c = self.rx.recv().await.expect("speaker running");
                self.best.insert(c.prefix, c.best);
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{prefix} not {} within 10 s",
                if present { "present" } else { "gone" }
            )
        })
    }
}

async fn start_a(port: u16) -> (Speaker, mpsc::UnboundedReceiver<BestChange>) {
    let mut b = neighbor("b", "127.0.0.12", 0, 65002);
    b.passive = true;
    b.next_hop_v6 = Some("2001:db8::11".parse().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let a = Speaker::start(
        SpeakerConfig {
            asn: 65001,
            router_id: Ipv4Addr::new(198, 51, 100, 11),
            listen: vec![SocketAddr::new("127.0.0.11".parse().unwrap(), port)],
            neighbors: vec![b],
        },
        tx,
    )
    .await
    .expect("A starts");
    (a, rx)
}

#[tokio::test]
async fn two_speakers_exchange_routes_and_recover_from_a_reset() {
    let (a, _a_routes) = start_a(0).await;
    let port = a.local_addrs()[0].port();
    a.originate("10.1.0.0/16".parse().unwrap());
    a.originate("2001:db8:1::/48".parse().unwrap());

    let mut to_a = neighbor("a", "127.0.0.11", port, 65001);
    to_a.local_address = Some("127.0.0.12".parse().unwrap());
    to_a.import = Policy::from_config(&mesh_config::Policy {
        prefixes: vec![
            "10.0.0.0/8 le 24".parse().unwrap(),
            "2001:db8::/32 le 64".parse().unwrap(),
        ],
        default: mesh_config::PolicyAction::Reject,
    });
    to_a.export = Policy::reject_all();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut b_routes = Table::new(rx);
    let b = Speaker::start(
        SpeakerConfig {
            asn: 65002,
            router_id: Ipv4Addr::new(198, 51, 100, 12),
            listen: vec![],
            neighbors: vec![to_a],
        },
        tx,
    )
    .await
    .expect("B starts");
    // B's own route must not reach A: B's export policy rejects everything (RFC 8212).
    b.originate("192.168.9.0/24".parse().unwrap());

    let path = b_routes.wait("10.1.0.0/16", true).await.unwrap();
    assert_eq!(path.next_hop, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)));
    assert_eq!(path.attrs.as_path.as_ref().unwrap().to_string(), "65001");
    let v6 = b_routes.wait("2001:db8:1::/48", true).await.unwrap();
    assert_eq!(v6.next_hop, "2001:db8::11".parse::<IpAddr>().unwrap());

    let sessions = b.sessions().await;
    assert_eq!(sessions[0].state, State::Established);
    let negotiated = sessions[0].negotiated.clone().unwrap();
    assert_eq!(negotiated.hold_time, 9);
    assert!(negotiated.four_octet_as && negotiated.route_refresh);
    assert_eq!(
        sessions[0].advertised, 0,
        "export policy rejected B's route"
    );
    let a_routes = a.routes().await;
    assert!(
        !a_routes
            .iter()
            .any(|(p, _)| *p == "192.168.9.0/24".parse::<IpNet>().unwrap()),
        "A learned a route B's policy should have kept"
    );

    a.withdraw("10.1.0.0/16".parse().unwrap());
    b_routes.wait("10.1.0.0/16", false).await;

    // Reset: A goes away (Cease), B drops A's routes, A comes back on the same port and B
    // reconnects and learns the routes again.
    a.shutdown().await;
    b_routes.wait("2001:db8:1::/48", false).await;
    let (a, _a_routes) = start_a(port).await;
    a.originate("10.1.0.0/16".parse().unwrap());
    b_routes.wait("10.1.0.0/16", true).await;
    a.shutdown().await;
    b.shutdown().await;
}
