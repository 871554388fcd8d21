//! Properties of the allocator under random sequences of operations, and of the config
//! parser under random and mutated input.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv6Net};
use mesh_config::{AddressPlan, Allocator, NodeAllocation, Role};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Core {
        native: Option<u8>,
    },
    Spoke {
        core: usize,
    },
    Client {
        node: usize,
    },
    Revoke {
        node: usize,
    },
    /// Persist and load again, as a restart does.
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::weighted(0.3, 0u8..4).prop_map(|native| Op::Core { native }),
        4 => any::<usize>().prop_map(|core| Op::Spoke { core }),
        4 => any::<usize>().prop_map(|node| Op::Client { node }),
        2 => any::<usize>().prop_map(|node| Op::Revoke { node }),
        1 => Just(Op::Reload),
    ]
}

/// Small pools, so that exhaustion is reached within a test case.
fn plan() -> impl Strategy<Value = AddressPlan> {
    (20u8..=26, 1u8..=4).prop_map(|(pool_len, extra)| {
        let len = (pool_len + extra).min(30);
        AddressPlan::new(
            format!("10.0.0.0/{pool_len}").parse().unwrap(),
            len,
            "fd00:1:2::/48".parse().unwrap(),
        )
        .unwrap()
    })
}

fn native(n: u8) -> Ipv6Net {
    format!("2001:db8:0:{n}::/64").parse().unwrap()
}

fn pick(nodes: &[NodeAllocation], i: usize, role: Option<Role>) -> Option<&NodeAllocation> {
    let candidates: Vec<_> = nodes
        .iter()
        .filter(|n| role.is_none_or(|r| n.role == r))
        .collect();
    (!candidates.is_empty()).then(|| candidates[i % candidates.len()])
}

/// Everything a node or client ever received; none of it may be handed out again.
#[derive(Default)]
struct History {
    indexes: HashSet<u32>,
    ipv4: HashSet<IpNet>,
    ipv6_from_pool: HashSet<IpNet>,
    client_addresses: HashSet<IpAddr>,
}

impl History {
    fn node(&mut self, node: &NodeAllocation, native: bool) {
        assert!(
            self.indexes.insert(node.index),
            "index {} reused",
            node.index
        );
        assert!(self.ipv4.insert(node.ipv4.into()), "{} reused", node.ipv4);
        // A revoked core may come back with its own native /64; pool prefixes never repeat.
        if !native {
            assert!(
                self.ipv6_from_pool.insert(node.ipv6.into()),
                "{} reused",
                node.ipv6
            );
        }
    }
}

