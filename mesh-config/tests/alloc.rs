//! The address plan as docs/architecture.md states it, every refusal, and persistence.

use std::net::IpAddr;

use ipnet::Ipv6Net;
use mesh_config::{AddressPlan, AllocError, Allocator, Role};

fn plan(pool4: &str, len: u8, pool6: &str) -> AddressPlan {
    AddressPlan::new(pool4.parse().unwrap(), len, pool6.parse().unwrap()).unwrap()
}

fn allocator() -> Allocator {
    Allocator::new(plan("10.0.0.0/8", 16, "fd12:3456:789a::/48")).unwrap()
}

fn v6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

#[test]
fn cores_spokes_and_clients_follow_the_plan() {
    let mut a = allocator();
    let alpha = a.allocate_node("alpha", Role::Core, None, None).unwrap();
    assert_eq!(alpha.index, 1);
    assert_eq!(alpha.ipv4.to_string(), "10.1.0.0/16");
    assert_eq!(alpha.ipv4_clients.to_string(), "10.1.0.0/17");
    assert_eq!(alpha.ipv4_apps.to_string(), "10.1.128.0/17");
    assert_eq!(alpha.ipv4_address.to_string(), "10.1.0.1");
    assert_eq!(alpha.ipv6.to_string(), "fd12:3456:789a:1::/64");
    assert_eq!(alpha.ipv6_address.to_string(), "fd12:3456:789a:1::1");
    assert_eq!(alpha.ipv6_clients.to_string(), "fd12:3456:789a:1:0:1::/96");
    assert_eq!(alpha.core, None);

    let s1 = a
        .allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    assert_eq!(s1.index, 2);
    assert_eq!(s1.ipv4.to_string(), "10.2.0.0/16");
    assert_eq!(s1.ipv4_address.to_string(), "10.2.0.1");
    assert_eq!(s1.ipv6.to_string(), "fd12:3456:789a:1:1::/80");
    assert_eq!(s1.ipv6_address.to_string(), "fd12:3456:789a:1:1::1");
    assert_eq!(s1.ipv6_clients.to_string(), "fd12:3456:789a:1:1:1::/96");
    assert_eq!(s1.core.as_deref(), Some("alpha"));

    let beta = a
        .allocate_node("beta", Role::Core, None, Some(v6("2001:db8:1:2::/64")))
        .unwrap();
    assert_eq!(beta.index, 3);
    assert_eq!(beta.ipv6.to_string(), "2001:db8:1:2::/64");
    assert_eq!(beta.ipv6_address.to_string(), "2001:db8:1:2::1");
    let gamma = a.allocate_node("gamma", Role::Core, None, None).unwrap();
    assert_eq!(
        gamma.ipv6.to_string(),
        "fd12:3456:789a:2::/64",
        "native cores use no pool /64"
    );
    let s2 = a
        .allocate_node("s2", Role::Spoke, Some("beta"), None)
        .unwrap();
    assert_eq!(s2.ipv6.to_string(), "2001:db8:1:2:1::/80");

    let c1 = a.allocate_client("alpha", "laptop").unwrap();
    assert_eq!(c1.ipv4.to_string(), "10.1.0.2");
    assert_eq!(c1.ipv6.to_string(), "fd12:3456:789a:1:0:1:0:1");
    let c2 = a.allocate_client("alpha", "phone").unwrap();
    assert_eq!(c2.ipv4.to_string(), "10.1.0.3");
    let c3 = a.allocate_client("s1", "phone").unwrap();
    assert_eq!(c3.ipv4.to_string(), "10.2.0.2");
    assert_eq!(c3.ipv6.to_string(), "fd12:3456:789a:1:1:1:0:1");

    assert_eq!(a.node("s1"), Some(&s1));
    assert_eq!(a.client("alpha", "phone"), Some(&c2));
    assert_eq!(
        a.clients("alpha").map(|(n, _)| n).collect::<Vec<_>>(),
        ["laptop", "phone"]
    );
    let names: Vec<&str> = a.nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["alpha", "s1", "beta", "gamma", "s2"]);
    let addr = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(a.node_for_address(addr("10.2.3.4")).unwrap().name, "s1");
    assert_eq!(
        a.node_for_address(addr("fd12:3456:789a:1:1::9"))
            .unwrap()
            .name,
        "s1"
    );
    assert_eq!(
        a.node_for_address(addr("fd12:3456:789a:1::9"))
            .unwrap()
            .name,
        "alpha"
    );
    assert_eq!(a.node_for_address(addr("10.200.0.1")), None);
}

