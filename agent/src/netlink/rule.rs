//! Policy routing rules (`ip rule`): the two meshd adds while the node uses the mesh's exits,
//! as rtnetlink messages and back. Pure, so it is tested without root.
//!
//! The pair is the one wg-quick uses for a full tunnel, per address family:
//!
//! ```text
//! EXIT_SUPPRESS_PRIORITY: from all lookup main suppress_prefixlength 0
//! EXIT_LOOKUP_PRIORITY:   not from all fwmark <fwmark> lookup <table>
//! ```
//!
//! The first lets every main-table route except a default route win (connected networks,
//! the mesh's own prefixes, an operator's specific routes); the second sends what is left,
//! unless the packet carries meshd's mark (its own underlay sockets), to the exit table.
//! Marked packets and packets the exit table has no route for fall through to the main rule
//! (32766), that is to the host's own default route.

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{RouteHeader, RouteProtocol};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};

/// The priority of `lookup main suppress_prefixlength 0`. Below the main rule (32766), and
/// away from the numbers in common use: 0 (local), 32766/32767 (main/default), wg-quick's
/// 32764/32765 (it takes the first free number below main), Tailscale's 5210-5270, systemd
/// and NetworkManager (none by default). 28004/28005 sit next to 0x6d65 = 28005, the default
/// exit table, which makes them easy to recognise in `ip rule`.
pub const EXIT_SUPPRESS_PRIORITY: u32 = 28004;
/// The priority of `not fwmark <fwmark> lookup <table>`: right after the suppress rule.
pub const EXIT_LOOKUP_PRIORITY: u32 = 28005;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleLookup {
    /// `lookup main suppress_prefixlength 0`: the main table except its default routes.
    MainWithoutDefault,
    /// `not fwmark <fwmark> lookup <table>`.
    TableUnlessMarked { table: u32, fwmark: u32 },
}

/// One policy rule of one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRule {
    pub ipv6: bool,
    pub priority: u32,
    pub lookup: RuleLookup,
}

impl PolicyRule {
    /// The routing table the rule looks up.
    pub fn table(&self) -> u32 {
        match self.lookup {
            RuleLookup::MainWithoutDefault => u32::from(RouteHeader::RT_TABLE_MAIN),
            RuleLookup::TableUnlessMarked { table, .. } => table,
        }
    }
}

/// The exit rules for both families, in priority order: the suppress rule before the lookup.
pub fn exit_rules(table: u32, fwmark: u32) -> Vec<PolicyRule> {
    [false, true]
        .into_iter()
        .flat_map(|ipv6| {
            [
                PolicyRule {
                    ipv6,
                    priority: EXIT_SUPPRESS_PRIORITY,
                    lookup: RuleLookup::MainWithoutDefault,
                },
                PolicyRule {
                    ipv6,
                    priority: EXIT_LOOKUP_PRIORITY,
                    lookup: RuleLookup::TableUnlessMarked { table, fwmark },
                },
            ]
        })
        .collect()
}

/// A rule as the kernel reports it, reduced to what identifies meshd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRule {
    pub ipv6: bool,
    pub priority: u32,
    pub table: u32,
    /// `FRA_PROTOCOL` (kernels since 4.17 keep it; 0 when absent).
    pub protocol: u8,
}

impl KernelRule {
    /// Whether meshd added this rule: tagged with `protocol`, or one of the exit rules'
    /// priorities looking up the main table or `table` (kernels that do not keep the tag).
    pub fn is_meshd_exit_rule(&self, protocol: u8, table: u32) -> bool {
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        self.protocol == protocol
            || (self.priority == EXIT_SUPPRESS_PRIORITY && self.table == main)
            || (self.priority == EXIT_LOOKUP_PRIORITY && self.table == table)
    }
}

/// The rtnetlink message that adds `rule`, tagged with `protocol`.
pub fn rule_message(rule: &PolicyRule, protocol: u8) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = if rule.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    message.header.action = RuleAction::ToTable;
    let table = rule.table();
    // Tables above 255 only fit the attribute; the header then says "see the attribute".
    message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RuleAttribute::Table(table));
    message
        .attributes
        .push(RuleAttribute::Priority(rule.priority));
    message
        .attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(protocol)));
    match rule.lookup {
        RuleLookup::MainWithoutDefault => {
            message.attributes.push(RuleAttribute::SuppressPrefixLen(0));
        }
        RuleLookup::TableUnlessMarked { fwmark, .. } => {
            message.header.flags |= RuleFlags::Invert;
            message.attributes.push(RuleAttribute::FwMark(fwmark));
            message.attributes.push(RuleAttribute::FwMask(u32::MAX));
        }
    }
    message
}

