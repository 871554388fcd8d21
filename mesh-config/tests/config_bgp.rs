//! `[bgp]` in meshd.toml: neighbours with their session settings, TCP-MD5 keys and policies
//! (inline or named), as the seeds write them; and one test per diagnostic, each pointing at
//! the key that is wrong.

use std::path::Path;

use mesh_config::{BgpFamily, Community, ConfigError, PolicyAction, PolicySpec, TermAction, parse};

const FILE: &str = "/etc/meshd/meshd.toml";
const HEAD: &str = "[node]\nname = \"alpha\"\nrole = \"core\"\n[routing]\nasn = 64514\n";

fn config(rest: &str) -> Result<mesh_config::Config, ConfigError> {
    parse(&format!("{HEAD}{rest}"), Path::new(FILE))
}

/// Every diagnostic for `rest` after the common head, which must make the config invalid.
fn errors(rest: &str) -> Vec<String> {
    match config(rest) {
        Ok(c) => panic!("accepted invalid config: {c:#?}"),
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

fn error(rest: &str) -> String {
    let all = errors(rest);
    assert_eq!(all.len(), 1, "expected one diagnostic, got {all:#?}");
    all.into_iter().next().unwrap()
}

const NEIGHBOR: &str =
    "[[bgp.neighbor]]\nname = \"remi-isp1\"\naddress = \"172.16.11.2\"\nremote_asn = 64513\n";

/// The friends-VPN seed's MikroTik filters as meshd policies: Rémi's LANs accepted with a
/// length range, ISP 1 preferred by local-pref, our AS prepended 3 times on ISP 2.
const SEED: &str = r#"
[[bgp.neighbor]]
name = "remi-isp1"
address = "172.16.11.2"
remote_asn = 64513
local_address = "172.16.11.1"
hold_time = 30
connect_retry = 5
families = ["ipv4"]
password_file = "/etc/meshd/bgp-remi.key"
import = ["prefer", "remi-in"]
export = "lans"

[[bgp.neighbor]]
name = "remi-isp2"
address = "172.16.10.2"
remote_asn = 64513
passive = true
port = 1179
password = "not so secret"
multihop = 2
import = "remi-in"

[bgp.neighbor.export]
default = "reject"
[[bgp.neighbor.export.term]]
match.prefixes = ["192.168.0.0/24"]
set.prepend = 3
set.add_communities = ["64514:200", "no-export"]
action = "accept"

[bgp.policy.prefer]
[[bgp.policy.prefer.term]]
name = "isp1 first"
set.local_pref = 200
action = "next"

[bgp.policy.remi-in]
[[bgp.policy.remi-in.term]]
match.communities = ["64513:666"]
action = "reject"
[[bgp.policy.remi-in.term]]
match.prefixes = ["192.168.42.0/23 ge 23 le 32"]
match.large_communities = ["64513:*:1"]
match.as_path_contains = [64513]
match.origin_asn = [64513, 64515]
set.med = 10
set.remove_communities = ["64513:*"]
set.add_large_communities = ["64514:1:42"]
set.remove_large_communities = ["64513:*:*"]
action = "accept"

[bgp.policy.lans]
prefixes = ["192.168.0.0/24"]
"#;

#[test]
fn the_seed_policies_parse() {
    let c = config(SEED).unwrap();
    let isp1 = &c.bgp.neighbors[0];
    assert_eq!(isp1.local_address, Some("172.16.11.1".parse().unwrap()));
    assert_eq!(
        (isp1.hold_time(), isp1.connect_retry(), isp1.port()),
        (30, 5, 179)
    );
    assert_eq!(isp1.families(), vec![BgpFamily::Ipv4]);
    assert_eq!(
        isp1.import,
        PolicySpec::Named(vec!["prefer".into(), "remi-in".into()])
    );
    let import = c.bgp.resolve(&isp1.import);
    assert_eq!(import[0].terms[0].set.local_pref, Some(200));
    assert_eq!(import[0].terms[0].action, TermAction::Next);
    assert_eq!(
        import[1].terms[1].matches.prefixes[0].to_string(),
        "192.168.42.0/23 ge 23 le 32"
    );
    assert_eq!(c.bgp.resolve(&isp1.export)[0].prefixes.len(), 1);

    let isp2 = &c.bgp.neighbors[1];
    assert!(isp2.passive);
    assert_eq!((isp2.port(), isp2.multihop), (1179, Some(2)));
    assert_eq!(isp2.families(), vec![BgpFamily::Ipv4, BgpFamily::Ipv6]);
    let PolicySpec::Inline(export) = &isp2.export else {
        panic!("inline export expected")
    };
    assert_eq!(export.default, Some(PolicyAction::Reject));
    assert_eq!(export.terms[0].set.prepend, Some(3));
    assert_eq!(
        export.terms[0].set.add_communities,
        vec![Community::new(64514, 200), Community(0xFFFF_FF01)]
    );

    // What `meshd init` would write back reads the same.
    let again = parse(&c.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, c);
}

#[test]
fn the_old_prefixes_and_default_form_still_works() {
    let c = config(&format!(
        "{NEIGHBOR}import = {{ prefixes = [\"192.168.50.0/24 le 28\"], default = \"reject\" }}\n"
    ))
    .unwrap();
    let import = c.bgp.resolve(&c.bgp.neighbors[0].import);
    assert_eq!(import[0].prefixes[0].le, Some(28));
    assert_eq!(import[0].default, Some(PolicyAction::Reject));
}

#[test]
fn session_settings_out_of_range() {
    let e = errors(&format!(
        "{NEIGHBOR}hold_time = 2\nconnect_retry = 0\nport = 0\nmultihop = 0\nfamilies = []\n"
    ));
    assert_eq!(
        e,
        [
            "/etc/meshd/meshd.toml:10:13: bgp.neighbor[0].hold_time: a hold time of 2 s is not allowed; use 0 (no keepalives) or at least 3 seconds (RFC 4271 §4.2)",
            "/etc/meshd/meshd.toml:11:17: bgp.neighbor[0].connect_retry: 0 seconds would retry without pause; use at least 1 (default 30)",
            "/etc/meshd/meshd.toml:12:8: bgp.neighbor[0].port: port 0 is not allowed; leave the key out for BGP's port 179",
            "/etc/meshd/meshd.toml:13:12: bgp.neighbor[0].multihop: a TTL of 0 cannot reach anyone; use 1 to 255, or leave the key out for a directly connected neighbour",
            "/etc/meshd/meshd.toml:14:12: bgp.neighbor[0].families: no address family; list \"ipv4\", \"ipv6\" or both (or leave the key out for both)",
        ]
    );
    assert!(config(&format!("{NEIGHBOR}hold_time = 0\n")).is_ok());
    assert!(config(&format!("{NEIGHBOR}hold_time = 3\n")).is_ok());
    assert_eq!(
        error(&format!("{NEIGHBOR}families = [\"ipv4\", \"ipv4\"]\n")),
        "/etc/meshd/meshd.toml:10:21: bgp.neighbor[0].families[1]: duplicate family ipv4 (same as bgp.neighbor[0].families[0])"
    );
    let e = error(&format!("{NEIGHBOR}families = [\"ipv5\"]\n"));
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:10:13: bgp.neighbor[0].families[0]: unknown variant `ipv5`, expected `ipv4` or `ipv6`"),
        "{e}"
    );
}

#[test]
fn addresses() {
    assert_eq!(
        error(&format!("{NEIGHBOR}local_address = \"2001:db8::1\"\n")),
        "/etc/meshd/meshd.toml:10:17: bgp.neighbor[0].local_address: 2001:db8::1 and the neighbour's address 172.16.11.2 are of different address families"
    );
    assert_eq!(
        error(&format!("{NEIGHBOR}local_address = \"172.16.11.2\"\n")),
        "/etc/meshd/meshd.toml:10:17: bgp.neighbor[0].local_address: 172.16.11.2 is the neighbour's own address"
    );
    assert_eq!(
        error("[[bgp.neighbor]]\nname = \"x\"\naddress = \"224.0.0.5\"\nremote_asn = 64513\n"),
        "/etc/meshd/meshd.toml:8:11: bgp.neighbor[0].address: 224.0.0.5 is not the address of one router (unspecified, multicast or broadcast)"
    );
}

#[test]
fn passwords() {
    assert_eq!(
        error(&format!(
            "{NEIGHBOR}password = \"a\"\npassword_file = \"/etc/meshd/bgp-remi.key\"\n"
        )),
        "/etc/meshd/meshd.toml:10:12: bgp.neighbor[0].password: both password and password_file are given; keep only one (password_file is preferred: it keeps the key out of the config)"
    );
    assert_eq!(
        error(&format!("{NEIGHBOR}password = \"\"\n")),
        "/etc/meshd/meshd.toml:10:12: bgp.neighbor[0].password: the password is empty; leave the key out for a session without TCP-MD5"
    );
    assert_eq!(
        error(&format!("{NEIGHBOR}password = \"{}\"\n", "x".repeat(81))),
        "/etc/meshd/meshd.toml:10:12: bgp.neighbor[0].password: the password is 81 bytes long; TCP-MD5 keys are at most 80 bytes"
    );
    assert_eq!(
        error(&format!("{NEIGHBOR}password_file = \"bgp.key\"\n")),
        "/etc/meshd/meshd.toml:10:17: bgp.neighbor[0].password_file: \"bgp.key\" is not an absolute path (such as /etc/meshd/bgp-remi-isp1.key)"
    );
}

#[test]
fn policy_references() {
    assert_eq!(
        error(&format!("{NEIGHBOR}import = \"remi-in\"\n")),
        "/etc/meshd/meshd.toml:10:10: bgp.neighbor[0].import: no policy named \"remi-in\"; define it as [bgp.policy.NAME]"
    );
    assert_eq!(
        error(&format!(
            "{NEIGHBOR}import = [\"a\", \"b\"]\n[bgp.policy.a]\ndefault = \"accept\"\n"
        )),
        "/etc/meshd/meshd.toml:10:16: bgp.neighbor[0].import[1]: no policy named \"b\"; defined are: a"
    );
    assert_eq!(
        error(&format!("{NEIGHBOR}export = []\n")),
        "/etc/meshd/meshd.toml:10:10: bgp.neighbor[0].export: names no policy; leave the key out to let nothing through (RFC 8212)"
    );
    let e = error(&format!("{NEIGHBOR}import = 5\n"));
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:10:10: bgp.neighbor[0].import: invalid type: integer `5`, expected a policy name, an array of policy names, or a table"),
        "{e}"
    );
    assert_eq!(
        error("[bgp.policy.Remi]\ndefault = \"accept\"\n"),
        "/etc/meshd/meshd.toml:6:1: bgp.policy.Remi: policy \"Remi\" contains 'R'; only lowercase letters a-z, digits 0-9 and '-' are allowed"
    );
}