#[test]
fn revoked_numbers_are_never_reused() {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, None).unwrap();
    a.allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    a.allocate_client("alpha", "laptop").unwrap();
    a.revoke("s1").unwrap();
    assert!(a.is_revoked("s1"));
    assert_eq!(a.node("s1"), None);
    // The name may come back (a reinstalled router), with new numbers.
    let again = a
        .allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    assert_eq!(again.index, 3);
    assert_eq!(again.ipv6.to_string(), "fd12:3456:789a:1:2::/80");
    assert!(!a.is_revoked("s1"));

    let revoked = a.revoke("alpha").unwrap();
    assert_eq!(revoked.index, 1);
    assert_eq!(a.client("alpha", "laptop"), None);
    let alpha = a.allocate_node("alpha", Role::Core, None, None).unwrap();
    assert_eq!(
        (alpha.index, alpha.ipv6.to_string()),
        (4, "fd12:3456:789a:2::/64".to_owned())
    );
    assert_eq!(
        a.allocate_client("alpha", "laptop")
            .unwrap()
            .ipv4
            .to_string(),
        "10.4.0.2"
    );
    // A spoke of the revoked core keeps its prefix.
    assert_eq!(
        a.node("s1").unwrap().ipv6.to_string(),
        "fd12:3456:789a:1:2::/80"
    );
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, None).unwrap();
    a.allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    let before = a.clone();
    let cases: Vec<(Result<_, AllocError>, &str)> = vec![
        (
            a.allocate_node("alpha", Role::Core, None, None),
            "a node named \"alpha\" already exists",
        ),
        (
            a.allocate_node("s2", Role::Spoke, Some("nobody"), None),
            "there is no core named \"nobody\" to attach the spoke to",
        ),
        (
            a.allocate_node("s2", Role::Spoke, Some("s1"), None),
            "\"s1\" is a spoke; a spoke can only attach to a core",
        ),
        (
            a.allocate_node("s2", Role::Spoke, None, None),
            "spoke \"s2\" needs a core to attach to",
        ),
        (
            a.allocate_node("c2", Role::Core, Some("alpha"), None),
            "core \"c2\" cannot attach to another core; only spokes name a core",
        ),
        (
            a.allocate_node("s2", Role::Spoke, Some("alpha"), Some(v6("2001:db8::/64"))),
            "spoke \"s2\" cannot have a native IPv6 prefix; its /80 comes from its core",
        ),
        (
            a.allocate_node("c2", Role::Core, None, Some(v6("2001:db8::/48"))),
            "native IPv6 prefix 2001:db8::/48 must be a /64 with no host bits set",
        ),
        (
            a.allocate_node("c2", Role::Core, None, Some(v6("fd12:3456:789a:99::/64"))),
            "native IPv6 prefix fd12:3456:789a:99::/64 lies inside the mesh pool fd12:3456:789a::/48",
        ),
        (
            a.allocate_node("Bad", Role::Core, None, None),
            "invalid name \"Bad\": \"Bad\" contains 'B'; only lowercase letters a-z, digits 0-9 and '-' are allowed",
        ),
    ];
    for (result, message) in cases {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
    assert_eq!(a, before);
    assert_eq!(
        a.revoke("nobody").unwrap_err(),
        AllocError::UnknownNode("nobody".into())
    );
    assert_eq!(
        a.allocate_client("nobody", "x").unwrap_err().to_string(),
        "there is no node named \"nobody\""
    );
    a.allocate_client("alpha", "x").unwrap();
    assert_eq!(
        a.allocate_client("alpha", "x").unwrap_err().to_string(),
        "node \"alpha\" already has a client named \"x\""
    );
    assert!(matches!(
        a.allocate_client("alpha", "X Y"),
        Err(AllocError::InvalidName { .. })
    ));

    a.allocate_node("beta", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    assert_eq!(
        a.allocate_node("c3", Role::Core, None, Some(v6("2001:db8::/64")))
            .unwrap_err()
            .to_string(),
        "native IPv6 prefix 2001:db8::/64 is already used by node \"beta\""
    );
}

#[test]
fn ipv4_pool_exhaustion() {
    // A /24 in /26s: indexes 1..=3 usable, 0 reserved.
    let mut a = Allocator::new(plan("192.0.2.0/24", 26, "fd00::/48")).unwrap();
    for name in ["a", "b", "c"] {
        a.allocate_node(name, Role::Core, None, None).unwrap();
    }
    assert_eq!(a.node("c").unwrap().ipv4.to_string(), "192.0.2.192/26");
    let err = a.allocate_node("d", Role::Core, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "IPv4 pool 192.0.2.0/24 has no /26 left for another node"
    );
    a.revoke("b").unwrap();
    assert!(matches!(
        a.allocate_node("d", Role::Core, None, None),
        Err(AllocError::Ipv4Exhausted { .. })
    ));
}

#[test]
fn ipv6_pool_exhaustion() {
    // A /48 has 65536 /64s; number 0 is reserved like IPv4's index 0.
    let mut a = Allocator::new(plan("10.0.0.0/8", 30, "fd00::/48")).unwrap();
    for i in 1..65536u32 {
        a.allocate_node(&format!("c{i}"), Role::Core, None, None)
            .unwrap();
    }
    assert_eq!(
        a.node("c65535").unwrap().ipv6.to_string(),
        "fd00:0:0:ffff::/64"
    );
    let err = a.allocate_node("last", Role::Core, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "IPv6 pool fd00::/48 has no /64 left for another core"
    );
    // Native cores and spokes still fit.
    a.allocate_node("native", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    a.allocate_node("s", Role::Spoke, Some("c1"), None).unwrap();
}

#[test]
fn spoke_and_client_exhaustion() {
    let mut a = Allocator::new(plan("10.0.0.0/8", 28, "fd00::/48")).unwrap();
    a.allocate_node("core", Role::Core, None, None).unwrap();
    // A /28 node prefix: client half /29 = 8 addresses: network, node, 5 clients, last.
    let addrs: Vec<String> = (0..5)
        .map(|i| {
            a.allocate_client("core", &format!("c{i}"))
                .unwrap()
                .ipv4
                .to_string()
        })
        .collect();
    assert_eq!(addrs.first().unwrap(), "10.0.0.18");
    assert_eq!(addrs.last().unwrap(), "10.0.0.22");
    assert_eq!(
        a.allocate_client("core", "c5").unwrap_err().to_string(),
        "node \"core\" has no client address left in 10.0.0.16/29"
    );

    // 65535 spokes fill a core's /64 (the /80 number 0 is the core's own). Use a big
    // IPv4 pool so the spokes' /30s do not run out first.
    let mut a = Allocator::new(plan("10.0.0.0/8", 30, "fd00::/48")).unwrap();
    a.allocate_node("core", Role::Core, None, None).unwrap();
    for i in 1..65536u32 {
        a.allocate_node(&format!("s{i}"), Role::Spoke, Some("core"), None)
            .unwrap();
    }
    assert_eq!(
        a.allocate_node("one-more", Role::Spoke, Some("core"), None)
            .unwrap_err()
            .to_string(),
        "core \"core\" has no /80 left in fd00:0:0:1::/64 for another spoke"
    );
}

#[test]
fn persisted_form_round_trips_and_is_versioned() {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, None).unwrap();
    a.allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    a.allocate_node("beta", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    a.allocate_client("s1", "phone").unwrap();
    a.revoke("beta").unwrap();
    let json = serde_json::to_string_pretty(&a).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["version"], 1);
    let back: Allocator = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    // Numbers keep growing after a reload.
    let mut back = back;
    assert_eq!(
        back.allocate_node("gamma", Role::Core, None, None)
            .unwrap()
            .index,
        4
    );
}

/// Applies `edit` to the persisted JSON of a small allocator and returns the load error.
fn corrupt(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, None).unwrap();
    a.allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    a.allocate_node("beta", Role::Core, None, None).unwrap();
    a.allocate_client("alpha", "phone").unwrap();
    let mut value = serde_json::to_value(&a).unwrap();
    edit(&mut value);
    serde_json::from_value::<Allocator>(value)
        .unwrap_err()
        .to_string()
}

