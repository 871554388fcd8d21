//! `meshd status`: the running daemon's summary, like the interface block of `wg show`.

use std::io::Write;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CommandError, Context, Output};
use crate::api::human;
use crate::api::protocol::Request;
use crate::api::report::{BgpSummary, StatusReport};
use crate::cli::OutputArgs;

/// Asks the daemon and prints its status.
pub fn status<O: Write, N: Write>(
    context: &Context,
    args: &OutputArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    ask_and_print(context, args, &Request::Status, render, output)
}

/// What `status`, `peers` and `routes` share: send `request`, then print the payload as
/// pretty JSON with `--json` (the report unchanged, `schema` included), else `render`ed.
pub(super) fn ask_and_print<T, O, N>(
    context: &Context,
    args: &OutputArgs,
    request: &Request,
    render: fn(&T) -> String,
    output: &mut Output<O, N>,
) -> Result<(), CommandError>
where
    T: DeserializeOwned + Serialize,
    O: Write,
    N: Write,
{
    let report: T = crate::api::request(&context.socket_path, request)?;
    print_report(&report, args.json, render, output)
}

/// Prints `report` as pretty JSON with `json` (for scripts: docs/operations.md, "JSON
/// output"), else as `render` writes it for people.
pub(super) fn print_report<T, O, N>(
    report: &T,
    json: bool,
    render: impl FnOnce(&T) -> String,
    output: &mut Output<O, N>,
) -> Result<(), CommandError>
where
    T: Serialize,
    O: Write,
    N: Write,
{
    let text = if json {
        let mut json = serde_json::to_string_pretty(report)
            .map_err(|error| CommandError::Output(error.into()))?;
        json.push('\n');
        json
    } else {
        render(report)
    };
    output
        .out
        .write_all(text.as_bytes())
        .map_err(CommandError::Output)
}

/// The status for people.
pub fn render(report: &StatusReport) -> String {
    let node = &report.node;
    let daemon = &report.daemon;
    let peers = &report.peers;
    let traffic = &report.traffic;
    let clients = match peers.clients {
        0 => String::new(),
        1 => " (1 client)".to_owned(),
        n => format!(" ({n} clients)"),
    };
    let not_up: String = [(peers.states.stale, "stale"), (peers.states.down, "down")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, state)| format!(", {n} {state}"))
        .collect();
    let paths = match (peers.paths_total, peers.paths_down) {
        (0, _) => String::new(),
        (total, 0) => format!("  paths: {total}, none down\n"),
        (total, down) => format!("  paths: {down} of {total} down\n"),
    };
    let started = daemon
        .started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut text = format!(
        "node: {} ({})\n  public key: {}\n  interface: {}, mtu {}\n  addresses: {}\n  \
         listening port: {}, handshake guard: {}\n  endpoints: {}\n  uptime: {} (since {started}, pid {})\n  \
         peers: {} up of {}{clients}{not_up}\n{paths}  transfer: {} received, {} sent\n",
        node.name,
        node.role,
        node.public_key,
        node.interface,
        node.mtu,
        human::list(&node.addresses),
        node.listen_port,
        if node.handshake_guard {
            "kernel (nftables inet meshd_guard)"
        } else {
            "userspace only"
        },
        human::list(&node.endpoints),
        human::duration(daemon.uptime_seconds),
        daemon.pid,
        peers.states.up,
        peers.total,
        human::bytes(traffic.rx_bytes),
        human::bytes(traffic.tx_bytes),
    );
    if traffic.transit_packets > 0 {
        text.push_str(&format!(
            "  transit: {} packets between peers\n",
            traffic.transit_packets
        ));
    }
    let mut reasons: Vec<(&String, &u64)> = report
        .drops
        .by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .collect();
    // The biggest cause first: that is the one to look into.
    reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    if reasons.is_empty() {
        text.push_str("  drops: none\n");
    } else {
        let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        text.push_str(&format!(
            "  drops: {} ({})\n",
            report.drops.total,
            detail.join(", ")
        ));
    }
    if let Some(bgp) = &report.bgp {
        text.push_str(&render_bgp(bgp));
    }
    text
}

