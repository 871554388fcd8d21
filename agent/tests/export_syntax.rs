//! `meshd export`'s files through the real parsers of the software they are for: BIRD 2's
//! `bird -p -c` (package bird2), FRR's `vtysh --dryrun -f` (package frr) and wg-quick's own
//! parser, `wg-quick strip` (package wireguard-tools; it needs root). Each check first shows
//! the parser refusing a broken copy, so a parser that accepts anything cannot pass it. There is
//! no RouterOS here: its script is held to the menus, properties and values MikroTik's manual
//! documents for RouterOS 7 (docs/foreign-routers.md says where that was checked).
//!
//! The parsers come from scripts/test.sh's package list. A missing one fails the test; a
//! developer without root or the packages may set MESHD_SKIP_NETNS_TESTS=1 to skip these
//! checks, which is ignored as root, so CI (root, packages installed) never skips them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use meshd::foreign::export::{Format, RouterExport, RouterRoutes, TUNNEL_INTERFACE, render};

mod export_support;
use export_support::{FULL_TUNNEL, TWO_LANS, full_tunnel, two_lans};

/// The views every parser reads: the golden ones, and the same router without IPv6.
fn views() -> Vec<(&'static str, RouterExport)> {
    let mut ipv4_only = two_lans();
    ipv4_only.router.address6 = None;
    ipv4_only.core.other_endpoints.clear();
    let mut full_tunnel_ipv4 = full_tunnel();
    full_tunnel_ipv4.router.address6 = None;
    vec![
        (TWO_LANS, two_lans()),
        ("ipv4-only", ipv4_only),
        (FULL_TUNNEL, full_tunnel()),
        ("full-tunnel-ipv4-only", full_tunnel_ipv4),
    ]
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            Some(uid.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([Path::new("/usr/sbin").into(), Path::new("/sbin").into()])
        .any(|dir| dir.join(program).is_file())
}

/// Whether the check that runs `program` (from Debian package `package`) can go on. Missing
/// it (or root, if `needs_root`) fails, except for a developer who is not root and set
/// MESHD_SKIP_NETNS_TESTS=1: then it prints that it skipped.
fn can_run(test: &str, program: &str, package: &str, needs_root: bool) -> bool {
    let root = running_as_root();
    let missing = if !on_path(program) {
        format!("{program} is not installed (apt-get install {package}; scripts/test.sh does)")
    } else if needs_root && !root {
        format!("{program} needs root")
    } else {
        return true;
    };
    if !root && std::env::var("MESHD_SKIP_NETNS_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {missing} (MESHD_SKIP_NETNS_TESTS=1)");
        return false;
    }
    panic!(
        "{test}: {missing}. Run the tests as root with the packages of scripts/test.sh, or \
         (without root) set MESHD_SKIP_NETNS_TESTS=1 to skip this check locally."
    );
}

fn run(program: &str, args: &[&str], file: &Path) -> Output {
    let program_path = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .map(|p| p.into_os_string())
        .unwrap_or_else(|| program.into());
    Command::new(program_path)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `text` with the first `from` in it replaced by `to`.
fn broken(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "nothing to break: no {from:?}");
    text.replacen(from, to, 1)
}

/// `program ARGS FILE` (from Debian package `package`) refuses `format`'s export with `from`
/// replaced by `to`, and accepts every view's export. `quiet` says whether a run that exited 0
/// also reported nothing wrong.
struct ParserCheck<'a> {
    test: &'a str,
    program: &'a str,
    package: &'a str,
    args: &'a [&'a str],
    format: Format,
    from: &'a str,
    to: &'a str,
    quiet: fn(&str) -> bool,
}

impl ParserCheck<'_> {
    fn run(&self) {
        if !can_run(self.test, self.program, self.package, false) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, text: &str| {
            let path = dir.path().join(format!("{name}.conf"));
            std::fs::write(&path, text).unwrap();
            let out = run(self.program, self.args, &path);
            let report = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success() && (self.quiet)(&report), shown(&out))
        };
        let golden = render(self.format, &two_lans());
        let (accepted, output) = check("broken", &broken(&golden, self.from, self.to));
        assert!(
            !accepted,
            "{} accepted a broken file:\n{output}",
            self.program
        );
        for (name, view) in views() {
            let (accepted, output) = check(name, &render(self.format, &view));
            assert!(accepted, "{name}: {} refused it:\n{output}", self.program);
        }
    }
}