#[test]
fn corrupt_state_is_detected() {
    use serde_json::json;
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["version"] = json!(2)),
            "version 2 is not supported",
        ),
        (
            Box::new(|v| v["next_node_index"] = json!(3)),
            "node \"beta\": index 3 is not below next_node_index 3",
        ),
        (
            Box::new(|v| v["next_node_index"] = json!(0)),
            "next_node_index = 0 is out of range",
        ),
        (
            Box::new(|v| v["next_core6_index"] = json!(2)),
            "node \"beta\": /64 number 2 is not below next_core6_index 2",
        ),
        (
            Box::new(|v| v["nodes"][2]["allocation"]["index"] = json!(1)),
            "node \"beta\": index 1 is used twice",
        ),
        (
            Box::new(|v| v["nodes"][0]["allocation"]["ipv4"] = json!("10.9.0.0/16")),
            "node \"alpha\": stored prefixes do not match its numbers",
        ),
        (
            Box::new(|v| {
                v["nodes"][0]["allocation"]["ipv6_address"] = json!("fd12:3456:789a:1::2")
            }),
            "node \"alpha\": stored prefixes do not match",
        ),
        (
            Box::new(|v| v["nodes"][2]["ipv6_source"] = json!({"from": "pool", "index": 1})),
            "node \"beta\": /64 number 1 is used twice",
        ),
        (
            Box::new(|v| v["nodes"][1]["ipv6_source"]["index"] = json!(5)),
            "node \"s1\": /80 number 5 is not below its core's next_spoke 2",
        ),
        (
            Box::new(|v| v["nodes"][1]["ipv6_source"]["core_index"] = json!(3)),
            "node \"s1\": /80 number 1 is not below its core's next_spoke 1",
        ),
        (
            Box::new(|v| v["nodes"][1]["ipv6_source"] = json!({"from": "pool", "index": 1})),
            "a spoke cannot take its IPv6 prefix from",
        ),
        (
            Box::new(|v| v["nodes"][2]["allocation"]["name"] = json!("alpha")),
            "two live nodes have this name",
        ),
        (
            Box::new(|v| v["nodes"][0]["clients"][0]["addresses"]["ipv4"] = json!("10.1.0.9")),
            "client \"phone\" addresses do not match its number",
        ),
        (
            Box::new(|v| v["nodes"][0]["next_client"] = json!(1)),
            "client \"phone\" has an invalid or reused number 1",
        ),
        (
            Box::new(|v| v["plan"]["node_prefix_len4"] = json!(8)),
            "address plan is invalid",
        ),
        (Box::new(|v| v["extra"] = json!(1)), "unknown field `extra`"),
    ];
    for (edit, expected) in cases {
        let message = corrupt(edit);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[test]
fn persisted_native_overlap_is_detected() {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    a.allocate_node("beta", Role::Core, None, Some(v6("2001:db8:0:1::/64")))
        .unwrap();
    let mut value = serde_json::to_value(&a).unwrap();
    for field in ["ipv6", "ipv6_clients", "ipv6_address"] {
        value["nodes"][1]["allocation"][field] = value["nodes"][0]["allocation"][field].clone();
    }
    let err = serde_json::from_value::<Allocator>(value)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node \"alpha\" and node \"beta\" (2001:db8::/64) overlap"),
        "{err}"
    );
}

#[test]
fn a_returning_native_core_continues_its_numbering() {
    let mut a = allocator();
    a.allocate_node("alpha", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    let s1 = a
        .allocate_node("s1", Role::Spoke, Some("alpha"), None)
        .unwrap();
    let c1 = a.allocate_client("alpha", "phone").unwrap();
    a.revoke("s1").unwrap();
    a.revoke("alpha").unwrap();
    a.allocate_node("alpha", Role::Core, None, Some(v6("2001:db8::/64")))
        .unwrap();
    let s2 = a
        .allocate_node("s2", Role::Spoke, Some("alpha"), None)
        .unwrap();
    assert_eq!(s1.ipv6.to_string(), "2001:db8:0:0:1::/80");
    assert_eq!(s2.ipv6.to_string(), "2001:db8:0:0:2::/80");
    let c2 = a.allocate_client("alpha", "phone").unwrap();
    assert_ne!(c1.ipv6, c2.ipv6);
    let back: Allocator = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
}
