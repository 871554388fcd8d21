//! Which exit carries Internet traffic, per default route and per `[[exit.route]]` rule. Pure.
//!
//! The default routes (0.0.0.0/0, ::/0) need no choice here: BGP's best path already is the
//! nearest live exit (the decision process ends on the IGP cost, the tunnels' RTT, and a next
//! hop the prober sees dead is unreachable). A rule `destination` + `via = [a, b]` sends the
//! destination through the first of `via` that has a usable default route of the
//! destination's family (one the decision process could select: its next hop is reachable),
//! else through the nearest exit. The choice is made from the RIB's candidate paths, not just
//! its best, because the preferred exit is usually not the nearest one.
//!
//! The routes for rule destinations go to the peer set with the best routes, so the data
//! plane sends the destination's packets through the tunnel to the chosen exit.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use mesh_config::ExitRoute;

use super::member::MeshMember;
use crate::peerset::BgpRoute;

/// The two default routes an exit announces.
pub fn default_prefixes() -> [IpNet; 2] {
    [
        IpNet::V4(ipnet::Ipv4Net::default()),
        IpNet::V6(ipnet::Ipv6Net::default()),
    ]
}

/// One selectable path of a default route, as the RIB has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPath {
    /// 0.0.0.0/0 or ::/0.
    pub prefix: IpNet,
    /// `None`: this node's own default route (it is an exit itself).
    pub next_hop: Option<IpAddr>,
    /// The member that announced it (see [`exit_name`]); `None` when no member is known for
    /// it (a router outside the mesh), which no rule can name.
    pub exit: Option<String>,
    pub igp_cost: u32,
    /// BGP's best path for the prefix: the nearest exit.
    pub best: bool,
}

/// The member that put a default route into the mesh: the ORIGINATOR_ID a route reflector
/// added, else the member whose overlay address is the next hop, else the neighbour it came
/// from (the way the route check finds a route's origin).
pub fn exit_name(
    members: &[MeshMember],
    originator_id: Option<Ipv4Addr>,
    next_hop: IpAddr,
    neighbor: Option<IpAddr>,
) -> Option<String> {
    let at = |address: IpAddr| {
        members.iter().find(|m| match address {
            IpAddr::V4(a) => m.router_id == a,
            IpAddr::V6(a) => m.address6 == Some(a),
        })
    };
    originator_id
        .and_then(|id| members.iter().find(|m| m.router_id == id))
        .or_else(|| at(next_hop))
        .or_else(|| neighbor.and_then(at))
        .map(|m| m.name.clone())
}

/// The exit a prefix uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// The exit's member name, if known.
    pub exit: Option<String>,
    /// `None`: this node itself (its own default route; the traffic leaves here).
    pub next_hop: Option<IpAddr>,
    pub igp_cost: u32,
}

/// Why a prefix uses its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A default route: BGP's best path, the nearest exit.
    Nearest,
    /// The rule's first exit with a usable default route; `skipped` are the ones before it,
    /// which have none.
    Rule { skipped: Vec<String> },
    /// None of the rule's exits has a usable default route: the nearest exit.
    Fallback { skipped: Vec<String> },
    /// No exit has a usable default route of the family: nothing to route through.
    NoExit,
}

/// What a default route or a rule destination uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitChoice {
    pub prefix: IpNet,
    /// The rule's `via` (empty for a default route).
    pub via: Vec<String>,
    /// `None` only with [`Reason::NoExit`].
    pub used: Option<Used>,
    pub reason: Reason,
}

impl ExitChoice {
    /// Whether this is a rule's choice (as opposed to a default route's).
    pub fn is_rule(&self) -> bool {
        !matches!(self.reason, Reason::Nearest)
    }

    /// The exit's name for people: the member, else its next hop, else "this node".
    fn exit_label(&self) -> String {
        match &self.used {
            Some(Used {
                exit: Some(name), ..
            }) => name.clone(),
            Some(Used {
                next_hop: Some(nh), ..
            }) => nh.to_string(),
            Some(_) => "this node".to_owned(),
            None => "none".to_owned(),
        }
    }
}

/// The log line for a changed choice: `exit rule 203.0.113.0/24: via tokyo`,
/// `exit rule 203.0.113.0/24: tokyo unreachable, via nearest (paris)`.
impl fmt::Display for ExitChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unreachable = |f: &mut fmt::Formatter<'_>, skipped: &[String]| {
            if skipped.is_empty() {
                Ok(())
            } else {
                write!(f, "{} unreachable, ", skipped.join(", "))
            }
        };
        match &self.reason {
            Reason::Nearest => write!(
                f,
                "exit for {}: nearest ({})",
                self.prefix,
                self.exit_label()
            ),
            Reason::Rule { skipped } => {
                write!(f, "exit rule {}: ", self.prefix)?;
                unreachable(f, skipped)?;
                write!(f, "via {}", self.exit_label())
            }
            Reason::Fallback { skipped } => {
                write!(f, "exit rule {}: ", self.prefix)?;
                unreachable(f, skipped)?;
                write!(f, "via nearest ({})", self.exit_label())
            }
            Reason::NoExit if self.via.is_empty() => {
                write!(f, "exit for {}: no exit reachable", self.prefix)
            }
            Reason::NoExit => write!(
                f,
                "exit rule {}: no exit reachable ({} neither), not routed through an exit",
                self.prefix,
                self.via.join(", ")
            ),
        }
    }
}