#[test]
fn bird_accepts_the_bird_export() {
    ParserCheck {
        test: "bird_accepts_the_bird_export",
        program: "bird",
        package: "bird2",
        args: &["-p", "-c"],
        format: Format::Bird,
        from: "export filter meshd_export4;",
        to: "export filter meshd_nowhere;",
        quiet: |_| true,
    }
    .run();
}

#[test]
fn frr_accepts_the_frr_export() {
    ParserCheck {
        test: "frr_accepts_the_frr_export",
        program: "vtysh",
        package: "frr",
        args: &["--dryrun", "-f"],
        format: Format::Frr,
        from: " no bgp network import-check",
        to: " no bgp network import-chek",
        // vtysh reports each line it does not take as `line N: % ...`.
        quiet: |report| !report.contains("line "),
    }
    .run();
}

/// What `wg setconf` takes (wg(8), CONFIGURATION FILE FORMAT): whatever wg-quick leaves in
/// place after stripping its own keys must be one of these.
const WG_KEYS: [(&str, &[&str]); 2] = [
    ("Interface", &["PrivateKey", "ListenPort", "FwMark"]),
    (
        "Peer",
        &[
            "PublicKey",
            "PresharedKey",
            "AllowedIPs",
            "Endpoint",
            "PersistentKeepalive",
        ],
    ),
];

/// The `Key = value` lines of a WireGuard configuration, by section.
fn wg_sections(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            keys.push((
                section.clone(),
                key.trim().to_string(),
                value.trim().to_string(),
            ));
        } else {
            keys.push((section.clone(), line.to_string(), String::new()));
        }
    }
    keys
}

/// Keys `wg setconf` would refuse.
fn unknown_to_wg(stripped: &str) -> Vec<String> {
    wg_sections(stripped)
        .into_iter()
        .filter(|(section, key, _)| {
            !WG_KEYS
                .iter()
                .any(|(s, keys)| s == section && keys.contains(&key.as_str()))
        })
        .map(|(section, key, _)| format!("[{section}] {key}"))
        .collect()
}

#[test]
fn wg_quick_parses_the_wg_quick_export() {
    if !can_run(
        "wg_quick_parses_the_wg_quick_export",
        "wg-quick",
        "wireguard-tools",
        true,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // wg-quick takes the interface name from the file name.
    let path = dir.path().join(format!("{TUNNEL_INTERFACE}.conf"));
    let strip = |text: &str| {
        std::fs::write(&path, text).unwrap();
        run("wg-quick", &["strip"], &path)
    };
    let golden = render(Format::WgQuick, &two_lans());
    let bad = strip(&broken(
        &golden,
        "Table = off",
        "Table = off\nRoutes = none",
    ));
    assert!(
        !unknown_to_wg(&String::from_utf8_lossy(&bad.stdout)).is_empty(),
        "a key neither wg-quick nor wg knows went unnoticed:\n{}",
        shown(&bad)
    );
    for (name, view) in views() {
        let text = render(Format::WgQuick, &view);
        let out = strip(&text);
        assert!(
            out.status.success(),
            "{name}: wg-quick strip refused it:\n{}",
            shown(&out)
        );
        let stripped = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            unknown_to_wg(&stripped),
            Vec::<String>::new(),
            "{name}:\n{stripped}"
        );
        // wg-quick took its own keys (so it understood them) and left the peer to wg.
        let left: BTreeSet<String> = wg_sections(&stripped)
            .into_iter()
            .map(|(_, k, _)| k)
            .collect();
        for own in ["Address", "MTU", "Table", "PostUp"] {
            assert!(
                !left.contains(own),
                "{name}: wg-quick left {own} to wg:\n{stripped}"
            );
        }
        for (section, key, value) in wg_sections(&text) {
            if section == "Interface" && key == "Table" {
                // Routes from BGP; or, sent only the default, wg-quick's own full tunnel.
                let want = if view.send == RouterRoutes::Default {
                    "auto"
                } else {
                    "off"
                };
                assert_eq!(value, want, "{name}");
            }
        }
        for key in ["PublicKey", "Endpoint", "AllowedIPs", "PersistentKeepalive"] {
            assert!(left.contains(key), "{name}: no {key} for wg:\n{stripped}");
        }
    }
}

