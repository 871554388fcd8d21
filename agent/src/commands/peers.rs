//! `meshd peers`: one block per peer, like the peer blocks of `wg show`.

use std::io::Write;

use super::status::ask_and_print;
use super::{CommandError, Context, Output};
use crate::api::human;
use crate::api::peer_state::PeerState;
use crate::api::protocol::Request;
use crate::api::report::{PathReport, PeerReport, PeersReport};
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
    let endpoint = match peer.local_address {
        Some(local) if peer.endpoint.is_some() => format!("{endpoint} from {local}"),
        _ => endpoint,
    };
    let handshake = match peer.last_handshake_seconds_ago {
        Some(seconds) => format!("{} ago", human::duration(seconds)),
        None => "(none)".to_owned(),
    };
    let state = match peer.state {
        PeerState::Up => "up".to_owned(),
        other => format!("{other} ({})", peer.state_reason),
    };
    let received = match peer.last_received_seconds_ago {
        Some(seconds) => format!("{} ago", age(seconds)),
        None => "(nothing since meshd started)".to_owned(),
    };
    let mut text = format!(
        "peer: {} ({role}), {state}\n  public key: {}\n  endpoint: {endpoint}\n  \
         last packet: {received}, stale after {} of silence\n  allowed prefixes: {}\n  \
         latest handshake: {handshake}\n  transfer: {} received, {} sent\n",
        peer.name,
        peer.public_key,
        human::duration(peer.silence_limit_seconds),
        human::list(&peer.allowed_prefixes),
        human::bytes(peer.rx_bytes),
        human::bytes(peer.tx_bytes),
    );
    if let Some(rtt) = peer.rtt_ms {
        text.push_str(&format!("  rtt: {rtt:.1} ms\n"));
    }
    if let Some(bgp) = &peer.bgp {
        text.push_str(&format!(
            "  bgp: {}, {} prefixes accepted, {} refused, {} sent\n",
            bgp.state, bgp.accepted, bgp.refused, bgp.advertised
        ));
    }
    if !peer.paths.is_empty() {
        let probing = if peer.probing {
            ""
        } else {
            " (the peer does not answer probes: chosen by handshake timeouts)"
        };
        text.push_str(&format!("  paths{probing}:\n"));
        for path in &peer.paths {
            text.push_str(&render_path(path));
        }
    }
    if let Some(switch) = &peer.last_switch {
        text.push_str(&format!(
            "  last path switch: {} ago ({}), {} in all\n",
            age(switch.seconds_ago),
            switch.reason,
            peer.path_switches
        ));
    }
    if let Some(relay) = &peer.relay {
        text.push_str(&format!(
            "  relayed via {} ({}), {} packets so far\n",
            relay.via, relay.reason, relay.packets
        ));
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

/// `* 198.51.100.1 -> 203.0.113.2:51820 (vpn.example.net:51820): up, rtt 1.2 ms, loss 0 %`;
/// the star marks the active path, `any` a local address the kernel chooses.
fn render_path(path: &PathReport) -> String {
    let marker = if path.active { "*" } else { " " };
    let local = path
        .local
        .map_or_else(|| "any".to_owned(), |local| local.to_string());
    let name = match &path.endpoint_name {
        Some(name) if *name != path.remote.to_string() => format!(" ({name})"),
        Some(_) => String::new(),
        None => " (learnt from its traffic)".to_owned(),
    };
    let mut text = format!(
        "    {marker} {local} -> {}{name}: {}",
        path.remote, path.state
    );
    if let Some(rtt) = path.rtt_ms {
        text.push_str(&format!(", rtt {rtt:.1} ms"));
    }
    if path.probes_sampled > 0 {
        text.push_str(&format!(
            ", loss {:.0} % of {}",
            path.loss * 100.0,
            path.probes_sampled
        ));
    }
    if path.preference > 0 && path.endpoint_name.is_some() {
        text.push_str(&format!(", backup {}", path.preference));
    }
    text.push('\n');
    text
}

/// An age for people: tenths below 10 s (`1.4 seconds`), spelt out above.
fn age(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} seconds")
    } else {
        // Ages are non-negative and far below u64::MAX seconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        human::duration(seconds as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report;
    use crate::api::report::tests::{clock, known, stats_for};
    use crate::dataplane::DataplaneStats;
    use crate::peerset::PeerKind;
    use crate::state::encode_key;
    use meshd_tunnel::path::{Path, PathSource, PathState, PathStats, SwitchReason};
    use std::time::Duration;

    fn path(remote: &str, name: Option<&str>, state: PathState, active: bool) -> PathStats {
        PathStats {
            path: Path {
                local: Some("198.51.100.1".parse().unwrap()),
                remote: remote.parse().unwrap(),
            },
            path_id: 1,
            source: name.map_or(PathSource::Learned, |name| PathSource::Configured {
                name: name.to_owned(),
            }),
            preference: u8::from(!active),
            state,
            srtt: active.then_some(Duration::from_micros(1250)),
            rttvar: Duration::ZERO,
            lost: if active { 1 } else { 32 },
            sampled: 32,
            consecutive_misses: 0,
            up_since: None,
            active,
        }
    }

    #[test]
    fn each_peer_gets_a_block() {
        let beta = known(
            "beta",
            PeerKind::Node(Some(mesh_config::Role::Core)),
            &["10.2.0.0/16"],
        );
        let gamma = known("gamma", PeerKind::Node(None), &["10.3.0.0/16"]);
        let mut laptop = known("laptop", PeerKind::Client, &["10.1.0.2/32"]);
        laptop.config.endpoints.clear();
        laptop.config.persistent_keepalive = None;
        let mut beta_stats = stats_for(&beta, Some(64));
        beta_stats.probing = true;
        beta_stats.local_address = Some("198.51.100.1".parse().unwrap());
        beta_stats.last_received = Some(clock() - Duration::from_millis(1400));
        beta_stats.paths = vec![
            path(
                "203.0.113.2:51820",
                Some("vpn.example.net:51820"),
                PathState::Up,
                true,
            ),
            path(
                "203.0.113.3:51820",
                Some("vpn2.example.net:51820"),
                PathState::Down,
                false,
            ),
        ];
        beta_stats.last_switch = Some((
            clock() - Duration::from_secs(125),
            SwitchReason::ProbesLost(3),
        ));
        beta_stats.path_switches = 2;
        let mut gamma_stats = stats_for(&gamma, Some(100));
        gamma_stats.last_received = Some(clock() - Duration::from_secs(61));
        gamma_stats.transit_packets = 0;
        let stats = DataplaneStats {
            peers: vec![beta_stats, gamma_stats],
            drops: Default::default(),
        };
        let mut peers = report::peers(&[beta, gamma, laptop], &stats, clock());
        peers.peers[0].rtt_ms = Some(12.34);
        let expected = format!(
            "peer: beta (core), up\n  public key: {}\n  endpoint: 203.0.113.2:51820 from 198.51.100.1\n  \
             last packet: 1.4 seconds ago, stale after 6 seconds of silence\n  \
             allowed prefixes: 10.2.0.0/16\n  latest handshake: 1 minute, 4 seconds ago\n  \
             transfer: 1000 B received, 1.95 KiB sent\n  rtt: 12.3 ms\n  paths:\n    \
             * 198.51.100.1 -> 203.0.113.2:51820 (vpn.example.net:51820): up, rtt 1.2 ms, loss 3 % of 32\n    \
             \x20 198.51.100.1 -> 203.0.113.3:51820 (vpn2.example.net:51820): down, loss 100 % of 32, backup 1\n  \
             last path switch: 2 minutes, 5 seconds ago (active path down: 3 probes lost), 2 in all\n  \
             transit: 1 packets forwarded to other peers\n  persistent keepalive: every 25 seconds\n\
             \n\
             peer: gamma (mesh node), stale (silent, session not expired)\n  public key: {}\n  \
             endpoint: 203.0.113.2:51820\n  last packet: 1 minute, 1 second ago, stale after 52 seconds of silence\n  \
             allowed prefixes: 10.3.0.0/16\n  latest handshake: 1 minute, 40 seconds ago\n  \
             transfer: 1000 B received, 1.95 KiB sent\n  persistent keepalive: every 25 seconds\n\
             \n\
             peer: laptop (client), down (no session)\n  public key: {}\n  \
             endpoint: (none yet: the peer calls us)\n  \
             last packet: (nothing since meshd started), stale after 22 seconds of silence\n  \
             allowed prefixes: 10.1.0.2/32\n  latest handshake: (none)\n  \
             transfer: 0 B received, 0 B sent\n",
            encode_key(&[14; 32]),
            encode_key(&[15; 32]),
            encode_key(&[16; 32]),
        );
        assert_eq!(render(&peers), expected);
    }

    #[test]
    fn json_adds_state_and_paths_to_the_old_fields() {
        let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
        let mut stats = stats_for(&beta, Some(170));
        stats.probing = true;
        stats.paths = vec![path(
            "203.0.113.2:51820",
            Some("vpn.example.net:51820"),
            PathState::Down,
            true,
        )];
        let stats = DataplaneStats {
            peers: vec![stats],
            drops: Default::default(),
        };
        let report = report::peers(&[beta], &stats, clock());
        let value = serde_json::to_value(&report).unwrap();
        let peer = &value["peers"][0];
        assert_eq!(
            peer["up"], true,
            "the old field keeps its meaning: session live"
        );
        assert_eq!(peer["state"], "down");
        assert_eq!(peer["state_reason"], "all paths down");
        assert_eq!(peer["last_received_seconds_ago"], 0.0);
        assert_eq!(peer["paths"][0]["endpoint_name"], "vpn.example.net:51820");
        assert_eq!(peer["paths"][0]["state"], "down");
        assert_eq!(peer["paths"][0]["active"], true);
        let back: PeersReport = serde_json::from_value(value).unwrap();
        assert_eq!(back, report);
        // A payload of an older daemon (no state fields) still reads.
        let old = serde_json::json!({"schema": 1, "peers": [{
            "name": "beta", "role": null, "public_key": "x", "endpoint": null,
            "configured_endpoints": [], "allowed_prefixes": [],
            "persistent_keepalive_seconds": null, "up": true,
            "last_handshake_seconds_ago": 3, "rtt_ms": null, "rx_bytes": 0, "tx_bytes": 0,
            "rx_packets": 0, "tx_packets": 0, "transit_packets": 0, "handshakes": 1}]});
        let old: PeersReport = serde_json::from_value(old).unwrap();
        assert!(old.peers[0].paths.is_empty());
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