/// The choice for each default route that has a usable path, then for each rule, in the
/// rules' order. A rule for a destination that an earlier rule already covers with the same
/// prefix is ignored (first match wins, as the configuration documents).
pub fn choose(defaults: &[DefaultPath], rules: &[ExitRoute]) -> Vec<ExitChoice> {
    let mut choices: Vec<ExitChoice> = Vec::new();
    for prefix in default_prefixes() {
        if let Some(nearest) = nearest(defaults, &prefix) {
            choices.push(ExitChoice {
                prefix,
                via: Vec::new(),
                used: Some(used(nearest)),
                reason: Reason::Nearest,
            });
        }
    }
    let mut seen = Vec::new();
    for rule in rules {
        let destination = rule.destination.trunc();
        if seen.contains(&destination) {
            continue;
        }
        seen.push(destination);
        let family = match destination {
            IpNet::V4(_) => default_prefixes()[0],
            IpNet::V6(_) => default_prefixes()[1],
        };
        let mut skipped = Vec::new();
        let mut chosen = None;
        for name in &rule.via {
            let cheapest = defaults
                .iter()
                .filter(|d| d.prefix == family && d.exit.as_deref() == Some(name.as_str()))
                .min_by_key(|d| (d.igp_cost, d.next_hop));
            match cheapest {
                Some(path) => {
                    chosen = Some(path);
                    break;
                }
                None => skipped.push(name.clone()),
            }
        }
        let (used_path, reason) = match chosen {
            Some(path) => (Some(path), Reason::Rule { skipped }),
            None => match nearest(defaults, &family) {
                Some(path) => (Some(path), Reason::Fallback { skipped }),
                None => (None, Reason::NoExit),
            },
        };
        choices.push(ExitChoice {
            prefix: destination,
            via: rule.via.clone(),
            used: used_path.map(used),
            reason,
        });
    }
    choices
}

/// BGP's best default route of the family; failing that (the RIB has not selected one yet),
/// the cheapest.
fn nearest<'a>(defaults: &'a [DefaultPath], prefix: &IpNet) -> Option<&'a DefaultPath> {
    let of_family = || defaults.iter().filter(|d| d.prefix == *prefix);
    of_family()
        .find(|d| d.best)
        .or_else(|| of_family().min_by_key(|d| (d.igp_cost, d.next_hop)))
}

fn used(path: &DefaultPath) -> Used {
    Used {
        exit: path.exit.clone(),
        next_hop: path.next_hop,
        igp_cost: path.igp_cost,
    }
}

/// What the rules change in the routes given to the peer set: a route to each rule's
/// destination through its exit (`Some(next hop)`), or none at all (`None`: the exit is this
/// node, the traffic leaves here). Rules without a reachable exit change nothing.
pub fn rule_routes(choices: &[ExitChoice]) -> BTreeMap<IpNet, Option<IpAddr>> {
    choices
        .iter()
        .filter(|c| c.is_rule())
        .filter_map(|c| Some((c.prefix, c.used.as_ref()?.next_hop)))
        .collect()
}

/// The best routes (learnt ones, as the peer set gets them) with the rules applied: a rule's
/// destination goes to its exit, replacing any route BGP has for exactly that prefix.
pub fn with_rules(best: &[BgpRoute], choices: &[ExitChoice]) -> Vec<BgpRoute> {
    let rules = rule_routes(choices);
    let mut routes: Vec<BgpRoute> = best
        .iter()
        .filter(|r| !rules.contains_key(&r.prefix))
        .cloned()
        .collect();
    routes.extend(
        rules
            .iter()
            .filter_map(|(prefix, next_hop)| Some(BgpRoute::via(*prefix, (*next_hop)?))),
    );
    routes.sort();
    routes
}