/// RouterOS 7 menus this export may use, with the properties MikroTik's manual documents for
/// them (the WireGuard, IP Addressing, IP Routing, Address-lists, Routing Filters and BGP pages,
/// RouterOS 7.20 and newer: BGP instance menu, `afi` on connections).
fn routeros_menus() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        (
            "/interface wireguard",
            &["name", "mtu", "listen-port", "private-key", "comment"][..],
        ),
        (
            "/interface wireguard peers",
            &[
                "interface",
                "public-key",
                "endpoint-address",
                "endpoint-port",
                "allowed-address",
                "persistent-keepalive",
                "preshared-key",
                "comment",
            ][..],
        ),
        (
            "/ip address",
            &["address", "interface", "network", "comment"][..],
        ),
        (
            "/ipv6 address",
            &["address", "interface", "advertise", "comment"][..],
        ),
        (
            "/ip route",
            &["dst-address", "gateway", "blackhole", "distance", "comment"][..],
        ),
        (
            "/ipv6 route",
            &["dst-address", "gateway", "blackhole", "distance", "comment"][..],
        ),
        (
            "/ip firewall address-list",
            &["list", "address", "comment"][..],
        ),
        (
            "/ipv6 firewall address-list",
            &["list", "address", "comment"][..],
        ),
        ("/routing filter rule", &["chain", "rule", "comment"][..]),
        (
            "/routing bgp instance",
            &["name", "as", "router-id", "comment"][..],
        ),
        (
            "/routing bgp connection",
            &[
                "name",
                "instance",
                "as",
                "local.role",
                "local.address",
                "remote.address",
                "remote.as",
                "connect",
                "listen",
                "hold-time",
                "keepalive-time",
                "afi",
                "nexthop-choice",
                "output.network",
                "output.filter-chain",
                "input.filter",
                "comment",
            ][..],
        ),
    ])
}

/// The words of a RouterOS command line: `key=value`, `key="quoted value"`, `[...]` and
/// bare flags, with quotes and brackets kept whole.
fn routeros_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut escaped, mut depth) = (false, false, 0usize);
    for ch in line.chars() {
        if escaped {
            escaped = false;
        } else if quoted && ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            quoted = !quoted;
        } else if !quoted && ch == '[' {
            depth += 1;
        } else if !quoted && ch == ']' {
            depth = depth.checked_sub(1).expect("unbalanced ]");
        } else if !quoted && depth == 0 && ch == ' ' {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        word.push(ch);
    }
    assert!(
        !quoted && depth == 0,
        "unbalanced quotes or brackets: {line}"
    );
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn unquoted(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Every problem found in a RouterOS script; empty if it holds to the documented syntax.
fn routeros_problems(script: &str) -> Vec<String> {
    let menus = routeros_menus();
    let mut problems = Vec::new();
    let mut menu: Option<&str> = None;
    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut used: Vec<(&str, String, String)> = Vec::new();
    for (n, line) in script
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim_end()))
    {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut problem = |what: String| problems.push(format!("line {n}: {what}: {line}"));
        if let Some(path) = menus.keys().find(|m| **m == line) {
            menu = Some(path);
            continue;
        }
        let create_interface = format!(
            ":if ([:len [/interface wireguard find where name=\"{TUNNEL_INTERFACE}\"]] = 0) \
             do={{ /interface wireguard add name=\"{TUNNEL_INTERFACE}\" }}"
        );
        if line == create_interface {
            defined
                .entry("interface")
                .or_default()
                .insert(TUNNEL_INTERFACE.into());
            continue;
        }
        let words = routeros_words(line);
        // `/menu command ...` on one line, or `command ...` in the current menu.
        let (here, rest) = match menus
            .keys()
            .filter(|m| line.starts_with(&format!("{m} ")))
            .max_by_key(|m| m.len())
        {
            Some(m) => (Some(*m), routeros_words(&line[m.len() + 1..])),
            None => (menu, words),
        };
        let Some(here) = here else {
            problem("a command outside any menu".into());
            continue;
        };
        let Some((command, args)) = rest.split_first() else {
            continue;
        };
        let args: Vec<&String> = match command.as_str() {
            "add" => args.iter().collect(),
            "set" if args.first().is_some_and(|a| a.starts_with("[find where ")) => {
                args[1..].iter().collect()
            }
            other => {
                problem(format!("unknown command {other:?} in {here}"));
                continue;
            }
        };
        let allowed = menus[here];
        let mut props = BTreeMap::new();
        for arg in args {
            let (key, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
            if !allowed.contains(&key) {
                problem(format!("{here} has no property {key:?}"));
            }
            if key == "blackhole" && !value.is_empty() {
                problem("blackhole is a flag".into());
            }
            if key != "blackhole" && value.is_empty() {
                problem(format!("{key} without a value"));
            }
            props.insert(key, unquoted(value).to_string());
        }
        let value = |key: &str| props.get(key).cloned().unwrap_or_default();
        match here {
            "/routing filter rule" => {
                defined.entry("chain").or_default().insert(value("chain"));
                if !documented_filter_rule(&value("rule")) {
                    problem(format!(
                        "rule {:?} is not of the documented forms",
                        value("rule")
                    ));
                }
            }
            "/ip firewall address-list" | "/ipv6 firewall address-list" => {
                defined.entry("list").or_default().insert(value("list"));
                if value("address").parse::<ipnet::IpNet>().is_err() {
                    problem("address is not a prefix".into());
                }
            }
            "/routing bgp instance" => {
                defined.entry("instance").or_default().insert(value("name"));
                if value("router-id").parse::<std::net::Ipv4Addr>().is_err() {
                    problem("router-id is not an IPv4 address".into());
                }
            }
            "/routing bgp connection" => {
                for (key, kind) in [
                    ("instance", "instance"),
                    ("output.network", "list"),
                    ("output.filter-chain", "chain"),
                    ("input.filter", "chain"),
                ] {
                    used.push((kind, value(key), format!("line {n}: {key}")));
                }
                if !["ibgp", "ebgp"].contains(&value("local.role").as_str()) {
                    problem("local.role".into());
                }
                if !["default", "force-self", "propagate"]
                    .contains(&value("nexthop-choice").as_str())
                {
                    problem("nexthop-choice".into());
                }
                if !value("afi").split(',').all(|f| ["ip", "ipv6"].contains(&f)) {
                    problem("afi".into());
                }
                for key in ["hold-time", "keepalive-time"] {
                    let v = value(key);
                    if !(v.ends_with('s') && v[..v.len() - 1].parse::<u16>().is_ok()) {
                        problem(format!("{key} is not a duration"));
                    }
                }
                for key in ["connect", "listen"] {
                    if !["yes", "no"].contains(&value(key).as_str()) {
                        problem(format!("{key} is not yes or no"));
                    }
                }
            }
            "/interface wireguard peers" | "/ip address" | "/ipv6 address" => {
                used.push((
                    "interface",
                    value("interface"),
                    format!("line {n}: interface"),
                ));
            }
            "/ip route" | "/ipv6 route" => {
                if value("dst-address").parse::<ipnet::IpNet>().is_err() {
                    problem("dst-address is not a prefix".into());
                }
                let gateway = value("gateway");
                if props.contains_key("blackhole") == props.contains_key("gateway") {
                    problem("a route needs a gateway or blackhole, not both".into());
                } else if !gateway.is_empty() {
                    used.push(("interface", gateway, format!("line {n}: gateway")));
                }
            }
            _ => {}
        }
    }
    for (kind, name, place) in used {
        if !defined.get(kind).is_some_and(|names| names.contains(&name)) {
            problems.push(format!(
                "{place}: {kind} {name:?} is not defined in the script"
            ));
        }
    }
    problems
}

