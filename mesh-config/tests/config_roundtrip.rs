//! Whatever `Config::to_toml_string` writes (what `meshd init` saves), reading it back
//! gives the same config, and the same verdict from validation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mesh_config::{
    BgpFamily, BgpNeighbor, Community, CommunityPattern, Config, Endpoint, Host, LargeCommunity,
    LargeCommunityPattern, Match, Policy, PolicyAction, PolicySpec, PrefixFilter, Role, Set,
    StaticPeer, Term, TermAction, WireGuardKey,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}[a-z0-9]"
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn net() -> impl Strategy<Value = IpNet> {
    ip().prop_flat_map(|ip| {
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        (0..=max).prop_map(move |len| IpNet::new(ip, len).unwrap())
    })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let host = prop_oneof![
        ip().prop_map(Host::Ip),
        "[a-z]{1,8}\\.example\\.net".prop_map(Host::Name),
    ];
    (host, 1u16..).prop_map(|(host, port)| Endpoint::new(host, port))
}

fn filter() -> impl Strategy<Value = PrefixFilter> {
    net().prop_flat_map(|net| {
        let prefix = net.trunc();
        let (min, max) = (prefix.prefix_len(), prefix.max_prefix_len());
        (
            proptest::option::of(min..=max),
            proptest::option::of(min..=max),
        )
            .prop_map(move |(a, b)| {
                let (ge, le) = match (a, b) {
                    (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                    other => other,
                };
                PrefixFilter { prefix, ge, le }
            })
    })
}

fn action() -> impl Strategy<Value = TermAction> {
    prop_oneof![
        Just(TermAction::Accept),
        Just(TermAction::Reject),
        Just(TermAction::Next)
    ]
}

fn community() -> impl Strategy<Value = Community> {
    any::<u32>().prop_map(Community)
}

fn community_pattern() -> impl Strategy<Value = CommunityPattern> {
    (any::<Option<u16>>(), any::<Option<u16>>())
        .prop_map(|(asn, value)| CommunityPattern { asn, value })
}

fn large() -> impl Strategy<Value = LargeCommunity> {
    any::<(u32, u32, u32)>().prop_map(|(global, local1, local2)| LargeCommunity {
        global,
        local1,
        local2,
    })
}

fn large_pattern() -> impl Strategy<Value = LargeCommunityPattern> {
    any::<[Option<u32>; 3]>().prop_map(|parts| LargeCommunityPattern { parts })
}

fn term() -> impl Strategy<Value = Term> {
    let matches = (
        proptest::collection::vec(filter(), 0..2),
        proptest::collection::vec(community_pattern(), 0..2),
        proptest::collection::vec(large_pattern(), 0..2),
        proptest::collection::vec(any::<u32>(), 0..2),
        proptest::collection::vec(any::<u32>(), 0..2),
    )
        .prop_map(
            |(prefixes, communities, large_communities, contains, origin)| Match {
                prefixes,
                communities,
                large_communities,
                as_path_contains: contains,
                origin_asn: origin,
            },
        );
    let set = (
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u8>>(),
        proptest::collection::vec(community(), 0..2),
        proptest::collection::vec(community_pattern(), 0..2),
        proptest::collection::vec(large(), 0..2),
        proptest::collection::vec(large_pattern(), 0..2),
    )
        .prop_map(|(local_pref, med, prepend, ac, rc, al, rl)| Set {
            local_pref,
            med,
            prepend,
            add_communities: ac,
            remove_communities: rc,
            add_large_communities: al,
            remove_large_communities: rl,
        });
    (proptest::option::of(name()), matches, set, action()).prop_map(
        |(name, matches, set, action)| Term {
            name,
            matches,
            set,
            action,
        },
    )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        proptest::collection::vec(term(), 0..3),
        proptest::collection::vec(filter(), 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(terms, prefixes, accept)| Policy {
            terms,
            prefixes,
            default: accept.map(|a| {
                if a {
                    PolicyAction::Accept
                } else {
                    PolicyAction::Reject
                }
            }),
        })
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    prop_oneof![
        policy().prop_map(PolicySpec::Inline),
        proptest::collection::vec(name(), 0..3).prop_map(PolicySpec::Named),
    ]
}

fn neighbor() -> impl Strategy<Value = BgpNeighbor> {
    (
        (name(), ip(), any::<u32>(), policy_spec(), policy_spec()),
        (
            proptest::option::of(ip()),
            any::<Option<u16>>(),
            any::<bool>(),
            any::<Option<u16>>(),
            any::<Option<u16>>(),
        ),
        (
            proptest::option::of(proptest::collection::vec(
                prop_oneof![Just(BgpFamily::Ipv4), Just(BgpFamily::Ipv6)],
                0..3,
            )),
            proptest::option::of("/?[a-z]{1,8}(/[a-z.-]{1,8}){0,2}".prop_map(PathBuf::from)),
            proptest::option::of("[ -~]{0,90}"),
            any::<Option<u8>>(),
        ),
    )
        .prop_map(|(base, session, extra)| {
            let (name, address, remote_asn, import, export) = base;
            let mut n = BgpNeighbor::new(name, address, remote_asn);
            n.import = import;
            n.export = export;
            (
                n.local_address,
                n.port,
                n.passive,
                n.hold_time,
                n.connect_retry,
            ) = session;
            (n.families, n.password_file, n.password, n.multihop) = extra;
            n
        })
}

fn peer() -> impl Strategy<Value = StaticPeer> {
    (
        name(),
        any::<[u8; 32]>(),
        proptest::collection::vec(endpoint(), 0..3),
        proptest::collection::vec(net(), 0..3),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |(name, key, endpoints, allowed_prefixes, persistent_keepalive)| StaticPeer {
                name,
                public_key: WireGuardKey(key),
                endpoints,
                allowed_prefixes,
                persistent_keepalive,
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        (
            name(),
            any::<bool>(),
            any::<u16>(),
            proptest::collection::vec(endpoint(), 0..3),
        ),
        (
            "[a-z0-9]{1,15}",
            proptest::option::of(any::<u16>()),
            proptest::collection::vec(net(), 0..2),
        ),
        (
            net(),
            any::<u8>(),
            proptest::option::of(net()),
            proptest::option::of(net()),
        ),
        (any::<u32>(), proptest::collection::vec(net(), 0..3)),
        (
            proptest::collection::vec(neighbor(), 0..2),
            proptest::collection::btree_map(name(), policy(), 0..2),
        ),
        proptest::collection::vec(peer(), 0..3),
    )
        .prop_map(|(node, interface, mesh, routing, bgp, peers)| {
            let mut c = Config::new(node.0, if node.1 { Role::Core } else { Role::Spoke });
            c.node.listen_port = node.2;
            c.node.endpoints = node.3;
            c.interface.name = interface.0;
            c.interface.mtu = interface.1;
            c.interface.addresses = interface.2;
            let v4 = |n: IpNet| match n {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            };
            let v6 = |n: IpNet| match n {
                IpNet::V6(n) => Some(n),
                IpNet::V4(_) => None,
            };
            if let Some(pool4) = v4(mesh.0) {
                c.mesh.pool4 = pool4;
            }
            c.mesh.node_prefix_len4 = mesh.1;
            c.mesh.pool6 = mesh.2.and_then(v6);
            c.mesh.native6 = mesh.3.and_then(v6);
            c.routing.asn = routing.0;
            c.routing.lan_prefixes = routing.1;
            (c.bgp.neighbors, c.bgp.policies) = bgp;
            c.peers = peers;
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn written_config_reads_back(config in config()) {
        let text = config.to_toml_string();
        let back: Config = toml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &config);
        let issues = mesh_config::validate(&config);
        match mesh_config::parse(&text, Path::new("meshd.toml")) {
            Ok(parsed) => {
                prop_assert!(issues.is_empty());
                prop_assert_eq!(parsed, config);
            }
            Err(error) => {
                // The same problems, each now with a position.
                let keys: Vec<String> = issues.iter().map(|i| i.path.to_string()).collect();
                let mut found: Vec<String> = error.diagnostics().iter().map(|d| d.key.clone()).collect();
                let mut expected = keys.clone();
                found.sort();
                expected.sort();
                prop_assert_eq!(found, expected);
            }
        }
    }
}
