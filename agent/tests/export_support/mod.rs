//! The foreign router the export tests render: spoke gamma (10.3.0.0/16, an IPv6 /80 with its
//! /96 client pool) with two approved IPv4 LANs, hosted by core alpha of the mesh "friends",
//! which has two more endpoints. Addresses as the allocator hands them out
//! (mesh-config's address plan); underlay names and addresses from the documentation ranges.

use meshd::foreign::export::{CoreSide, RouterExport, RouterRoutes, RouterSide};

/// The golden files' name for this router.
pub const TWO_LANS: &str = "two-lans";

pub fn two_lans() -> RouterExport {
    let net = |text: &str| text.parse().unwrap();
    RouterExport {
        mesh_name: "friends".into(),
        asn: 64512,
        router: RouterSide {
            name: "gamma".into(),
            wireguard_public_key: "RkidVfweX7wx1upBKInKu6UBasEyx6WG46PS1uw4uzg=".into(),
            router_id: "10.3.0.1".parse().unwrap(),
            address6: Some("fd12:3456:789a:1:1::1".parse().unwrap()),
            allocated: vec![
                net("10.3.0.0/16"),
                net("fd12:3456:789a:1:1::/80"),
                net("fd12:3456:789a:1:1:1::/96"),
            ],
            lans: vec![net("192.168.42.0/24"), net("192.168.43.0/24")],
        },
        core: CoreSide {
            name: "alpha".into(),
            wireguard_public_key: "hBVTMQn6+a3NCnV6wmr5scTqOFpg1yoqcFysGfV/FjI=".into(),
            endpoint: "vpn.example.net:51820".into(),
            other_endpoints: vec![
                "vpn2.example.net:51820".into(),
                "[2001:db8::1]:51820".into(),
            ],
            router_id: "10.1.0.1".parse().unwrap(),
            address6: Some("fd12:3456:789a:1::1".parse().unwrap()),
        },
        mesh_pools: vec![net("10.0.0.0/8"), net("fd12:3456:789a::/48")],
        mtu: 1420,
        keepalive_secs: 25,
        hold_time_secs: 30,
        send: RouterRoutes::Mesh,
    }
}

/// The golden files' name for the same router sent only the default routes.
pub const FULL_TUNNEL: &str = "full-tunnel";

/// [`two_lans`] with `[routers.gamma] send = "default"` on its core.
pub fn full_tunnel() -> RouterExport {
    RouterExport {
        send: RouterRoutes::Default,
        ..two_lans()
    }
}
