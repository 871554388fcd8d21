//! Exit selection by source: a table of source prefixes, each pinned to an exit, consulted
//! only for packets whose destination routes through an exit. Pure, and free of allocation
//! per packet (two or three longest-prefix matches, only while there are rules).
//!
//! Crypto-key routing picks the peer by destination alone. A source rule (`[[exit.source]]`
//! in the agent) overrides that for Internet traffic: a packet from a pinned source whose
//! destination's most specific route is an *exit destination* (a default route, or the
//! destination of a per-destination exit rule) goes to the peer that carries the chosen
//! exit's next hop, or leaves here (this node is the exit), or is dropped (the rule fails
//! closed and none of its exits is reachable). Everything else — mesh addresses, LANs, a
//! shared prefix, anything more specific than the exit destination — is routed by
//! destination as before, so a pinned host still reaches the rest of the mesh directly.
//!
//! The agent names the exit by its next hop, the way BGP routes name theirs; the table finds
//! the peer carrying it and keeps its *slot* (its stable peer index), not its position, so a
//! snapshot taken while the peers change never points at the wrong peer: a slot that is gone
//! finds nothing and the rule falls back as it would without its exit.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::peer::PeerTable;
use crate::routing::CryptoRouter;

/// The source rules as the agent hands them in ([`crate::DataplaneCore::set_exit_sources`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitSources {
    /// The prefixes that lead to exits: 0.0.0.0/0, ::/0 and the destinations of the
    /// per-destination rules. A packet is Internet traffic when one of them is its
    /// destination's most specific route.
    pub destinations: Vec<IpNet>,
    /// Source prefix -> exit, longest match wins.
    pub rules: Vec<SourceRule>,
}

/// One source prefix and where its Internet traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRule {
    pub source: IpNet,
    pub exit: SourceExit,
    /// When `exit` names a next hop no peer carries (the peer went away before the agent
    /// chose again): drop (true) or route by destination (false).
    pub fail_closed: bool,
}

/// Where a pinned source's Internet traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceExit {
    /// To the peer carrying this next hop (the exit's overlay address).
    Via(IpAddr),
    /// Out of this node: it is the exit (the packet goes to the device, and the kernel
    /// masquerades it). From the device itself it is routed by destination.
    Here,
    /// By destination, as if there were no rule (none of the rule's exits is reachable and
    /// it falls back to the nearest).
    ByDestination,
    /// Nowhere: none of the rule's exits is reachable and it fails closed.
    Drop,
}

/// What a source rule says about one packet, resolved against the peer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The peer with this slot; if it is gone, drop (`fail_closed`) or route by destination.
    Slot {
        slot: u32,
        fail_closed: bool,
    },
    Here,
    ByDestination,
    Drop,
}

/// The resolved table a snapshot reads.
#[derive(Debug, Default)]
pub(crate) struct SourceTable {
    destinations: CryptoRouter<()>,
    sources: CryptoRouter<Resolved>,
    empty: bool,
}

impl SourceTable {
    /// The table for `config`, with each rule's next hop looked up in `peers` (the peer
    /// carrying it by crypto-key routing, through a prefix more specific than any exit
    /// destination; for an equal-cost group, its first member).
    pub(crate) fn resolve(config: &ExitSources, peers: &PeerTable) -> SourceTable {
        let mut table = SourceTable {
            empty: config.rules.is_empty(),
            ..SourceTable::default()
        };
        for destination in &config.destinations {
            table.destinations.insert(*destination, ());
        }
        for rule in &config.rules {
            let resolved = match rule.exit {
                SourceExit::Via(next_hop) => {
                    // Through a peer's own prefix, not through an exit route (a default
                    // covers every next hop).
                    let exit_len = table.destinations.lookup_with_len(next_hop).map(|(_, l)| l);
                    let carrier = peers
                        .route_with_len(next_hop)
                        .filter(|(_, len)| exit_len.is_none_or(|e| *len > e))
                        .and_then(|(target, _)| peers.members(target).first());
                    match carrier {
                        Some(&position) => Resolved::Slot {
                            slot: peers.peers[position].slot,
                            fail_closed: rule.fail_closed,
                        },
                        None if rule.fail_closed => Resolved::Drop,
                        None => Resolved::ByDestination,
                    }
                }
                SourceExit::Here => Resolved::Here,
                SourceExit::ByDestination => Resolved::ByDestination,
                SourceExit::Drop => Resolved::Drop,
            };
            table.sources.insert(rule.source, resolved);
        }
        table
    }

    /// Whether there are no rules (the packet path then skips the table entirely).
    pub(crate) fn is_empty(&self) -> bool {
        self.empty
    }

