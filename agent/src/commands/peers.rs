//! `meshd peers`: one block per peer, like the peer blocks of `wg show`.

use std::io::Write;

use super::status::ask_and_print;
use super::{CommandError, Context, Output};
use crate::api::human;
use crate::api::protocol::Request;
use crate::api::report::{PeerReport, PeersReport};
use crate::cli::OutputArgs;

/// Asks the daemon and prints its peers.
pub fn peers<O: Write, N: Write>(
    context: &Context,
    args: &OutputArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    ask_and_print::<PeersReport, _, _>(context, args, &Request::Peers, render, output)
}

/// The peers for people, separated by blank lines.
pub fn render(report: &PeersReport) -> String {
    if report.peers.is_empty() {
        return "no peers: add [[peer]] entries to the configuration or clients with `meshd client add`\n"
            .to_owned();
    }
    let blocks: Vec<String> = report.peers.iter().map(render_peer).collect();
    blocks.join("\n")
}

fn render_peer(peer: &PeerReport) -> String {
    let role = peer.role.as_deref().unwrap_or("mesh node");
    let endpoint = match (peer.endpoint, peer.configured_endpoints.is_empty()) {
        (Some(endpoint), _) => endpoint.to_string(),
        (None, true) => "(none yet: the peer calls us)".to_owned(),
        (None, false) => human::list(&peer.configured_endpoints),
    };
    let handshake = match peer.last_handshake_seconds_ago {
        Some(seconds) => format!("{} ago", human::duration(seconds)),
        None => "(none)".to_owned(),
    };
    let mut text = format!(
        "peer: {} ({role}), {}\n  public key: {}\n  endpoint: {endpoint}\n  allowed prefixes: {}\n  \
         latest handshake: {handshake}\n  transfer: {} received, {} sent\n",
        peer.name,
        if peer.up { "up" } else { "down" },
        peer.public_key,
        human::list(&peer.allowed_prefixes),
        human::bytes(peer.rx_bytes),
        human::bytes(peer.tx_bytes),
    );
    if let Some(rtt) = peer.rtt_ms {
        text.push_str(&format!("  rtt: {rtt:.1} ms\n"));
    }
    if peer.transit_packets > 0 {
        text.push_str(&format!(
            "  transit: {} packets forwarded to other peers\n",
            peer.transit_packets
        ));
    }
    if let Some(seconds) = peer.persistent_keepalive_seconds {
        text.push_str(&format!(
            "  persistent keepalive: every {seconds} seconds\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report;
    use crate::api::report::tests::{known, stats_for};
    use crate::dataplane::DataplaneStats;
    use crate::peerset::PeerKind;
    use crate::state::encode_key;

    #[test]
    fn each_peer_gets_a_block() {
        let beta = known(
            "beta",
            PeerKind::Node(Some(mesh_config::Role::Core)),
            &["10.2.0.0/16"],
        );
        let mut laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
        laptop.config.endpoints.clear();
        laptop.config.persistent_keepalive = None;
        let stats = DataplaneStats {
            peers: vec![stats_for(&beta, Some(64))],
            drops: Default::default(),
        };
        let mut peers = report::peers(&[beta, laptop], &stats);
        peers.peers[0].rtt_ms = Some(12.34);
        let expected = format!(
            "peer: beta (core), up\n  public key: {}\n  endpoint: 203.0.113.2:51820\n  \
             allowed prefixes: 10.2.0.0/16\n  latest handshake: 1 minute, 4 seconds ago\n  \
             transfer: 1000 B received, 1.95 KiB sent\n  rtt: 12.3 ms\n  \
             transit: 1 packets forwarded to other peers\n  persistent keepalive: every 25 seconds\n\
             \n\
             peer: laptop (client), down\n  public key: {}\n  endpoint: (none yet: the peer calls us)\n  \
             allowed prefixes: 10.1.0.2/32\n  latest handshake: (none)\n  \
             transfer: 0 B received, 0 B sent\n",
            encode_key(&[14; 32]),
            encode_key(&[16; 32]),
        );
        assert_eq!(render(&peers), expected);
    }

    #[test]
    fn no_peers_says_how_to_add_some() {
        let report = PeersReport {
            schema: 1,
            peers: vec![],
        };
        assert!(render(&report).contains("meshd client add"));
    }
}