#[test]
fn local_pref_is_not_exported_to_another_as() {
    assert_eq!(
        error(&format!(
            "{NEIGHBOR}export = \"out\"\n[bgp.policy.out]\n[[bgp.policy.out.term]]\nset.local_pref = 200\naction = \"accept\"\n"
        )),
        "/etc/meshd/meshd.toml:13:18: bgp.policy.out.term[0].set.local_pref: LOCAL_PREF is not sent to another AS (RFC 4271 §5.1.5), but this policy is the export of external neighbour \"remi-isp1\"; set it on import"
    );
    // To an iBGP neighbour it is fine.
    let ibgp = "[[bgp.neighbor]]\nname = \"rr\"\naddress = \"10.0.0.1\"\nremote_asn = 64514\n\
                [bgp.neighbor.export]\n[[bgp.neighbor.export.term]]\nset.local_pref = 200\naction = \"accept\"\n";
    assert!(
        config(ibgp).is_ok(),
        "{:?}",
        config(ibgp).unwrap_err().to_string()
    );
}

#[test]
fn terms_that_cannot_matter() {
    let e = errors(
        "[bgp.policy.p]\nprefixes = [\"10.0.0.0/8\"]\n\
         [[bgp.policy.p.term]]\naction = \"reject\"\n\
         [[bgp.policy.p.term]]\nset.med = 5\nset.prepend = 17\naction = \"next\"\n\
         [[bgp.policy.p.term]]\naction = \"next\"\n",
    );
    assert_eq!(
        e,
        [
            "/etc/meshd/meshd.toml:7:12: bgp.policy.p.prefixes: these prefixes are never looked at: term[0] has no match conditions and decides every route",
            "/etc/meshd/meshd.toml:10:1: bgp.policy.p.term[1]: this term is never reached: term[0] has no match conditions and decides every route",
            "/etc/meshd/meshd.toml:12:15: bgp.policy.p.term[1].set.prepend: prepend 17 is out of range; expected 1 to 16",
            "/etc/meshd/meshd.toml:14:1: bgp.policy.p.term[2]: this term is never reached: term[0] has no match conditions and decides every route",
            "/etc/meshd/meshd.toml:15:10: bgp.policy.p.term[2].action: \"next\" without a `set` does nothing; add what to change, or use \"accept\" or \"reject\"",
        ]
    );
}

