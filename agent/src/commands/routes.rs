//! `meshd routes`: the data plane's crypto-key routing table (prefix -> peer) and how the
//! kernel sends each prefix into the TUN, then the BGP sessions and every BGP path with its
//! attributes (like `birdc show protocols` and `show route all`, condensed).

use std::io::Write;

use super::status::ask_and_print;
use super::{CommandError, Context, Output};
use crate::api::protocol::Request;
use crate::api::report::{BgpSessionEntry, RoutesReport};
use crate::cli::OutputArgs;

/// Asks the daemon and prints its routes.
pub fn routes<O: Write, N: Write>(
    context: &Context,
    args: &OutputArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    ask_and_print::<RoutesReport, _, _>(context, args, &Request::Routes, render, output)
}

/// The routes as tables for people.
pub fn render(report: &RoutesReport) -> String {
    let mut text = render_table(report);
    if report.bgp == "running" {
        text.push_str(&render_bgp(report));
    }
    text
}

/// Left-aligned columns as wide as their widest cell, two spaces apart (a header line, then
/// one line per row).
pub(super) fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 < N {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        format!("{}\n", text.trim_end())
    };
    let mut text = line(header);
    for row in rows {
        text.push_str(&line(row.each_ref().map(String::as_str)));
    }
    text
}

/// The BGP sessions and paths.
fn render_bgp(report: &RoutesReport) -> String {
    let sessions: Vec<[String; 7]> = report
        .bgp_sessions
        .iter()
        .map(|s| {
            let kind = match (s.internal, s.rr_client) {
                (true, true) => "ibgp rr-client",
                (true, false) => "ibgp",
                (false, _) => "ebgp",
            };
            [
                s.name.clone(),
                s.address.to_string(),
                format!("AS{}", s.remote_asn),
                kind.to_owned(),
                s.state.clone(),
                s.accepted.to_string(),
                refused_cell(s),
            ]
        })
        .collect();
    let mut text = String::from("\nBGP sessions:\n");
    if sessions.is_empty() {
        text.push_str("  none\n");
    } else {
        text.push_str(&columns(
            [
                "NAME", "ADDRESS", "AS", "TYPE", "STATE", "ACCEPTED", "REFUSED",
            ],
            &sessions,
        ));
    }
    let routes: Vec<[String; 6]> = report
        .bgp_routes
        .iter()
        .map(|r| {
            let mut attrs = vec![format!("origin {}", r.origin)];
            attrs.extend(r.local_pref.map(|v| format!("local-pref {v}")));
            attrs.extend(r.med.map(|v| format!("med {v}")));
            attrs.extend(r.originator_id.map(|v| format!("originator {v}")));
            if !r.communities.is_empty() || !r.large_communities.is_empty() {
                let all: Vec<&str> = r
                    .communities
                    .iter()
                    .chain(&r.large_communities)
                    .map(String::as_str)
                    .collect();
                attrs.push(format!("communities {}", all.join(" ")));
            }
            let mark = match (r.best, r.used) {
                (true, _) => "*",
                (false, true) => "=",
                (false, false) => " ",
            };
            [
                format!("{mark}{}", r.prefix),
                r.next_hop
                    .map_or_else(|| "self".to_owned(), |nh| nh.to_string()),
                r.learnt_from.clone(),
                if r.as_path.is_empty() {
                    "i".to_owned()
                } else {
                    r.as_path.clone()
                },
                if r.kernel { "yes" } else { "no" }.to_owned(),
                attrs.join(", "),
            ]
        })
        .collect();
    text.push_str("\nBGP routes (* best, = equal cost, used too):\n");
    if routes.is_empty() {
        text.push_str("  none\n");
    } else {
        text.push_str(&columns(
            [
                "PREFIX",
                "NEXT HOP",
                "FROM",
                "AS PATH",
                "KERNEL",
                "ATTRIBUTES",
            ],
            &routes,
        ));
    }
    if !report.ecmp_groups.is_empty() {
        text.push_str("\nECMP groups (prefixes with several next hops):\n");
        text.push_str(&render_ecmp_groups(report));
    }
    if !report.exits.is_empty() {
        text.push_str("\nExits:\n");
        text.push_str(&render_exits(report));
    }
    text
}

/// How many of the session's routes were refused, and why: `2 (as_loop 1, policy 1)`.
fn refused_cell(s: &BgpSessionEntry) -> String {
    if s.refused_by_reason.is_empty() {
        return s.refused.to_string();
    }
    let why: Vec<String> = s
        .refused_by_reason
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    format!("{} ({})", s.refused, why.join(", "))
}