fn overlap(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The invariants that must hold between any two operations.
fn check_invariants(a: &Allocator) {
    let plan = *a.plan();
    let nodes: Vec<&NodeAllocation> = a.nodes().collect();
    let mut client_addresses = HashSet::new();
    for n in &nodes {
        // Every prefix lies inside its parent.
        assert!(plan.pool4.contains(&n.ipv4));
        assert!(n.ipv4.contains(&n.ipv4_clients) && n.ipv4.contains(&n.ipv4_apps));
        assert!(!overlap(n.ipv4_clients.into(), n.ipv4_apps.into()));
        assert!(n.ipv4_clients.contains(&n.ipv4_address));
        assert!(n.ipv6.contains(&n.ipv6_clients) && n.ipv6.contains(&n.ipv6_address));
        assert!(!n.ipv6_clients.contains(&n.ipv6_address));
        match n.role {
            Role::Core => assert_eq!(n.ipv6.prefix_len(), 64),
            Role::Spoke => {
                assert_eq!(n.ipv6.prefix_len(), 80);
                if let Some(core) = a
                    .node(n.core.as_deref().unwrap())
                    .filter(|c| c.role == Role::Core)
                {
                    // The core may have been revoked and its name reused by a new core.
                    if core.index < n.index && core.ipv6.contains(&n.ipv6) {
                        assert_ne!(
                            n.ipv6.network(),
                            core.ipv6.network(),
                            "a spoke never gets /80 number 0"
                        );
                    }
                }
            }
        }
        for (_, c) in a.clients(&n.name) {
            assert!(n.ipv4_clients.contains(&c.ipv4));
            assert!(
                c.ipv4 != n.ipv4_address
                    && c.ipv4 != n.ipv4_clients.network()
                    && c.ipv4 != n.ipv4_clients.broadcast()
            );
            assert!(n.ipv6_clients.contains(&c.ipv6));
            assert!(
                client_addresses.insert(IpAddr::V4(c.ipv4))
                    && client_addresses.insert(IpAddr::V6(c.ipv6))
            );
        }
    }
    // No two live nodes overlap, except a spoke inside its own core's /64.
    for (i, x) in nodes.iter().enumerate() {
        for y in &nodes[i + 1..] {
            assert!(
                !overlap(x.ipv4.into(), y.ipv4.into()),
                "{} and {} overlap",
                x.ipv4,
                y.ipv4
            );
            if overlap(x.ipv6.into(), y.ipv6.into()) {
                let (core, spoke) = if x.role == Role::Core { (x, y) } else { (y, x) };
                assert!(
                    core.role == Role::Core
                        && spoke.role == Role::Spoke
                        && spoke.core.as_deref() == Some(&core.name),
                    "{} ({}) and {} ({}) overlap",
                    x.name,
                    x.ipv6,
                    y.name,
                    y.ipv6
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn allocations_never_overlap_or_repeat(plan in plan(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut a = Allocator::new(plan).unwrap();
        let mut history = History::default();
        for (step, op) in ops.into_iter().enumerate() {
            let before = a.clone();
            let live: Vec<NodeAllocation> = a.nodes().cloned().collect();
            let name = format!("n{step}");
            let result: Result<(), mesh_config::AllocError> = match op {
                Op::Core { native: n } => a
                    .allocate_node(&name, Role::Core, None, n.map(native))
                    .map(|node| history.node(&node, n.is_some())),
                Op::Spoke { core } => match pick(&live, core, Some(Role::Core)) {
                    Some(core) => a
                        .allocate_node(&name, Role::Spoke, Some(&core.name), None)
                        .map(|node| history.node(&node, false)),
                    None => continue,
                },
                Op::Client { node } => match pick(&live, node, None) {
                    Some(node) => a.allocate_client(&node.name, &name).map(|c| {
                        assert!(history.client_addresses.insert(IpAddr::V4(c.ipv4)), "{} reused", c.ipv4);
                        assert!(history.client_addresses.insert(IpAddr::V6(c.ipv6)), "{} reused", c.ipv6);
                    }),
                    None => continue,
                },
                Op::Revoke { node } => match pick(&live, node, None) {
                    Some(node) => a.revoke(&node.name).map(|_| ()),
                    None => continue,
                },
                Op::Reload => {
                    let json = serde_json::to_string(&a).unwrap();
                    let loaded: Allocator = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(&loaded, &a);
                    a = loaded;
                    Ok(())
                }
            };
            if result.is_err() {
                prop_assert_eq!(&a, &before, "a refused operation changed the allocator");
            }
            check_invariants(&a);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        check_parse_result(&text);
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(text in "[\\[\\]a-z0-9_.=\" \n,{}:/-]{0,300}") {
        check_parse_result(&text);
    }

    #[test]
    fn parse_never_panics_on_mutated_config(edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..8, "\\PC{0,6}"), 1..6)) {
        let mut text = VALID.to_owned();
        for (at, delete, insert) in edits {
            let mut start = at.index(text.len() + 1);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + delete).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(start..end, &insert);
        }
        check_parse_result(&text);
    }
}

/// The example config from docs/architecture.md.
/// A persisted allocator with a bit of everything in it.
fn persisted_sample() -> String {
    let plan = AddressPlan::new(
        "10.0.0.0/8".parse().unwrap(),
        16,
        "fd00:1:2::/48".parse().unwrap(),
    )
    .unwrap();
    let mut a = Allocator::new(plan).unwrap();
    a.allocate_node("alpha", Role::Core, None, None).unwrap();
    a.allocate_node("beta", Role::Core, None, Some(native(1)))
        .unwrap();
    a.allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    a.allocate_node("s2", Role::Spoke, Some("beta"), None)
        .unwrap();
    a.allocate_client("s1", "phone").unwrap();
    a.revoke("alpha").unwrap();
    serde_json::to_string_pretty(&a).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A damaged state file is an error, never a panic; and whatever loads is consistent.
    #[test]
    fn loading_mutated_state_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), "[0-9a-f:/\\.]{1,3}"), 1..4),
    ) {
        let mut text = persisted_sample();
        for (at, replacement) in edits {
            let start = at.index(text.len());
            let end = (start + replacement.len()).min(text.len());
            text.replace_range(start..end, &replacement);
        }
        if let Ok(a) = serde_json::from_str::<Allocator>(&text) {
            check_invariants(&a);
        }
    }
}

const VALID: &str = include_str!("data/meshd.toml");

#[test]
fn the_mutation_base_is_valid() {
    mesh_config::parse(VALID, Path::new("meshd.toml")).unwrap();
}

/// Parsing returns (never panics), and any diagnostic points inside the text.
fn check_parse_result(text: &str) {
    let Err(error) = mesh_config::parse(text, Path::new("meshd.toml")) else {
        return;
    };
    let lines = text.split('\n').count();
    assert!(!error.diagnostics().is_empty());
    for d in error.diagnostics() {
        assert!(d.line >= 1 && d.line <= lines, "{d} outside {lines} lines");
        let line_len = text.split('\n').nth(d.line - 1).unwrap().chars().count();
        assert!(
            d.column >= 1 && d.column <= line_len + 1,
            "{d}: column past the line end"
        );
        assert!(!d.message.is_empty());
    }
}
