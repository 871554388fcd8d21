//! `meshd routes`: the data plane's crypto-key routing table (prefix -> peer) and how the
//! kernel sends each prefix into the TUN. BGP-learnt routes join this list once the BGP
//! speaker runs inside the daemon; until then the output says so.

use std::io::Write;

use super::status::ask_and_print;
use super::{CommandError, Context, Output};
use crate::api::protocol::Request;
use crate::api::report::RoutesReport;
use crate::cli::OutputArgs;

/// Asks the daemon and prints its routes.
pub fn routes<O: Write, N: Write>(
    context: &Context,
    args: &OutputArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    ask_and_print::<RoutesReport, _, _>(context, args, &Request::Routes, render, output)
}

/// The routes as a table for people.
pub fn render(report: &RoutesReport) -> String {
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
            [
                r.prefix.to_string(),
                r.peer.clone(),
                r.source.clone(),
                kernel,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        let text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        format!("{}\n", text.trim_end())
    };
    let mut text = String::new();
    if rows.is_empty() {
        text.push_str("no routes: the data plane has no peers\n");
    } else {
        text.push_str(&line(header));
        for row in &rows {
            text.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
    }
    if report.bgp == "not_running" {
        text.push_str(
            "BGP: not running in this version of the daemon; these are the configured peers' and clients' prefixes.\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report::tests::{known, node};
    use crate::api::report::{self, PeerKind};

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
             BGP: not running in this version of the daemon; these are the configured peers' and clients' prefixes.\n"
        );
    }
}