/// The BGP line, then one line per session with its route counts.
fn render_bgp(bgp: &BgpSummary) -> String {
    let mut text = format!(
        "  bgp: {} of {} sessions established, {} routes accepted, {} refused\n",
        bgp.established,
        bgp.sessions.len(),
        bgp.accepted,
        bgp.refused
    );
    for s in &bgp.sessions {
        text.push_str(&format!(
            "    {}: {}, {} accepted, {} refused\n",
            s.name, s.state, s.accepted, s.refused
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report;
    use crate::api::report::tests::{clock, known, node, stats_for};
    use crate::dataplane::DataplaneStats;
    use crate::peerset::PeerKind;

    #[test]
    fn the_summary_reads_like_wg_show() {
        let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
        let laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
        let stats = DataplaneStats {
            peers: vec![stats_for(&beta, Some(3))],
            drops: Default::default(),
        };
        let now = node().started_at + time::Duration::seconds(3725);
        let mut status = report::status(&node(), &[beta, laptop], &stats, now, clock());
        status.daemon.pid = 42;
        status.peers.paths_total = 3;
        status.peers.paths_down = 1;
        status.drops.total = 12;
        status.drops.by_reason.insert("no_route".into(), 10);
        status.drops.by_reason.insert("replay".into(), 2);
        let expected = format!(
            "node: alpha (core)\n  public key: {}\n  interface: mesh0, mtu 1420\n  \
             addresses: 10.1.0.1/16, fd00:1::1/64\n  \
             listening port: 51820, handshake guard: kernel (nftables inet meshd_guard)\n  \
             endpoints: vpn.example.net:51820\n  \
             uptime: 1 hour, 2 minutes, 5 seconds (since 2026-01-02T03:04:05Z, pid 42)\n  \
             peers: 1 up of 2 (1 client), 1 down\n  paths: 1 of 3 down\n  transfer: 1000 B received, 1.95 KiB sent\n  \
             transit: 1 packets between peers\n  drops: 12 (no_route 10, replay 2)\n",
            crate::state::encode_key(&[1; 32])
        );
        assert_eq!(render(&status), expected);
    }

    #[test]
    fn bgp_sessions_are_counted_one_line_each() {
        let stats = DataplaneStats {
            peers: vec![],
            drops: Default::default(),
        };
        let status = report::status(&node(), &[], &stats, node().started_at, clock());
        assert!(!render(&status).contains("bgp:"), "no BGP, no line");
        let session = |name: &str, state: &str, accepted, refused| report::BgpSessionEntry {
            name: name.into(),
            address: "198.51.100.2".parse().unwrap(),
            remote_asn: 65010,
            state: state.into(),
            internal: false,
            rr_client: false,
            router_id: None,
            advertised: 0,
            accepted,
            refused,
            refused_by_reason: Default::default(),
        };
        let view = report::BgpView {
            sessions: vec![
                session("bird", "established", 3, 2),
                session("frr", "active", 0, 0),
            ],
            ..report::BgpView::default()
        };
        let status = report::status_with_bgp(status, &view);
        let text = render(&status);
        let bgp = text.split("drops: none\n").nth(1).unwrap();
        assert_eq!(
            bgp,
            "  bgp: 1 of 2 sessions established, 3 routes accepted, 2 refused\n    \
             bird: established, 3 accepted, 2 refused\n    frr: active, 0 accepted, 0 refused\n"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["bgp"]["sessions"][0]["refused"], 2);
        // A reader of an older daemon's status finds no BGP part.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("bgp");
        let back: StatusReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.bgp, None);
    }

    #[test]
    fn no_drops_say_none() {
        let stats = DataplaneStats {
            peers: vec![],
            drops: Default::default(),
        };
        let status = report::status(&node(), &[], &stats, node().started_at, clock());
        assert!(render(&status).contains("drops: none"));
    }
}