#[test]
fn term_syntax() {
    let e = error(
        "[bgp.policy.p]\n[[bgp.policy.p.term]]\nmatch.communities = [\"64513:x\"]\naction = \"accept\"\n",
    );
    assert_eq!(
        e,
        "/etc/meshd/meshd.toml:8:22: bgp.policy.p.term[0].match.communities[0]: \"64513:x\" is not a community pattern; expected ASN:VALUE with numbers from 0 to 65535 or * for any (such as 64513:*)"
    );
    let e = error("[bgp.policy.p]\n[[bgp.policy.p.term]]\nset.local_pref = 1\n");
    assert_eq!(
        e,
        "/etc/meshd/meshd.toml:7:1: bgp.policy.p.term[0].action: required key is missing"
    );
    let e =
        error("[bgp.policy.p]\n[[bgp.policy.p.term]]\nmatch.prefix = []\naction = \"accept\"\n");
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:8:7: bgp.policy.p.term[0].match.prefix: unknown key `prefix`, expected one of `prefixes`"),
        "{e}"
    );
    let e = error("[bgp.policy.p]\n[[bgp.policy.p.term]]\naction = \"drop\"\n");
    assert!(
        e.starts_with("/etc/meshd/meshd.toml:8:10: bgp.policy.p.term[0].action: unknown variant `drop`, expected one of `accept`, `reject`, `next`"),
        "{e}"
    );
}

/// The packaged, commented example (packaging/meshd.toml) with every setting uncommented is a
/// valid config: the documented keys and forms exist and mean what the comments say.
#[test]
fn the_packaged_example_is_valid_when_uncommented() {
    let example = include_str!("../../packaging/meshd.toml");
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.starts_with(' ') && !rest.is_empty() => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let config = parse(&uncommented, Path::new("packaging/meshd.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let n = &config.bgp.neighbors[0];
    assert!(n.password_file.is_some() && n.multihop.is_some());
    assert!(
        config.bgp.policies.values().all(|p| !p.terms.is_empty()),
        "every example policy has terms"
    );
    assert!(!config.bgp.policies.is_empty());
}
