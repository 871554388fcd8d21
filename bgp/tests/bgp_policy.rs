//! Policy evaluation as a table: policies written as in meshd.toml (`[bgp.policy.NAME]`), one
//! route each, and what must come out: rejected, or accepted with these attributes. Covers every
//! match condition, every `set`, `next` chains across policies, defaults (RFC 8212), and the
//! seeds' filters; plus the import and export paths that call the policy.

use std::borrow::Cow;

use ipnet::IpNet;
use mesh_config::{BgpSection, PolicySpec};
use meshd_bgp::packet::{AsPath, LargeCommunity, PathAttributes};
use meshd_bgp::policy::Policy;

const POLICIES: &str = r#"
[policy.prefer]
[[policy.prefer.term]]
set.local_pref = 200
action = "next"

# The friends-VPN seed: prefix=192.168.42.0/23 prefix-length=23-32 action=accept.
[policy.remi-in]
[[policy.remi-in.term]]
match.prefixes = ["192.168.42.0/23 ge 23 le 32"]
action = "accept"

[policy.tags]
[[policy.tags.term]]
name = "unwanted"
match.communities = ["64513:666", "64513:667"]
action = "reject"
[[policy.tags.term]]
match.large_communities = ["64513:*:7"]
set.med = 70
set.add_communities = ["64514:7"]
action = "next"
[[policy.tags.term]]
match.communities = ["64514:7"]
set.remove_communities = ["64513:*"]
set.add_large_communities = ["64514:0:1"]
set.remove_large_communities = ["64513:*:*"]
action = "accept"
[[policy.tags.term]]
match.as_path_contains = [64999]
action = "reject"
[[policy.tags.term]]
match.origin_asn = [64600, 64601]
match.prefixes = ["10.0.0.0/8 le 24"]
set.prepend = 2
action = "accept"

[policy.anything]
default = "accept"

[policy.nothing]
default = "reject"

[policy.short]
prefixes = ["10.0.0.0/8 le 16"]
"#;

/// A route as the table writes it: AS path, communities, large communities.
struct Route {
    path: &'static [u32],
    communities: &'static [(u16, u16)],
    large: &'static [(u32, u32, u32)],
}

const PLAIN: Route = Route {
    path: &[64513],
    communities: &[],
    large: &[],
};

/// What must come out: `None` for rejected, else the attributes that matter.
#[derive(Debug, PartialEq, Eq)]
struct Out {
    local_pref: Option<u32>,
    med: Option<u32>,
    path: String,
    communities: Vec<(u16, u16)>,
    large: Vec<(u32, u32, u32)>,
}

fn attrs(route: &Route) -> PathAttributes {
    PathAttributes {
        as_path: Some(AsPath::from_sequence(route.path.iter().copied())),
        communities: route
            .communities
            .iter()
            .map(|(a, v)| (u32::from(*a) << 16) | u32::from(*v))
            .collect(),
        large_communities: route
            .large
            .iter()
            .map(|&(global, local1, local2)| LargeCommunity {
                global,
                local1,
                local2,
            })
            .collect(),
        ..PathAttributes::default()
    }
}

fn out(a: &PathAttributes) -> Out {
    Out {
        local_pref: a.local_pref,
        med: a.med,
        path: a
            .as_path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        communities: a
            .communities
            .iter()
            .map(|c| ((c >> 16) as u16, *c as u16))
            .collect(),
        large: a
            .large_communities
            .iter()
            .map(|c| (c.global, c.local1, c.local2))
            .collect(),
    }
}

fn accepted(route: &Route) -> Out {
    out(&attrs(route))
}

/// Name, policies applied in order, prefix, route, what comes out.
type Case = (
    &'static str,
    &'static [&'static str],
    &'static str,
    Route,
    Option<Out>,
);

fn policy(names: &[&str]) -> Policy {
    let bgp: BgpSection = toml::from_str(POLICIES).unwrap();
    let spec = PolicySpec::Named(names.iter().map(|n| n.to_string()).collect());
    Policy::from_config(&spec, &bgp)
}