/// Every path of each ECMP group: used or not, and why.
fn render_ecmp_groups(report: &RoutesReport) -> String {
    let mut rows: Vec<[String; 6]> = Vec::new();
    for group in &report.ecmp_groups {
        let used = group.paths.iter().filter(|p| p.used).count();
        let cost = |c: Option<u32>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
        for (i, p) in group.paths.iter().enumerate() {
            let why = match p.selection.as_str() {
                _ if p.next_hop.is_none() => "this node announces it itself".to_owned(),
                "best" | "equal_cost" if used > 1 => {
                    format!("equal cost {} ({used} next hops)", cost(p.igp_cost))
                }
                "best" => format!("best, cost {}", cost(p.igp_cost)),
                "igp_cost" => format!("higher cost ({} > {})", cost(p.igp_cost), cost(group.cost)),
                "equal_cost" => "equal cost; a default route uses one exit".to_owned(),
                "max_paths" => "equal cost, but the group is full ([routing] max_paths)".to_owned(),
                "same_next_hop" => "same next hop as a used path".to_owned(),
                "unreachable" => "next hop unreachable".to_owned(),
                "local_route" => "this node announces it itself, and prefers that".to_owned(),
                "local_pref" => "lower local-pref".to_owned(),
                "as_path_length" => "longer AS path".to_owned(),
                "origin" => "worse origin".to_owned(),
                "med" => "higher MED".to_owned(),
                "ebgp_preferred" => "iBGP; an eBGP path is preferred".to_owned(),
                "" => "-".to_owned(),
                other => other.to_owned(),
            };
            rows.push([
                if i == 0 {
                    group.prefix.to_string()
                } else {
                    String::new()
                },
                p.next_hop
                    .map_or_else(|| "self".to_owned(), |nh| nh.to_string()),
                p.announcer.clone().unwrap_or_else(|| "-".to_owned()),
                cost(p.igp_cost),
                if p.used { "yes" } else { "no" }.to_owned(),
                why,
            ]);
        }
    }
    columns(
        ["PREFIX", "NEXT HOP", "ANNOUNCER", "COST", "USED", "WHY"],
        &rows,
    )
}

/// Which exit each default route and `[[exit.route]]` destination uses, and why.
fn render_exits(report: &RoutesReport) -> String {
    let rows: Vec<[String; 4]> = report
        .exits
        .iter()
        .map(|e| {
            let nearest = match e.cost {
                Some(cost) => format!("nearest by cost {cost}"),
                None => "nearest".to_owned(),
            };
            let unreachable = e.unreachable.join(", ");
            let why = match e.reason.as_str() {
                "nearest" => nearest,
                "rule" if e.unreachable.is_empty() => format!("rule (via {})", e.via.join(", ")),
                "rule" => format!("rule (via {}; {unreachable} unreachable)", e.via.join(", ")),
                "fallback" => format!("fallback: {unreachable} unreachable, {nearest}"),
                "none" if e.via.is_empty() => "no exit reachable".to_owned(),
                "none" => format!("no exit reachable (via {})", e.via.join(", ")),
                other => other.to_owned(),
            };
            let (exit, next_hop) = match (&e.exit, e.next_hop) {
                (_, None) if e.reason == "none" => ("-".to_owned(), "-".to_owned()),
                (Some(name), None) => (name.clone(), "self".to_owned()),
                (None, None) => ("self".to_owned(), "self".to_owned()),
                (name, Some(nh)) => (
                    name.clone().unwrap_or_else(|| nh.to_string()),
                    nh.to_string(),
                ),
            };
            [e.prefix.to_string(), exit, next_hop, why]
        })
        .collect();
    columns(["PREFIX", "EXIT", "NEXT HOP", "WHY"], &rows)
}