/// Reads a rule from a dump; `None` for families other than IPv4 and IPv6.
pub fn parse_rule(message: &RuleMessage) -> Option<KernelRule> {
    let ipv6 = match message.header.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut table = u32::from(message.header.table);
    let mut priority = 0;
    let mut protocol = 0;
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(id) => table = *id,
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::Protocol(p) => protocol = u8::from(*p),
            _ => {}
        }
    }
    Some(KernelRule {
        ipv6,
        priority,
        table,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::MESHD_ROUTE_PROTOCOL;

    #[test]
    fn both_families_get_the_suppress_rule_before_the_lookup() {
        let rules = exit_rules(0x6d65, 0x6d65);
        assert_eq!(rules.len(), 4);
        for ipv6 in [false, true] {
            let family: Vec<_> = rules.iter().filter(|r| r.ipv6 == ipv6).collect();
            assert_eq!(family[0].lookup, RuleLookup::MainWithoutDefault);
            assert_eq!(family[0].table(), 254);
            assert_eq!(
                family[1].lookup,
                RuleLookup::TableUnlessMarked {
                    table: 0x6d65,
                    fwmark: 0x6d65
                }
            );
            assert!(family[0].priority < family[1].priority);
            assert!(family[1].priority < 32766, "before the main rule");
        }
    }

    #[test]
    fn messages_round_trip_and_say_what_ip_rule_would() {
        for rule in exit_rules(0x6d65, 0x1234) {
            let message = rule_message(&rule, MESHD_ROUTE_PROTOCOL);
            let parsed = parse_rule(&message).unwrap();
            assert_eq!(
                parsed,
                KernelRule {
                    ipv6: rule.ipv6,
                    priority: rule.priority,
                    table: rule.table(),
                    protocol: MESHD_ROUTE_PROTOCOL,
                }
            );
            assert!(parsed.is_meshd_exit_rule(MESHD_ROUTE_PROTOCOL, 0x6d65));
            assert_eq!(message.header.action, RuleAction::ToTable);
            match rule.lookup {
                RuleLookup::MainWithoutDefault => {
                    assert!(
                        message
                            .attributes
                            .contains(&RuleAttribute::SuppressPrefixLen(0))
                    );
                    assert!(!message.header.flags.contains(RuleFlags::Invert));
                    assert_eq!(message.header.table, 254);
                }
                RuleLookup::TableUnlessMarked { .. } => {
                    assert!(message.attributes.contains(&RuleAttribute::FwMark(0x1234)));
                    assert!(message.header.flags.contains(RuleFlags::Invert));
                    assert_eq!(message.header.table, RouteHeader::RT_TABLE_UNSPEC);
                }
            }
        }
    }

    #[test]
    fn other_rules_are_not_taken_for_meshd_ones() {
        let rule = |priority, table, protocol| KernelRule {
            ipv6: false,
            priority,
            table,
            protocol,
        };
        // local, main and default; wg-quick's pair; a rule of another daemon at our number
        // looking up its own table.
        for other in [
            rule(0, 255, 0),
            rule(32766, 254, 0),
            rule(32767, 253, 0),
            rule(32764, 254, 4),
            rule(32765, 51820, 4),
            rule(EXIT_LOOKUP_PRIORITY, 100, 4),
        ] {
            assert!(
                !other.is_meshd_exit_rule(MESHD_ROUTE_PROTOCOL, 0x6d65),
                "{other:?}"
            );
        }
        // Untagged (an old kernel) but at our numbers with our tables; or tagged anywhere.
        assert!(rule(EXIT_SUPPRESS_PRIORITY, 254, 0).is_meshd_exit_rule(241, 0x6d65));
        assert!(rule(EXIT_LOOKUP_PRIORITY, 0x6d65, 0).is_meshd_exit_rule(241, 0x6d65));
        assert!(rule(100, 7, 241).is_meshd_exit_rule(241, 0x6d65));
    }
}