/// The log lines for what changed from `before` to `after`: a choice whose exit or reason
/// differs (one line per change, not one per refresh; a cost change alone is no news), and a
/// default route no exit serves any more.
pub fn log_lines(before: &[ExitChoice], after: &[ExitChoice]) -> Vec<String> {
    let same = |a: &ExitChoice, b: &ExitChoice| a.prefix == b.prefix && a.is_rule() == b.is_rule();
    let exit = |c: &ExitChoice| c.used.as_ref().map(|u| (u.exit.clone(), u.next_hop));
    let mut lines: Vec<String> = after
        .iter()
        .filter(|c| {
            before
                .iter()
                .find(|b| same(b, c))
                .is_none_or(|old| old.reason != c.reason || exit(old) != exit(c))
        })
        .map(ToString::to_string)
        .collect();
    lines.extend(
        before
            .iter()
            .filter(|b| !b.is_rule() && !after.iter().any(|c| same(b, c)))
            .map(|gone| format!("exit for {}: no exit reachable", gone.prefix)),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::member::tests::core;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A default path from `exit` ("-" for this node) at `cost`; `best` marks BGP's best.
    fn path(prefix: &str, exit: &str, next_hop: &str, cost: u32, best: bool) -> DefaultPath {
        DefaultPath {
            prefix: net(prefix),
            next_hop: (exit != "-").then(|| ip(next_hop)),
            exit: Some(exit.to_owned()),
            igp_cost: cost,
            best,
        }
    }

    fn rule(destination: &str, via: &[&str]) -> ExitRoute {
        ExitRoute {
            destination: net(destination),
            via: via.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Three exits: paris is nearest, tokyo and london further away; tokyo has no IPv6.
    fn exits() -> Vec<DefaultPath> {
        vec![
            path("0.0.0.0/0", "paris", "10.2.0.1", 10, true),
            path("0.0.0.0/0", "tokyo", "10.3.0.1", 250, false),
            path("0.0.0.0/0", "london", "10.4.0.1", 20, false),
            path("::/0", "paris", "fd00::2:0:0:1", 10, true),
            path("::/0", "london", "fd00::4:0:0:1", 20, false),
        ]
    }

    /// A case: its name, the rules, the exits whose default paths are gone (unreachable or
    /// withdrawn), and for each rule the expected log line.
    type Case<'a> = (&'a str, &'a [ExitRoute], &'a [&'a str], &'a [&'a str]);

    #[test]
    fn rules_pick_the_first_usable_exit_else_the_nearest() {
        let cases: &[Case<'_>] = &[
            (
                "the first exit of the rule",
                &[rule("203.0.113.0/24", &["tokyo", "london"])],
                &[],
                &["exit rule 203.0.113.0/24: via tokyo"],
            ),
            (
                "the first is down: the second",
                &[rule("203.0.113.0/24", &["tokyo", "london"])],
                &["tokyo"],
                &["exit rule 203.0.113.0/24: tokyo unreachable, via london"],
            ),
            (
                "all of them down: the nearest",
                &[rule("203.0.113.0/24", &["tokyo", "london"])],
                &["tokyo", "london"],
                &["exit rule 203.0.113.0/24: tokyo, london unreachable, via nearest (paris)"],
            ),
            (
                "the nearest itself down too: the next nearest is BGP's new best",
                &[rule("203.0.113.0/24", &["tokyo"])],
                &["tokyo", "paris"],
                &["exit rule 203.0.113.0/24: tokyo unreachable, via nearest (london)"],
            ),
            (
                "an exit without a default of the destination's family is skipped",
                &[rule("2001:db8:1::/48", &["tokyo", "london"])],
                &[],
                &["exit rule 2001:db8:1::/48: tokyo unreachable, via london"],
            ),
            (
                "an unknown name is like an unreachable exit",
                &[rule("198.51.100.0/24", &["osaka"])],
                &[],
                &["exit rule 198.51.100.0/24: osaka unreachable, via nearest (paris)"],
            ),
            (
                "no exits at all",
                &[rule("198.51.100.0/24", &["tokyo"])],
                &["tokyo", "paris", "london"],
                &[
                    "exit rule 198.51.100.0/24: no exit reachable (tokyo neither), not routed through an exit",
                ],
            ),
            (
                "first match wins for one destination; host bits do not matter",
                &[
                    rule("203.0.113.0/24", &["london"]),
                    rule("203.0.113.7/24", &["tokyo"]),
                ],
                &[],
                &["exit rule 203.0.113.0/24: via london"],
            ),
        ];
        for (name, rules, gone, expected) in cases {
            let mut defaults: Vec<DefaultPath> = exits()
                .into_iter()
                .filter(|d| !gone.contains(&d.exit.as_deref().unwrap()))
                .collect();
            // BGP's best moves to the cheapest remaining path.
            for prefix in default_prefixes() {
                let cheapest = defaults
                    .iter()
                    .filter(|d| d.prefix == prefix)
                    .map(|d| d.igp_cost)
                    .min();
                for d in defaults.iter_mut().filter(|d| d.prefix == prefix) {
                    d.best = Some(d.igp_cost) == cheapest;
                }
            }
            let choices = choose(&defaults, rules);
            let lines: Vec<String> = choices
                .iter()
                .filter(|c| c.is_rule())
                .map(ToString::to_string)
                .collect();
            assert_eq!(lines, *expected, "{name}");
        }
    }

    #[test]
    fn default_routes_report_the_nearest_exit() {
        let choices = choose(&exits(), &[]);
        let lines: Vec<String> = choices.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "exit for 0.0.0.0/0: nearest (paris)",
                "exit for ::/0: nearest (paris)"
            ]
        );
        assert_eq!(choices[0].used.as_ref().unwrap().igp_cost, 10);
        assert!(choose(&[], &[]).is_empty(), "no exits, nothing to say");
    }

    #[test]
    fn rule_destinations_join_the_best_routes_through_their_exit() {
        let best = vec![
            BgpRoute::via(net("0.0.0.0/0"), ip("10.2.0.1")),
            // A member announces the rule's destination itself: the rule wins for it.
            BgpRoute::via(net("203.0.113.0/24"), ip("10.9.0.1")),
            BgpRoute::via(net("10.9.0.0/16"), ip("10.9.0.1")),
        ];
        let rules = [
            rule("203.0.113.0/24", &["tokyo"]),
            rule("198.51.100.0/24", &["nobody"]),
        ];
        let routes = with_rules(&best, &choose(&exits(), &rules));
        let shown: Vec<String> = routes
            .iter()
            .map(|r| format!("{} {}", r.prefix, r.next_hops[0]))
            .collect();
        assert_eq!(
            shown,
            [
                "0.0.0.0/0 10.2.0.1",
                "10.9.0.0/16 10.9.0.1",
                "198.51.100.0/24 10.2.0.1",
                "203.0.113.0/24 10.3.0.1",
            ]
        );

        // This node is the chosen exit: the destination leaves here, no route into the mesh,
        // not even BGP's.
        let mut own = exits();
        own.push(path("0.0.0.0/0", "-", "", 0, false));
        let routes = with_rules(&best, &choose(&own, &[rule("203.0.113.0/24", &["-"])]));
        assert!(routes.iter().all(|r| r.prefix != net("203.0.113.0/24")));
        // And no exit at all: BGP's routes stay as they are.
        assert_eq!(with_rules(&best, &choose(&[], &rules)), {
            let mut sorted = best.clone();
            sorted.sort();
            sorted
        });
    }

    #[test]
    fn the_exit_is_the_originator_else_the_next_hop_else_the_neighbour() {
        let members: Vec<MeshMember> = [core(1), core(2), core(3)]
            .iter()
            .map(|identity| MeshMember::from_identity(identity).unwrap())
            .collect();
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let (r1, r2, r3) = (
            members[0].router_id,
            members[1].router_id,
            members[2].router_id,
        );
        // Reflected by core 1: ORIGINATOR_ID names core 2.
        assert_eq!(
            exit_name(&members, Some(r2), IpAddr::V4(r2), Some(IpAddr::V4(r1))),
            Some(names[1].clone())
        );
        // Straight from core 3.
        assert_eq!(
            exit_name(&members, None, IpAddr::V4(r3), Some(IpAddr::V4(r3))),
            Some(names[2].clone())
        );
        // An IPv6 next hop is a member's IPv6 address.
        let v6 = members[1].address6.unwrap();
        assert_eq!(
            exit_name(&members, None, IpAddr::V6(v6), None),
            Some(names[1].clone())
        );
        // A next hop outside the mesh from a member's session: that member.
        assert_eq!(
            exit_name(&members, None, ip("192.0.2.1"), Some(IpAddr::V4(r1))),
            Some(names[0].clone())
        );
        assert_eq!(exit_name(&members, None, ip("192.0.2.1"), None), None);
    }

    #[test]
    fn only_changes_are_logged() {
        let rules = [rule("203.0.113.0/24", &["tokyo"])];
        let before = choose(&exits(), &rules);
        assert!(log_lines(&before, &before).is_empty());
        assert_eq!(
            log_lines(&[], &before).len(),
            3,
            "everything is new at first"
        );
        let mut defaults = exits();
        defaults.retain(|d| d.exit.as_deref() != Some("tokyo"));
        let after = choose(&defaults, &rules);
        assert_eq!(
            log_lines(&before, &after),
            ["exit rule 203.0.113.0/24: tokyo unreachable, via nearest (paris)"]
        );
        // A cost change alone is no news.
        let mut cheaper = exits();
        cheaper[1].igp_cost = 240;
        assert!(log_lines(&before, &choose(&cheaper, &rules)).is_empty());
        // The IPv6 exits go away.
        defaults.retain(|d| d.prefix.addr().is_ipv4());
        assert_eq!(
            log_lines(&after, &choose(&defaults, &rules)),
            ["exit for ::/0: no exit reachable"]
        );
    }
}