/// The data plane's table.
fn render_table(report: &RoutesReport) -> String {
    let header = ["PREFIX", "PEER", "SOURCE", "KERNEL"];
    let rows: Vec<[String; 4]> = report
        .routes
        .iter()
        .map(|r| {
            let kernel = match r.kernel.as_str() {
                "meshd" => format!("route via {}", report.interface),
                "connected" => format!("connected on {}", report.interface),
                "none" => "not routed to the TUN".to_owned(),
                other => other.to_owned(),
            };
            let source = if r.ecmp {
                format!("{} (ecmp)", r.source)
            } else {
                r.source.clone()
            };
            [r.prefix.to_string(), r.peer.clone(), source, kernel]
        })
        .collect();
    let mut text = String::new();
    if rows.is_empty() {
        text.push_str("no routes: the data plane has no peers\n");
    } else {
        text.push_str(&columns(header, &rows));
    }
    if report.bgp == "not_running" {
        text.push_str(
            "BGP: not running (no mesh membership and no [[bgp.neighbor]]); these are the configured peers' and clients' prefixes.\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report;
    use crate::api::report::tests::{known, node};
    use crate::peerset::PeerKind;

    #[test]
    fn routes_are_a_table_with_the_bgp_note() {
        let beta = known(
            "beta",
            PeerKind::Node(None),
            &["10.2.0.0/16", "192.168.9.0/24"],
        );
        let laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
        let report = report::routes(&node(), &[beta, laptop]);
        assert_eq!(
            render(&report),
            "PREFIX          PEER    SOURCE  KERNEL\n\
             10.1.0.2/32     laptop  client  connected on mesh0\n\
             10.2.0.0/16     beta    peer    route via mesh0\n\
             192.168.9.0/24  beta    peer    not routed to the TUN\n\
             BGP: not running (no mesh membership and no [[bgp.neighbor]]); these are the configured peers' and clients' prefixes.\n"
        );
    }

    #[test]
    fn bgp_sessions_and_routes_follow_the_table() {
        let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
        let mut node = node();
        node.kernel_routes.push("192.168.42.0/24".parse().unwrap());
        let session = report::BgpSessionEntry {
            name: "beta".into(),
            address: "10.2.0.1".parse().unwrap(),
            remote_asn: 64512,
            state: "established".into(),
            internal: true,
            rr_client: false,
            router_id: Some("10.2.0.1".parse().unwrap()),
            advertised: 1,
            accepted: 1,
            refused: 2,
            refused_by_reason: [("as_loop".to_owned(), 1), ("certificate".to_owned(), 1)].into(),
        };
        let route = report::BgpRouteEntry {
            prefix: "192.168.42.0/24".parse().unwrap(),
            next_hop: Some("10.4.0.1".parse().unwrap()),
            as_path: String::new(),
            local_pref: Some(100),
            med: None,
            communities: vec!["64512:7".into()],
            large_communities: Vec::new(),
            origin: "igp".into(),
            originator_id: Some("10.4.0.1".parse().unwrap()),
            learnt_from: "beta".into(),
            learnt_from_address: Some("10.2.0.1".parse().unwrap()),
            best: true,
            kernel: false,
            announcer: Some("delta".into()),
            igp_cost: Some(12),
            used: true,
            selection: "best".into(),
        };
        let view = report::BgpView {
            asn: 64512,
            router_id: Some("10.1.0.1".parse().unwrap()),
            sessions: vec![session],
            routes: vec![route],
            exits: Vec::new(),
        };
        let report = report::with_bgp(report::routes(&node, &[beta]), &node, &view);
        assert!(report.bgp_routes[0].kernel, "a best route in the kernel");
        assert_eq!(
            render(&report),
            "PREFIX       PEER  SOURCE  KERNEL\n\
             10.2.0.0/16  beta  peer    route via mesh0\n\
             \n\
             BGP sessions:\n\
             NAME  ADDRESS   AS       TYPE  STATE        ACCEPTED  REFUSED\n\
             beta  10.2.0.1  AS64512  ibgp  established  1         2 (as_loop 1, certificate 1)\n\
             \n\
             BGP routes (* best, = equal cost, used too):\n\
             PREFIX            NEXT HOP  FROM  AS PATH  KERNEL  ATTRIBUTES\n\
             *192.168.42.0/24  10.4.0.1  beta  i        yes     origin igp, local-pref 100, originator 10.4.0.1, communities 64512:7\n"
        );
    }

    #[test]
    fn an_ecmp_group_shows_every_next_hop_used_or_not_and_why() {
        let path = |next_hop: &str, announcer: &str, cost, best, used, selection: &str| {
            report::BgpRouteEntry {
                prefix: "203.0.113.53/32".parse().unwrap(),
                next_hop: Some(next_hop.parse().unwrap()),
                as_path: String::new(),
                local_pref: Some(100),
                med: None,
                communities: Vec::new(),
                large_communities: Vec::new(),
                origin: "igp".into(),
                originator_id: None,
                learnt_from: announcer.into(),
                learnt_from_address: Some(next_hop.parse().unwrap()),
                best,
                kernel: false,
                announcer: Some(announcer.into()),
                igp_cost: Some(cost),
                used,
                selection: selection.into(),
            }
        };
        let view = report::BgpView {
            asn: 64512,
            router_id: Some("10.1.0.1".parse().unwrap()),
            sessions: Vec::new(),
            routes: vec![
                path("10.2.0.1", "beta", 5, true, true, "best"),
                path("10.3.0.1", "gamma", 5, false, true, "equal_cost"),
                path("10.4.0.1", "delta", 30, false, false, "igp_cost"),
                path("10.5.0.1", "eps", 5, false, false, "max_paths"),
            ],
            exits: Vec::new(),
        };
        let mut beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
        beta.config.ecmp_ips = vec!["203.0.113.53/32".parse().unwrap()];
        let report = report::with_bgp(report::routes(&node(), &[beta]), &node(), &view);
        assert_eq!(report.ecmp_groups.len(), 1);
        let text = render(&report);
        assert!(
            text.contains("203.0.113.53/32  beta  peer (ecmp)  not routed to the TUN\n"),
            "{text}"
        );
        assert!(text.contains("\n=203.0.113.53/32  10.3.0.1"), "{text}");
        let groups = text
            .split("\nECMP groups (prefixes with several next hops):\n")
            .nth(1)
            .expect("an ECMP section");
        assert_eq!(
            groups,
            "PREFIX           NEXT HOP  ANNOUNCER  COST  USED  WHY\n\
             203.0.113.53/32  10.2.0.1  beta       5     yes   equal cost 5 (2 next hops)\n\
             \x20                10.3.0.1  gamma      5     yes   equal cost 5 (2 next hops)\n\
             \x20                10.4.0.1  delta      30    no    higher cost (30 > 5)\n\
             \x20                10.5.0.1  eps        5     no    equal cost, but the group is full ([routing] max_paths)\n"
        );
    }

    #[test]
    fn exits_say_which_exit_each_default_and_rule_uses_and_why() {
        let entry = |prefix: &str,
                     exit: Option<&str>,
                     next_hop: Option<&str>,
                     cost,
                     reason: &str,
                     via: &[&str],
                     unreachable: &[&str]| {
            report::ExitEntry {
                prefix: prefix.parse().unwrap(),
                exit: exit.map(str::to_owned),
                next_hop: next_hop.map(|nh| nh.parse().unwrap()),
                cost,
                reason: reason.to_owned(),
                via: via.iter().map(|v| (*v).to_owned()).collect(),
                unreachable: unreachable.iter().map(|v| (*v).to_owned()).collect(),
            }
        };
        let view = report::BgpView {
            asn: 64512,
            router_id: Some("10.1.0.1".parse().unwrap()),
            sessions: Vec::new(),
            routes: Vec::new(),
            exits: vec![
                entry(
                    "0.0.0.0/0",
                    Some("paris"),
                    Some("10.2.0.1"),
                    Some(10),
                    "nearest",
                    &[],
                    &[],
                ),
                entry("::/0", Some("alpha"), None, Some(0), "nearest", &[], &[]),
                entry(
                    "203.0.113.0/24",
                    Some("tokyo"),
                    Some("10.3.0.1"),
                    Some(250),
                    "rule",
                    &["tokyo", "paris"],
                    &[],
                ),
                entry(
                    "192.0.2.0/24",
                    Some("paris"),
                    Some("10.2.0.1"),
                    Some(10),
                    "rule",
                    &["tokyo", "paris"],
                    &["tokyo"],
                ),
                entry(
                    "198.51.100.0/24",
                    Some("paris"),
                    Some("10.2.0.1"),
                    Some(10),
                    "fallback",
                    &["osaka"],
                    &["osaka"],
                ),
                entry(
                    "2001:db8::/32",
                    None,
                    None,
                    None,
                    "none",
                    &["tokyo"],
                    &["tokyo"],
                ),
            ],
        };
        let report = report::with_bgp(report::routes(&node(), &[]), &node(), &view);
        let text = render(&report);
        let exits = text.split("\nExits:\n").nth(1).expect("an exits section");
        assert_eq!(
            exits,
            "PREFIX           EXIT   NEXT HOP  WHY\n\
             0.0.0.0/0        paris  10.2.0.1  nearest by cost 10\n\
             ::/0             alpha  self      nearest by cost 0\n\
             203.0.113.0/24   tokyo  10.3.0.1  rule (via tokyo, paris)\n\
             192.0.2.0/24     paris  10.2.0.1  rule (via tokyo, paris; tokyo unreachable)\n\
             198.51.100.0/24  paris  10.2.0.1  fallback: osaka unreachable, nearest by cost 10\n\
             2001:db8::/32    -      -         no exit reachable (via tokyo)\n"
        );
        // Without exits there is no section.
        let none = report::with_bgp(
            report::routes(&node(), &[]),
            &node(),
            &report::BgpView::default(),
        );
        assert!(!render(&none).contains("Exits:"));
    }
}