    /// The rule for a packet from `src` to `dst`, if its destination goes through an exit:
    /// an exit destination matches `dst` at least as specifically as the peer route
    /// (`route_len`, the length of the peer table's match) and this node's own prefixes
    /// (`own_len`). Equal lengths are the same prefix (both contain `dst`): an exit's own
    /// default route, or a default route a peer carries. `None`: route by destination.
    pub(crate) fn rule_for(
        &self,
        src: IpAddr,
        dst: IpAddr,
        route_len: Option<u8>,
        own_len: Option<u8>,
    ) -> Option<Resolved> {
        if self.empty {
            return None;
        }
        let (_, exit_len) = self.destinations.lookup_with_len(dst)?;
        if route_len.is_some_and(|len| len > exit_len) || own_len.is_some_and(|len| len > exit_len)
        {
            return None;
        }
        match self.sources.lookup(src)? {
            Resolved::ByDestination => None,
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(rules: &[(&str, SourceExit)]) -> SourceTable {
        let config = ExitSources {
            destinations: vec![net("0.0.0.0/0"), net("::/0"), net("203.0.113.0/24")],
            rules: rules
                .iter()
                .map(|(source, exit)| SourceRule {
                    source: net(source),
                    exit: *exit,
                    fail_closed: false,
                })
                .collect(),
        };
        SourceTable::resolve(&config, &PeerTable::default())
    }

    #[test]
    fn only_traffic_whose_route_is_an_exit_destination_is_pinned() {
        let t = table(&[("10.1.5.0/24", SourceExit::Here)]);
        let src = ip("10.1.5.7");
        // The peer table's best match for the destination is a default route (0), or the
        // rule destination (24): an exit route.
        assert_eq!(
            t.rule_for(src, ip("192.0.2.1"), Some(0), None),
            Some(Resolved::Here)
        );
        assert_eq!(
            t.rule_for(src, ip("203.0.113.9"), Some(0), None),
            Some(Resolved::Here),
            "a rule destination this node leaves through itself has no peer route of its own"
        );
        assert_eq!(
            t.rule_for(src, ip("203.0.113.9"), Some(24), None),
            Some(Resolved::Here)
        );
        // No peer route at all (this node is the exit, its default is its own).
        assert_eq!(
            t.rule_for(src, ip("192.0.2.1"), None, Some(0)),
            Some(Resolved::Here)
        );
        // A mesh address or a LAN: a more specific route, by destination.
        assert_eq!(t.rule_for(src, ip("10.2.0.1"), Some(16), None), None);
        assert_eq!(t.rule_for(src, ip("203.0.113.9"), Some(32), None), None);
        // One of this node's own prefixes.
        assert_eq!(t.rule_for(src, ip("10.1.0.1"), Some(0), Some(16)), None);
        // Another source, another family.
        assert_eq!(
            t.rule_for(ip("10.1.6.1"), ip("192.0.2.1"), Some(0), None),
            None
        );
        assert_eq!(
            t.rule_for(ip("fd00::1"), ip("2001:db8::1"), Some(0), None),
            None
        );
    }

    #[test]
    fn the_longest_source_prefix_wins_and_by_destination_is_no_rule() {
        let t = table(&[
            ("10.1.0.0/16", SourceExit::Drop),
            ("10.1.5.0/24", SourceExit::Here),
            ("10.1.5.7/32", SourceExit::ByDestination),
        ]);
        let to = ip("192.0.2.1");
        assert_eq!(
            t.rule_for(ip("10.1.9.9"), to, Some(0), None),
            Some(Resolved::Drop)
        );
        assert_eq!(
            t.rule_for(ip("10.1.5.8"), to, Some(0), None),
            Some(Resolved::Here)
        );
        assert_eq!(
            t.rule_for(ip("10.1.5.7"), to, Some(0), None),
            None,
            "a more specific rule that falls back routes by destination, not by the wider rule"
        );
    }

    #[test]
    fn without_rules_nothing_is_looked_up_and_an_unknown_next_hop_falls_back() {
        let empty = SourceTable::resolve(&ExitSources::default(), &PeerTable::default());
        assert!(empty.is_empty());
        assert_eq!(
            empty.rule_for(ip("10.1.5.7"), ip("192.0.2.1"), Some(0), None),
            None
        );
        // No peer carries the next hop: by destination, or dropped when failing closed.
        let config = |fail_closed| ExitSources {
            destinations: vec![net("0.0.0.0/0")],
            rules: vec![SourceRule {
                source: net("10.1.5.0/24"),
                exit: SourceExit::Via(ip("10.3.0.1")),
                fail_closed,
            }],
        };
        let open = SourceTable::resolve(&config(false), &PeerTable::default());
        assert_eq!(
            open.rule_for(ip("10.1.5.7"), ip("192.0.2.1"), Some(0), None),
            None
        );
        let closed = SourceTable::resolve(&config(true), &PeerTable::default());
        assert_eq!(
            closed.rule_for(ip("10.1.5.7"), ip("192.0.2.1"), Some(0), None),
            Some(Resolved::Drop)
        );
    }
}