#[test]
fn table() {
    let tagged = |communities, large| Route {
        path: &[64513],
        communities,
        large,
    };
    let cases: Vec<Case> = vec![
        // RFC 8212: no policy, or terms that do not decide, reject.
        ("no policy", &[], "192.168.42.0/24", PLAIN, None),
        (
            "next then nothing",
            &["prefer"],
            "192.168.42.0/24",
            PLAIN,
            None,
        ),
        // Prefix lists with length ranges.
        (
            "seed /24",
            &["remi-in"],
            "192.168.42.0/24",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
        (
            "seed /23 itself",
            &["remi-in"],
            "192.168.42.0/23",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
        (
            "seed /32",
            &["remi-in"],
            "192.168.43.7/32",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
        (
            "seed /22 too short",
            &["remi-in"],
            "192.168.40.0/22",
            PLAIN,
            None,
        ),
        ("seed outside", &["remi-in"], "192.168.44.0/24", PLAIN, None),
        (
            "seed other family",
            &["remi-in"],
            "2001:db8::/48",
            PLAIN,
            None,
        ),
        // `next` carries its changes into the next policy, which decides.
        (
            "prefer then seed",
            &["prefer", "remi-in"],
            "192.168.42.0/24",
            PLAIN,
            Some(Out {
                local_pref: Some(200),
                ..accepted(&PLAIN)
            }),
        ),
        (
            "prefer then seed, outside",
            &["prefer", "remi-in"],
            "10.0.0.0/8",
            PLAIN,
            None,
        ),
        // Communities: any listed one matches.
        (
            "community 666",
            &["tags"],
            "10.1.0.0/16",
            tagged(&[(64513, 666)], &[]),
            None,
        ),
        (
            "community 667",
            &["tags"],
            "10.1.0.0/16",
            tagged(&[(1, 1), (64513, 667)], &[]),
            None,
        ),
        // Large community with a wildcard: MED and a community set, then the next term matches
        // the community just added, swaps 64513's communities and large communities for ours.
        (
            "large community chain",
            &["tags"],
            "10.1.0.0/16",
            tagged(&[(64513, 1), (65000, 1)], &[(64513, 9, 7), (1, 2, 3)]),
            Some(Out {
                local_pref: None,
                med: Some(70),
                path: "64513".into(),
                communities: vec![(65000, 1), (64514, 7)],
                large: vec![(1, 2, 3), (64514, 0, 1)],
            }),
        ),
        (
            "large not matching",
            &["tags"],
            "10.1.0.0/16",
            tagged(&[], &[(64513, 9, 8)]),
            None,
        ),
        // AS path contains / origin AS, both with prefixes; prepend repeats the given AS.
        (
            "as path contains",
            &["tags", "anything"],
            "10.1.0.0/16",
            Route {
                path: &[64513, 64999, 64600],
                communities: &[],
                large: &[],
            },
            None,
        ),
        (
            "origin as",
            &["tags"],
            "10.1.0.0/16",
            Route {
                path: &[64513, 64601],
                communities: &[],
                large: &[],
            },
            Some(Out {
                path: "65001 65001 64513 64601".into(),
                ..accepted(&PLAIN)
            }),
        ),
        (
            "origin as, prefix too long",
            &["tags"],
            "10.1.1.0/25",
            Route {
                path: &[64513, 64601],
                communities: &[],
                large: &[],
            },
            None,
        ),
        (
            "origin is the last AS",
            &["tags"],
            "10.1.0.0/16",
            Route {
                path: &[64601, 64513],
                communities: &[],
                large: &[],
            },
            None,
        ),
        // Defaults: an explicit default decides; later policies are not consulted.
        (
            "default accept",
            &["anything"],
            "172.16.0.0/12",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
        (
            "default reject first",
            &["nothing", "anything"],
            "172.16.0.0/12",
            PLAIN,
            None,
        ),
        (
            "next then default accept",
            &["prefer", "anything"],
            "172.16.0.0/12",
            PLAIN,
            Some(Out {
                local_pref: Some(200),
                ..accepted(&PLAIN)
            }),
        ),
        // The short `prefixes` form; a policy without default hands on to the next one.
        (
            "short form",
            &["short"],
            "10.2.0.0/16",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
        (
            "short form, too long",
            &["short"],
            "10.2.3.0/24",
            PLAIN,
            None,
        ),
        (
            "short form, then",
            &["short", "anything"],
            "10.2.3.0/24",
            PLAIN,
            Some(accepted(&PLAIN)),
        ),
    ];
    for (name, policies, prefix, route, expected) in cases {
        let prefix: IpNet = prefix.parse().unwrap();
        let input = attrs(&route);
        let got = policy(policies).apply(&prefix, &input, 65001);
        assert_eq!(got.as_deref().map(out), expected, "case {name:?}");
        // Unchanged routes are borrowed, so an UPDATE's routes keep one attribute set.
        if let Some(Cow::Owned(changed)) = &got {
            assert_ne!(changed, &input, "case {name:?}: an unchanged copy");
        }
    }
}

#[test]
fn accept_prefixes_and_the_fixed_policies() {
    let p = Policy::accept_prefixes(vec!["10.0.0.0/8 ge 16 le 24".parse().unwrap()]);
    let a = attrs(&PLAIN);
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    assert!(p.apply(&net("10.5.0.0/16"), &a, 1).is_some());
    assert!(p.apply(&net("10.0.0.0/8"), &a, 1).is_none());
    assert!(
        Policy::reject_all()
            .apply(&net("10.5.0.0/16"), &a, 1)
            .is_none()
    );
    assert!(matches!(
        Policy::accept_all().apply(&net("10.5.0.0/16"), &a, 1),
        Some(Cow::Borrowed(_))
    ));
}
