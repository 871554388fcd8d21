//! `meshd rekey [PEER]`: asks the running daemon for a new WireGuard handshake with one peer,
//! or with every peer, now instead of at the next two-minute rekey. Traffic keeps flowing on
//! the current session until the new one is confirmed.

use std::io::Write;

use super::status::print_report;
use super::{CommandError, Context, Output};
use crate::api::protocol::Request;
use crate::cli::RekeyArgs;

/// What the daemon answers.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct RekeyReport {
    pub schema: u32,
    /// Peers an initiation was queued for.
    pub rekeyed: Vec<String>,
    /// Peers with no endpoint known yet: nothing was sent to them.
    pub without_path: Vec<String>,
}

/// Runs `meshd rekey`. A named peer that has no path is an error: nothing was done.
pub fn rekey<O: Write, N: Write>(
    context: &Context,
    args: &RekeyArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let request = Request::Rekey {
        name: args.peer.clone(),
    };
    let report: RekeyReport = crate::api::request(&context.socket_path, &request)?;
    if let Some(peer) = &args.peer
        && report.rekeyed.is_empty()
    {
        return Err(CommandError::invalid(
            "PEER",
            format!(
                "{peer} has no endpoint yet, so no handshake was sent; it handshakes by itself \
                 once it has one (`meshd peers` shows its paths)"
            ),
        ));
    }
    print_report(&report, args.json, render, output)
}

/// The answer for people.
pub fn render(report: &RekeyReport) -> String {
    let mut text = String::new();
    if report.rekeyed.is_empty() && report.without_path.is_empty() {
        text.push_str("no peers to rekey\n");
    }
    for peer in &report.rekeyed {
        text.push_str(&format!("{peer}: handshake initiation sent\n"));
    }
    for peer in &report.without_path {
        text.push_str(&format!(
            "{peer}: not rekeyed, no endpoint known yet (it handshakes once it has one)\n"
        ));
    }
    if !report.rekeyed.is_empty() {
        text.push_str("`meshd peers` shows the new handshakes (latest handshake, handshakes)\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_each_peer_and_what_was_done() {
        let report = RekeyReport {
            schema: 1,
            rekeyed: vec!["beta".into()],
            without_path: vec!["laptop".into()],
        };
        assert_eq!(
            render(&report),
            "beta: handshake initiation sent\n\
             laptop: not rekeyed, no endpoint known yet (it handshakes once it has one)\n\
             `meshd peers` shows the new handshakes (latest handshake, handshakes)\n"
        );
        let none = RekeyReport {
            schema: 1,
            rekeyed: Vec::new(),
            without_path: Vec::new(),
        };
        assert_eq!(render(&none), "no peers to rekey\n");
    }
}