/// The routing filter rule forms the export uses, as RouterOS 7's manual writes them:
/// `accept`, `reject`, and `if (dst in PREFIX) { ACTION }` / `if (dst == PREFIX) { ACTION }`.
fn documented_filter_rule(rule: &str) -> bool {
    if rule == "accept" || rule == "reject" {
        return true;
    }
    let Some(inner) = rule.strip_prefix("if (dst ") else {
        return false;
    };
    let Some((operator_prefix, action)) = inner.split_once(") { ") else {
        return false;
    };
    let Some((operator, prefix)) = operator_prefix.split_once(' ') else {
        return false;
    };
    ["in", "=="].contains(&operator)
        && prefix.parse::<ipnet::IpNet>().is_ok()
        && ["accept }", "reject }"].contains(&action)
}

#[test]
fn the_routeros_script_keeps_to_documented_routeros_7_syntax() {
    // The checker catches what it should...
    let golden = render(Format::RouterOs, &two_lans());
    for (from, to) in [
        ("nexthop-choice=force-self", "nexthop-choice=self"),
        ("persistent-keepalive=25s", "keepalive=25s"),
        ("input.filter=meshd-in", "input.filter=meshd-input"),
        ("rule=\"accept\"", "rule=\"accept;\""),
        (" blackhole distance=254", " distance=254"),
    ] {
        assert!(
            !routeros_problems(&broken(&golden, from, to)).is_empty(),
            "{to:?} went unnoticed"
        );
    }
    // ...and finds nothing in the exports.
    for (name, view) in views() {
        let script = render(Format::RouterOs, &view);
        let problems = routeros_problems(&script);
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        // One connection, IPv6 on it exactly when the tunnel has IPv6.
        let afi = if view.router.address6.is_some() {
            "afi=ip,ipv6 "
        } else {
            "afi=ip "
        };
        assert!(script.contains(afi), "{name}");
    }
}
